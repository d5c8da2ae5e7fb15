"""The local executor: inline in this process (``--workers 1``) or a pool of worker processes.

Each pool worker keeps its own :class:`Runner` on the shared store, so claims keep two workers
off the same run. A worker that dies (``kill -9``, the OOM killer) is replaced and only the run
it held is marked failed (or retried, with ``--retries``) while the suite goes on; Ctrl-C stops
every worker with its run back to pending (see :mod:`._pool`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._engine._registry import get_stage
from .._engine._run import Outcome
from .._engine._runner import Runner
from .._engine._spec import PlannedRun
from .._engine._worker import share_work
from ._base import Executor
from ._pool import Pool


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
        yield from Pool(self.options, stage_modules(runs, self.modules)).map(runs)
