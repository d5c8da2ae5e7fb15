"""The command line through a subprocess, as a researcher calls it: one helper for every test
folder (this folder is on every test's path, see tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def assay(
    *args: object, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m assay ARGS``: its exit code, stdout and stderr (never raises on a failure)."""
    return subprocess.run(
        [sys.executable, "-m", "assay", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def run_command(suite: Path, root: Path, module: str, *extra: object) -> list[str]:
    """The argv of ``assay run SUITE --root ROOT --quiet --import MODULE EXTRA`` (for Popen)."""
    argv = ["run", suite, "--root", root, "--quiet", "--import", module, *extra]
    return [sys.executable, "-m", "assay", *map(str, argv)]


def dry_run(suite: Path, *args: object, root: Path) -> subprocess.CompletedProcess:
    """``assay run SUITE ARGS --dry-run --root ROOT``: the plan, with every plan-time check."""
    return assay("run", suite, *args, "--dry-run", "--root", root)
