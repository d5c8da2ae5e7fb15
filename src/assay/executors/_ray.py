"""Ray core tasks: ``--executor ray --cluster address=HOST:PORT`` (or a local Ray for the suite).

Runs are packed ``runs_per_job`` to a task, grouped by the resources their stages declare (CPUs,
GPUs, memory; ``--cluster num_cpus=`` and ``num_gpus=`` override). Each task executes its runs
through the engine's worker entry (``execute_chunk``) on the shared store. A worker node that dies mid-run
fails its tasks with a system error; Ray retries them (``max_retries``) on the nodes left, the
retried task skips the runs already done and takes over the one in flight (its owner is dead),
and the fenced commit keeps a late result from the lost attempt from ever being recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..core._errors import AssayError
from ..core._options import RunOptions
from ..core._run import Origin, Outcome, RunStatus
from ..core._spec import PlannedRun
from ._base import Executor, WorkerEntry
from ._local import stage_modules
from ._resources import Resources, pack

RAY_PARAMS: dict[str, tuple[str, type]] = {
    "address": ("Ray cluster address ('auto' for a running cluster; default: start locally)", str),
    "num_cpus": ("CPUs reserved per task (default: the stages' cpus, else 1)", float),
    "num_gpus": ("GPUs reserved per task (default: the stages' gpus, else 0)", float),
    "runs_per_job": ("runs executed one after another in each task (default 1)", int),
    "max_retries": ("times a task lost with its node is retried (default 3)", int),
}
DEFAULT_MAX_RETRIES = 3  # Ray's own default for tasks lost to a dying worker or node


def task_options(needs: Resources, given: dict[str, Any]) -> dict[str, Any]:
    """Ray ``.options()`` for a task of runs needing ``needs``; ``--cluster`` values win."""
    opts: dict[str, Any] = {
        "num_cpus": given.get("num_cpus", needs.cpus or 1),
        "num_gpus": given.get("num_gpus", needs.gpus or 0),
        "max_retries": given.get("max_retries", DEFAULT_MAX_RETRIES),
        "retry_exceptions": False,  # a stage that raises is recorded as failed, not retried
    }
    if needs.mem_gb:
        opts["memory"] = int(needs.mem_gb * 1024**3)
    return opts


class RayExecutor(Executor):
    """Ray tasks on a cluster (``address``) or a local Ray instance started for the suite."""

    name = "ray"
    params = RAY_PARAMS

    def __init__(
        self, options: RunOptions, worker: WorkerEntry, modules: Sequence[str] = ()
    ) -> None:
        super().__init__(options, worker, modules)
        self.params_given = dict(options.cluster)

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        try:
            import ray
        except ImportError:
            raise AssayError("the ray executor needs ray: pip install 'ray[default]'") from None
        if not runs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            address = self.params_given.get("address")
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:  # a local Ray for this suite, one CPU per worker
                ray.init(
                    include_dashboard=False, log_to_driver=False, num_cpus=self.options.workers
                )
        try:
            remote = ray.remote(self.worker.execute_chunk)
            modules = stage_modules(runs, self.modules)
            size = self.params_given.get("runs_per_job", 1)
            pending = {
                remote.options(**task_options(needs, self.params_given)).remote(
                    chunk, self.options, modules
                ): chunk
                for needs, chunk in pack(runs, size)
            }
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                chunk = pending.pop(done[0])
                try:
                    yield from ray.get(done[0])
                except Exception as exc:  # the task died past its retries
                    for planned in chunk:
                        yield Outcome(
                            planned.id,
                            planned.stage,
                            RunStatus.FAILED,
                            Origin.EXECUTED,
                            error=f"ray task failed: {exc}"[:500],
                            index=planned.index,
                        )
        finally:
            if started_here:
                ray.shutdown()
