"""The one worker entry: every process that executes planned runs comes through here.

The local process pool, submitit/SLURM jobs and Ray tasks all call :func:`execute_chunk` with
the planned runs themselves; it imports the user modules once, keeps one :class:`Runner` per
process (a pool worker reuses it across tasks) and shares the work with any other invocation.
"""

from __future__ import annotations

import importlib
import os
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence

from ..core._options import RunOptions
from ..core._run import Outcome
from ..core._spec import PlannedRun
from ..core._torch import WORKER_INDEX_ENV as WORKER_INDEX_ENV
from ..executors._base import WorkerEntry
from ._runner import WAIT_POLL_S, Runner

_RUNNERS: dict[str, Runner] = {}  # one Runner per (options, process), reused by pool workers
_IMPORTED: set[str] = set()
MIN_JUMP = 8  # below this many runs left, walking on is as good as jumping


def execute_chunk(
    runs: Sequence[PlannedRun], options: RunOptions, modules: Sequence[str] = ()
) -> list[Outcome]:
    """Execute ``runs`` in this process; return one outcome per run."""
    for module in modules:
        if module not in _IMPORTED:
            importlib.import_module(module)
            _IMPORTED.add(module)
    key = options.model_dump_json()
    runner = _RUNNERS.get(key)
    if runner is None or runner.pid != os.getpid():
        runner = _RUNNERS[key] = Runner(options)
    return list(share_work(runner, runs, stop_on_error=options.stop_on_error))


def run_inline(runs: Sequence[PlannedRun], options: RunOptions) -> Iterator[Outcome]:
    """Execute ``runs`` in this process with a runner of its own, each outcome yielded as its
    run finishes (``--workers 1``: fastest for short runs, and debuggable)."""
    runner = Runner(options)
    try:
        yield from share_work(runner, runs, stop_on_error=options.stop_on_error)
    finally:
        runner.close()


def share_work(
    runner: Runner, runs: Sequence[PlannedRun], *, stop_on_error: bool = False
) -> Iterator[Outcome]:
    """Execute every run; one that another live process holds is put off, not waited on.

    Identical invocations thus split a suite between them instead of queueing behind one
    another; a process waits (polling) only when every run it has left is held elsewhere. On
    meeting a run held elsewhere, a process also jumps to a random point of what it has left,
    so processes started together stop walking the suite in lockstep (a lone invocation never
    meets one, and keeps the suite's order).
    """
    queue = deque(runs)
    runner.prefetch(list(runs))
    jump = random.Random(os.getpid())
    while queue:
        deferred: deque[PlannedRun] = deque()
        progressed = False
        while queue:
            planned = queue.popleft()
            outcome = runner.execute(planned, wait=False)
            if outcome is None:
                deferred.append(planned)
                runner.forget_prefetch()
                if len(queue) > MIN_JUMP:
                    queue.rotate(-jump.randrange(len(queue)))
                continue
            progressed = True
            yield outcome
            if stop_on_error and outcome.failed:
                return
        queue = deferred
        if queue and not progressed:
            time.sleep(WAIT_POLL_S)


# what the engine hands every executor (executors never import the engine)
WORKER = WorkerEntry(execute_chunk=execute_chunk, run_inline=run_inline)
