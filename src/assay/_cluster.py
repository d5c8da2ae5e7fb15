"""Cluster executors: SLURM through submitit, and Ray.

Both send *chunks* of runs to remote workers; each worker builds its own :class:`Runner` on the
shared store, so claims keep runs from executing twice exactly as with local workers. The store
must be reachable from the workers: PostgreSQL, or SQLite on a shared filesystem (SQLite over NFS
is unreliable; use PostgreSQL for multi-node work).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ._errors import AssayError
from ._executors import Executor
from ._registry import get_stage
from ._runner import Outcome, Runner, RunOptions
from ._suite import PlannedRun

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
EXECUTORS = ("local", "slurm", "submitit-local", "ray")


def parse_cluster_params(executor: str, items: Sequence[str] | Mapping[str, Any]) -> dict:
    """Check ``key=value`` parameters against the executor's valid keys and convert them."""
    if executor not in EXECUTORS:
        raise AssayError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    table = RAY_PARAMS if executor == "ray" else SUBMITIT_PARAMS if executor != "local" else {}
    pairs = items.items() if isinstance(items, Mapping) else [_split(i) for i in items]
    out = {}
    for key, value in pairs:
        if key not in table:
            valid = ", ".join(f"{k} ({v[0]})" for k, v in table.items()) or "none"
            raise AssayError(
                f"unknown --cluster key {key!r} for executor {executor!r}; valid: {valid}"
            )
        try:
            out[key] = table[key][1](value)
        except ValueError:
            raise AssayError(
                f"--cluster {key}={value!r}: expected a {table[key][1].__name__} ({table[key][0]})"
            ) from None
    return out


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise AssayError(f"cannot read --cluster {item!r}; write key=value, e.g. partition=gpu")
    return key.strip(), value.strip()


Chunk = list[tuple[str, str, str, int]]  # (run id, stage, config JSON, index) per run


def _chunks(runs: Sequence[PlannedRun], size: int) -> list[Chunk]:
    items = [(r.id, r.stage, r.config.model_dump_json(), r.index) for r in runs]
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def _chunk_failed(chunk: Chunk, message: str) -> Iterator[Outcome]:
    """Outcomes for a chunk whose job died as a whole (preempted, out of memory, lost node)."""
    for rid, stage, _, index in chunk:
        yield Outcome(rid, stage, "failed", 0.0, message[:500], index)


def execute_chunk(chunk: Chunk, options: RunOptions, modules: tuple[str, ...]) -> list[Outcome]:
    """Run a chunk of runs in this (remote) process; the function every cluster job calls."""
    for module in modules:
        importlib.import_module(module)
    runner = Runner(options)
    try:
        outcomes = []
        for _, stage, config_json, index in chunk:
            config = get_stage(stage).config_cls.model_validate_json(config_json)
            outcome = runner.execute(config, index=index)
            outcomes.append(outcome)
            if options.stop_on_error and outcome.status == "failed":
                break
        return outcomes
    finally:
        runner.close()


def _modules(runs: Sequence[PlannedRun], extra: Sequence[str]) -> tuple[str, ...]:
    return tuple(extra) + tuple(sorted({get_stage(r.stage).module for r in runs}))


class SubmititExecutor(Executor):
    """A SLURM job array through submitit (``slurm``), or submitit's local processes
    (``submitit-local``: the same code path on one machine, no scheduler needed)."""

    def __init__(self, options: RunOptions, modules: Sequence[str], *, local: bool) -> None:
        self.options, self.modules, self.local = options, tuple(modules), local
        self.params = dict(options.cluster)

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
        params = dict(self.params)
        chunk_size = params.pop("runs_per_job", 1)
        mapping = {"partition": "slurm_partition", "array_parallelism": "slurm_array_parallelism",
                   "account": "slurm_account", "qos": "slurm_qos"}  # fmt: skip
        params = {mapping.get(k, k): v for k, v in params.items()}
        if self.local:  # local processes accept only the generic parameters
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(name="assay", **params)
        chunks = _chunks(runs, chunk_size)
        modules = _modules(runs, self.modules)
        jobs = executor.map_array(execute_chunk, chunks, [self.options] * len(chunks),
                                  [modules] * len(chunks))  # fmt: skip
        for job, chunk in zip(jobs, chunks, strict=True):
            try:
                yield from job.result()
            except Exception as exc:  # the job itself died
                yield from _chunk_failed(chunk, f"job {job.job_id} failed: {exc}")


class RayExecutor(Executor):
    """Ray tasks on a cluster (``address``) or a local Ray instance started for the suite."""

    def __init__(self, options: RunOptions, modules: Sequence[str]) -> None:
        self.options, self.modules = options, tuple(modules)
        self.params = dict(options.cluster)

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        try:
            import ray
        except ImportError:
            raise AssayError("the ray executor needs ray: pip install 'ray[default]'") from None
        if not runs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            address = self.params.get("address")
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": self.options.workers}))  # fmt: skip
        try:
            task = ray.remote(execute_chunk).options(
                num_cpus=self.params.get("num_cpus", 1), num_gpus=self.params.get("num_gpus", 0)
            )
            modules = _modules(runs, self.modules)
            pending = {task.remote(c, self.options, modules): c
                       for c in _chunks(runs, self.params.get("runs_per_job", 1))}  # fmt: skip
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
