"""Provenance: what produced a run (code version, environment, machine, seed, device).

Facts that cannot change during a process (git state, package versions, host) are gathered
once per process: asking git per run would cost more than the runs of a trivial sweep.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

# Versions recorded when installed: the packages whose behaviour decides a run's numbers.
TRACKED_PACKAGES = (
    "assay",
    "numpy",
    "torch",
    "scipy",
    "scikit-learn",
    "pandas",
    "transformers",
    "peft",
    "stable-baselines3",
    "gymnasium",
    "pydantic",
    "sqlalchemy",
)
GIT_TIMEOUT_S = 5


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit, branch, dirty flag and a hash of the uncommitted diff of the working directory."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "branch": None}
    status = _git("status", "--porcelain", "--untracked-files=no") or ""
    diff = _git("diff", "HEAD") or ""
    return {
        "commit": commit.strip(),
        "branch": (_git("rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None,
        "dirty": bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": versions,
    }


def start_record(*, seed: int | None, device: str | None, attempt: int) -> dict[str, Any]:
    return {
        "git": git_state(),
        **environment(),
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "seed": seed,
        "device": device,
        "attempt": attempt,
        "time_start": time.time(),
        "time_start_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "time_end": None,
    }
