"""Cluster executors: SLURM through submitit, and Ray.

Both send *chunks* of runs to remote workers; each worker builds its own :class:`Runner` on the
shared store, so claims keep runs from executing twice exactly as with local workers. The store
must be reachable from the workers: PostgreSQL, or SQLite on a shared filesystem (SQLite over NFS
is unreliable; use PostgreSQL for multi-node work).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from .._errors import AssayError
from .._run import Origin, Outcome, RunStatus
from .._spec import PlannedRun
from .._worker import execute_chunk
from ._base import Executor
from ._local import stage_modules

# parameter -> (meaning, type). Names follow submitit's and Ray's own.
SUBMITIT_PARAMS: dict[str, tuple[str, type]] = {
    "timeout_min": ("job time limit in minutes", int),
    "partition": ("SLURM partition", str),
    "cpus_per_task": ("CPUs per job", int),
    "mem_gb": ("memory per job in GB", float),
    "gpus_per_node": ("GPUs per job", int),
    "array_parallelism": ("max jobs of the array running at once", int),
    "runs_per_job": ("runs executed one after another in each job (default 1)", int),
    "account": ("SLURM account", str),
    "qos": ("SLURM QOS", str),
}
RAY_PARAMS: dict[str, tuple[str, type]] = {
    "address": ("Ray cluster address ('auto' for a running cluster; default: start locally)", str),
    "num_cpus": ("CPUs reserved per task (default 1)", float),
    "num_gpus": ("GPUs reserved per task (default 0)", float),
    "runs_per_job": ("runs executed one after another in each task (default 1)", int),
}


def _chunks(runs: Sequence[PlannedRun], size: int) -> list[list[PlannedRun]]:
    items = list(runs)
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def _chunk_failed(chunk: Sequence[PlannedRun], message: str) -> Iterator[Outcome]:
    """Outcomes for a chunk whose job died as a whole (preempted, out of memory, lost node)."""
    for planned in chunk:
        yield Outcome(planned.id, planned.stage, RunStatus.FAILED, Origin.EXECUTED,
                      error=message[:500], index=planned.index)  # fmt: skip


class SubmititExecutor(Executor):
    """A SLURM job array through submitit; see :class:`SlurmExecutor`."""

    params = SUBMITIT_PARAMS
    local: ClassVar[bool] = False

    def __init__(self, options: Any, modules: Sequence[str] = ()) -> None:
        super().__init__(options, modules)
        self.params_given = dict(options.cluster)

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        try:
            import submitit
        except ImportError:
            raise AssayError("the slurm executors need submitit: pip install submitit") from None
        if not runs:
            return
        folder = self.options.root / "_submitit" / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster="local" if self.local else None)
        if executor.cluster not in ("slurm", "local"):
            raise AssayError(
                f"submitit found no SLURM here (cluster={executor.cluster!r}); run on a SLURM "
                "login node, or use --executor submitit-local / local"
            )
        params = dict(self.params_given)
        chunk_size = params.pop("runs_per_job", 1)
        mapping = {"partition": "slurm_partition", "array_parallelism": "slurm_array_parallelism",
                   "account": "slurm_account", "qos": "slurm_qos"}  # fmt: skip
        params = {mapping.get(k, k): v for k, v in params.items()}
        if self.local:  # local processes accept only the generic parameters
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(name="assay", **params)
        chunks = _chunks(runs, chunk_size)
        modules = stage_modules(runs, self.modules)
        jobs = executor.map_array(execute_chunk, chunks, [self.options] * len(chunks),
                                  [modules] * len(chunks))  # fmt: skip
        for job, chunk in zip(jobs, chunks, strict=True):
            try:
                yield from job.result()
            except Exception as exc:  # the job itself died
                yield from _chunk_failed(chunk, f"job {job.job_id} failed: {exc}")


class SlurmExecutor(SubmititExecutor):
    """``--executor slurm``: a SLURM job array through submitit."""

    name = "slurm"


class SubmititLocalExecutor(SubmititExecutor):
    """``--executor submitit-local``: submitit's local processes, the SLURM code path on one
    machine with no scheduler."""

    name = "submitit-local"
    local = True


class RayExecutor(Executor):
    """Ray tasks on a cluster (``address``) or a local Ray instance started for the suite."""

    name = "ray"
    params = RAY_PARAMS

    def __init__(self, options: Any, modules: Sequence[str] = ()) -> None:
        super().__init__(options, modules)
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
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": self.options.workers}))  # fmt: skip
        try:
            task = ray.remote(execute_chunk).options(
                num_cpus=self.params_given.get("num_cpus", 1),
                num_gpus=self.params_given.get("num_gpus", 0),
            )
            modules = stage_modules(runs, self.modules)
            size = self.params_given.get("runs_per_job", 1)
            pending = {task.remote(c, self.options, modules): c for c in _chunks(runs, size)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                chunk = pending.pop(done[0])
                try:
                    yield from ray.get(done[0])
                except Exception as exc:  # the task itself died
                    yield from _chunk_failed(chunk, f"ray task failed: {exc}")
        finally:
            if started_here:
                ray.shutdown()
