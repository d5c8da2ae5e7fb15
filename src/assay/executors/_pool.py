"""A pool of worker processes where one worker's death touches only that worker's run.

``concurrent.futures.ProcessPoolExecutor`` is the wrong tool here: when one worker dies it
terminates all the others (so a healthy run in flight is lost with the dead one), and a worker
that gets Ctrl-C reports the interrupt as a result and takes the next task. This pool keeps one
pipe per worker and knows which run each worker holds:

- a worker that dies (``kill -9``, the OOM killer) is replaced; only the run it held is marked
  failed (``WorkerDied``) or retried with ``--retries``; the other workers go on untouched;
- on Ctrl-C (SIGINT to the process group, or to the parent alone) nothing new is handed out,
  each worker puts its run in flight back to pending and exits, and the parent waits at most
  ``STOP_GRACE_S`` for them before terminating what is left.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from ..core._guard import OutsideRootError
from ..core._io import atomic_write_text
from ..core._options import RunOptions
from ..core._owner import liveness
from ..core._run import Origin, Outcome, RunStatus
from ..core._spec import PlannedRun
from ..core._torch import WORKER_INDEX_ENV
from ..store import Store, resolve_store  # the store workers coordinate through (see _base)

# the engine's execute_chunk (WorkerEntry.execute_chunk): runs, options, modules -> outcomes
Execute = Callable[[Sequence[PlannedRun], RunOptions, Sequence[str]], list[Outcome]]

STOP_GRACE_S = 5.0  # after Ctrl-C, how long workers get to put their runs back to pending
SIGINT_REACH_S = 1.0  # how long a worker that got the terminal's Ctrl-C has to exit by itself
REAP_WAIT_S = 0.1  # let the kernel finish reaping a dead worker before its claim is read


def _worker_main(
    conn: Connection, index: int, options: RunOptions, modules: tuple[str, ...], execute: Execute
) -> None:
    """One worker: take a planned run, execute it, send its outcomes back; until told to stop."""
    os.environ[WORKER_INDEX_ENV] = str(index)
    while True:
        try:
            planned = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if planned is None:
            return
        try:
            conn.send(("done", execute([planned], options, modules)))
        except KeyboardInterrupt:  # the runner has put the run back to pending
            _send(conn, ("interrupted", None))
            return


def _send(conn: Connection, message: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        conn.send(message)


class _Worker:
    def __init__(self, ctx: Any, index: int, pool: Pool) -> None:
        self.index = index
        self.conn, child = ctx.Pipe()
        args = (child, index, pool.options, pool.modules, pool.execute)
        self.process = ctx.Process(
            target=_worker_main, args=args, daemon=True, name=f"assay-worker-{index}"
        )
        self.process.start()
        child.close()
        self.run: PlannedRun | None = None  # the run it holds


class Pool:
    """``workers`` processes (spawned: no inherited torch threads or store handles)."""

    def __init__(self, options: RunOptions, modules: tuple[str, ...], execute: Execute) -> None:
        self.options, self.modules, self.execute = options, modules, execute
        self.deaths: Counter[str] = Counter()
        self.ctx = mp.get_context("spawn")

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        store = resolve_store(self.options.store, self.options.root)  # created once, here
        n = self.options.workers
        workers = [_Worker(self.ctx, i, self) for i in range(n)]
        queue = deque(runs)
        stopped = False
        try:
            while True:
                for i, w in enumerate(workers):
                    if w.run is None and queue and not stopped:
                        if not w.process.is_alive():  # died idle: replace it
                            w = workers[i] = _Worker(self.ctx, w.index, self)
                        w.run = queue.popleft()
                        w.conn.send(w.run)
                busy = [w for w in workers if w.run is not None]
                if not busy:
                    break
                ready = wait([x for w in busy for x in (w.conn, w.process.sentinel)])
                for i, w in enumerate(workers):
                    if w.run is None or (w.conn not in ready and w.process.sentinel not in ready):
                        continue
                    message = _receive(w.conn)
                    if message is None:  # the worker died holding w.run
                        planned, w.run = w.run, None
                        w.process.join(timeout=1)
                        workers[i] = _Worker(self.ctx, w.index, self)
                        outcome = self._reap(store, planned)
                        if outcome is None:
                            queue.appendleft(planned)  # retried (or finished before dying)
                            continue
                        stopped = stopped or self.options.stop_on_error
                        yield outcome
                        continue
                    kind, outcomes = message
                    w.run = None
                    if kind == "interrupted":
                        raise KeyboardInterrupt
                    for outcome in outcomes:
                        stopped = stopped or (self.options.stop_on_error and outcome.failed)
                        yield outcome
        except KeyboardInterrupt:
            _stop(workers, interrupt=True)
            raise
        finally:
            _stop(workers, interrupt=False)
            store.close()

    def _reap(self, store: Store, planned: PlannedRun) -> Outcome | None:
        """The run of a worker that died mid-run: failed once ``retries`` is spent; None when
        it is to be handed out again (or was not held by the dead worker after all)."""
        time.sleep(REAP_WAIT_S)
        rec = store.get(planned.id)
        if rec is None or rec.status is not RunStatus.RUNNING:
            return None  # it finished, or never started: the next worker settles it
        if liveness(rec.owner or "") is not False:
            return None
        self.deaths[planned.id] += 1
        if self.deaths[planned.id] <= self.options.retries:
            return None  # handed out again: the next worker takes the dead owner's claim
        # Recorded on the dead owner's behalf (fenced on its owner and attempt), so the run
        # counts the one attempt it had; if another process took the claim first, it is theirs.
        error = (
            f"WorkerDied: the worker process executing attempt {rec.attempts} died "
            "(killed, or out of memory); rerun with --retry-failed, or give it "
            "--retries N"
        )
        if not store.finish(
            planned.id, rec.owner or "", RunStatus.FAILED, attempt=rec.attempts, error=error
        ):
            return None
        run_dir = self.options.root / planned.id
        if run_dir.is_dir():
            with contextlib.suppress(OutsideRootError):  # a planted link: the store has it
                atomic_write_text(run_dir / "error.txt", error + "\n", root=self.options.root)
        return Outcome(
            planned.id,
            planned.stage,
            RunStatus.FAILED,
            Origin.EXECUTED,
            error=error,
            index=planned.index,
        )


def _receive(conn: Connection) -> Any:
    try:
        if conn.poll():
            return conn.recv()
    except (EOFError, OSError):
        return None
    return None


def _stop(workers: list[_Worker], *, interrupt: bool) -> None:
    """Tell every worker to stop; on an interrupt, each puts its run back to pending first."""
    for w in workers:
        if w.run is None and w.process.is_alive():
            _send(w.conn, None)
    if interrupt:
        # A terminal's Ctrl-C reached every worker already: give them a moment to report, so a
        # second SIGINT never lands in the middle of putting a run back to pending.
        busy = [w for w in workers if w.run is not None and w.process.is_alive()]
        deadline = time.monotonic() + SIGINT_REACH_S
        while busy and time.monotonic() < deadline:
            wait([w.process.sentinel for w in busy], timeout=0.05)
            busy = [w for w in busy if w.process.is_alive()]
        for w in busy:  # SIGINT was sent to us alone: pass it on
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(w.process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        w.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.terminate()
            w.process.join(timeout=1)
        w.conn.close()
