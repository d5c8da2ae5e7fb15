"""The local executor: inline in this process (``--workers 1``) or a pool of worker processes.

Each pool worker keeps its own runner on the shared store, so claims keep two workers
off the same run. A worker that dies (``kill -9``, the OOM killer) is replaced and only the run
it held is marked failed (or retried, with ``--retries``) while the suite goes on; Ctrl-C stops
every worker with its run back to pending (see :mod:`._pool`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..core._registry import get_stage
from ..core._run import Outcome
from ..core._spec import PlannedRun
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
            yield from self.worker.run_inline(runs, self.options)
            return
        modules = stage_modules(runs, self.modules)
        yield from Pool(self.options, modules, self.worker.execute_chunk).map(runs)
