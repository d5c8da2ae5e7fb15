"""The local executor: inline in this process (``--workers 1``) or a pool of worker processes.

Each pool worker keeps its own :class:`Runner` on the shared store, so claims keep two workers
off the same run. A worker that dies (``kill -9``, the OOM killer) breaks the pool: the pool is
replaced, the runs it had queued are handed out again, and the run the dead worker was
executing is marked failed (or retried, with ``--retries``) while the suite goes on.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._engine._io import atomic_write_text
from .._engine._registry import get_stage
from .._engine._run import Origin, Outcome, RunStatus
from .._engine._runner import Runner, liveness, make_owner
from .._engine._spec import PlannedRun
from .._engine._worker import execute_chunk, init_pool_worker, share_work
from .._store import Store, resolve_store
from ._base import Executor


def stage_modules(runs: Sequence[PlannedRun], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The modules a worker imports: the user's, then those registering the runs' stages."""
    stages = {r.stage for top in runs for r in top.closure()}
    return tuple(extra) + tuple(sorted({get_stage(s).module for s in stages}))


class LocalExecutor(Executor):
    """Inline when ``workers == 1`` (fastest for short runs, and debuggable), else a pool."""

    name = "local"

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        if self.options.workers <= 1:
            runner = Runner(self.options)
            try:
                yield from share_work(runner, runs, stop_on_error=self.options.stop_on_error)
            finally:
                runner.close()
            return
        yield from _Pool(self.options, stage_modules(runs, self.modules)).map(runs)


class _Pool:
    def __init__(self, options: Any, modules: tuple[str, ...]) -> None:
        self.options, self.modules = options, modules
        self.deaths: Counter[str] = Counter()

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no inherited torch threads or store handles
        return ProcessPoolExecutor(
            max_workers=self.options.workers,
            mp_context=ctx,
            initializer=init_pool_worker,
            initargs=(ctx.Value("i", 0), self.options.workers),
        )

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        store = resolve_store(self.options.store, self.options.root)  # created once, here
        pool = self._new_pool()
        pending: dict[Future[Any], PlannedRun] = {}
        queue = deque(runs)
        stopped = False
        try:
            while queue or pending:
                # Keep the pool fed a little ahead so a worker never waits on the parent.
                while queue and not stopped and len(pending) < 2 * self.options.workers:
                    planned = queue.popleft()
                    pending[pool.submit(execute_chunk, [planned], self.options,
                                        self.modules)] = planned  # fmt: skip
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    planned = pending.pop(future)
                    try:
                        outcomes = future.result()
                    except BrokenProcessPool:
                        broken = True
                        queue.appendleft(planned)
                        continue
                    for outcome in outcomes:
                        stopped = stopped or (self.options.stop_on_error and outcome.failed)
                        yield outcome
                if broken:  # a worker died: every queued task of that pool is lost with it
                    queue.extendleft(reversed(list(pending.values())))
                    pending.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._new_pool()
                    for outcome in self._reap(store, queue):
                        stopped = stopped or self.options.stop_on_error
                        yield outcome
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            store.close()

    def _reap(self, store: Store, queue: deque[PlannedRun]) -> Iterator[Outcome]:
        """Runs whose worker died mid-run: failed once ``retries`` is spent, else retried."""
        time.sleep(0.1)  # let the kernel finish reaping the dead worker
        owner = make_owner()
        for planned in list(queue):
            rec = store.get(planned.id)
            if rec is None or rec.status is not RunStatus.RUNNING:
                continue
            if liveness(rec.owner or "") is not False:
                continue
            self.deaths[planned.id] += 1
            if self.deaths[planned.id] <= self.options.retries:
                continue  # handed out again: the next worker takes the dead owner's claim
            attempt = store.claim(planned.id, owner, retry_failed=False, stale_after_s=1e9,
                                  liveness=liveness)  # fmt: skip
            if attempt is None:
                continue
            error = (f"WorkerDied: the worker process executing attempt {attempt - 1} died "
                     "(killed, or out of memory); rerun with --retry-failed, or give it "
                     "--retries N")  # fmt: skip
            run_dir = self.options.root / planned.id
            if run_dir.is_dir():
                atomic_write_text(run_dir / "error.txt", error + "\n")
            store.finish(planned.id, owner, RunStatus.FAILED, attempt=attempt, error=error)
            queue.remove(planned)
            yield Outcome(planned.id, planned.stage, RunStatus.FAILED, Origin.EXECUTED,
                          error=error, index=planned.index)  # fmt: skip
