"""Calling a stage: in this process, or in a child process of its own (``isolate=True`` stages
and per-run timeouts).

The child is spawned (a clean interpreter: no inherited threads or CUDA state) and receives the
planned run itself, which carries its config as JSON. It dies with its parent: on Linux the
kernel kills it when the parent goes (``PR_SET_PDEATHSIG``), and a watchdog thread checks the
parent elsewhere, so a killed invocation never leaves a run executing behind the next one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core._config import StageConfig
from ..core._errors import AssayError
from ..core._guard import read_text_in_root
from ..core._io import atomic_write_json, atomic_write_text, dumps, read_json, to_jsonable
from ..core._registry import Stage, get_stage
from ..core._run import Run
from ..core._spec import PlannedRun
from ..core._torch import seed_everything
from ._progress import silence_library_progress

PARENT_POLL_S = 0.5


def call_stage(entry: Stage, config: StageConfig, handle: Run) -> dict[str, Any]:
    """Seed, call the stage function, and check that it returned JSON-able results."""
    silence_library_progress()  # the run's own counter (run.progress) is what is shown
    seed = config.runtime().seed
    if seed is not None:
        seed_everything(seed)
    results = entry.fn(config, handle)
    if results is None:
        return {}
    if not isinstance(results, Mapping):
        raise AssayError(
            f"stage {entry.name} returned a {type(results).__name__}; "
            "a stage returns a dict of results (or None)"
        )
    out = to_jsonable(results)
    dumps(out)  # fail here, in the run, if anything is not JSON
    return out


def run_in_child(
    entry: Stage, planned: PlannedRun, handle: Run, timeout_s: float | None
) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a clean interpreter: no inherited threads or CUDA state
    proc = ctx.Process(
        target=_child_main,
        args=(
            entry.module,
            planned,
            str(handle.dir),
            handle.attempt,
            dict(handle.upstream),
            os.getpid(),
        ),
    )
    proc.start()
    try:
        proc.join(timeout_s)
    except BaseException:  # Ctrl-C or SIGTERM in the parent: the child goes with it
        proc.kill()
        proc.join()
        raise
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise TimeoutError(f"run exceeded its timeout of {timeout_s} s and was killed")
    out = handle.dir / ".child_results.json"
    err = handle.dir / ".child_error.txt"
    if proc.exitcode != 0:
        message = (
            read_text_in_root(handle.root, err)
            if err.exists()
            else f"child process exited with {proc.exitcode}"
        )
        err.unlink(missing_ok=True)
        raise AssayError(message.strip().splitlines()[-1] if message.strip() else message)
    results = read_json(out, root=handle.root)
    out.unlink()
    return results


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this child never outlives the runner that claimed its run."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="assay-parent-watch").start()


def _child_main(
    module: str,
    planned: PlannedRun,
    run_dir: str,
    attempt: int,
    upstream: dict[str, Any],
    parent_pid: int,
) -> None:
    import importlib

    _die_with_parent(parent_pid)
    importlib.import_module(module)
    entry = get_stage(planned.stage)
    config = planned.config
    handle = Run(
        run_id=planned.id,
        stage=planned.stage,
        config=config,
        dir=run_dir,
        upstream=upstream,
        attempt=attempt,
    )
    try:
        results = call_stage(entry, config, handle)
    except BaseException as exc:
        atomic_write_text(
            Path(run_dir, ".child_error.txt"),
            traceback.format_exc() + f"\n{type(exc).__name__}: {exc}",
            root=handle.root,
        )
        sys.exit(1)
    atomic_write_json(Path(run_dir) / ".child_results.json", results, root=handle.root)
