"""SLURM through submitit: job arrays that submit and return, and survive preemption.

``assay run SUITE --executor slurm --cluster partition=gpu`` packs the runs that are not done
into jobs (``runs_per_job``, grouped by the resources their stages declare), submits them as job
arrays no larger than the cluster's ``MaxArraySize``, writes the job ids to a ledger under
``<root>/_jobs/`` and returns; ``assay status SUITE`` then reads SLURM's job states and says which
runs are waiting, running, or stuck in a job that ended (``--cluster wait=true`` blocks instead).

Every job executes its runs through the engine's worker entry (``execute_chunk``) against the shared store,
so claims keep a run from executing twice. On preemption or at its time limit SLURM signals the
job (``--signal USR2@signal_delay_s``, submitit's checkpointing): the run in flight goes back to
pending, submitit requeues the job, and the run resumes from its engine checkpoint
(``run.load_checkpoint()``) in the requeued job. With ``offline=true`` the nodes need no database:
each job indexes into a scratch SQLite file, and ``assay status`` ingests the run directories.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..core._errors import AssayError
from ..core._guard import OutsideRootError, append_text_in_root
from ..core._options import RunOptions
from ..core._run import Origin, Outcome, RunStatus
from ..core._spec import PlannedRun
from ..store import resolve_store  # the store workers coordinate through (see _base)
from ._base import Executor, WorkerEntry
from ._ledger import Ledger, job_states
from ._local import stage_modules
from ._pool import Execute
from ._resources import Resources, pack


class Flag(int):
    """A yes/no ``--cluster`` value: 1/0, true/false, yes/no, on/off."""

    def __new__(cls, value: Any) -> Flag:
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return super().__new__(cls, 1)
        if text in ("0", "false", "no", "off"):
            return super().__new__(cls, 0)
        raise ValueError(f"not a yes/no value: {value!r}")


# parameter -> (meaning, type). Names follow submitit's own.
SLURM_PARAMS: dict[str, tuple[str, type]] = {
    "timeout_min": (
        "job time limit in minutes (default: the stages' timeout_min, else 60 "
        "per run, summed over the job's runs)",
        int,
    ),
    "partition": ("SLURM partition", str),
    "cpus_per_task": ("CPUs per job", int),
    "mem_gb": ("memory per job in GB", float),
    "gpus_per_node": ("GPUs per job", int),
    "array_parallelism": ("max jobs of an array running at once", int),
    "runs_per_job": ("runs executed one after another in each job (default 1)", int),
    "account": ("SLURM account", str),
    "qos": ("SLURM QOS", str),
    "wait": ("block until every job ends (default: submit, print the job ids, return)", Flag),
    "max_array_size": (
        "split arrays above this many jobs (default: the cluster's MaxArraySize)",
        int,
    ),
    "signal_delay_s": (
        "seconds before the time limit at which a job checkpoints and is requeued (default 90)",
        int,
    ),
    "max_num_timeout": ("times a job is requeued after reaching its time limit (default 3)", int),
    "offline": (
        "nodes cannot reach the store: jobs index into scratch SQLite files and "
        "`assay status` ingests the run directories",
        Flag,
    ),
}
_TO_SUBMITIT = {
    "partition": "slurm_partition",
    "array_parallelism": "slurm_array_parallelism",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "signal_delay_s": "slurm_signal_delay_s",
}
_FROM_RESOURCES = {
    "cpus": "cpus_per_task",
    "gpus": "gpus_per_node",
    "mem_gb": "mem_gb",
    "timeout_min": "timeout_min",
    "partition": "partition",
}
_OURS = ("runs_per_job", "wait", "max_array_size", "max_num_timeout", "offline")
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default MaxArraySize


class ChunkJob:
    """The callable a SLURM job runs: a chunk of runs, checkpointable by submitit.

    On preemption or at the time limit SLURM sends the job's ``--signal`` (USR2); submitit
    calls :meth:`checkpoint`, requeues the job and exits. The run in flight goes back to pending
    (fenced on this process's claim) so the requeued job takes it at once, and the requeued job
    runs the same chunk: finished runs are skipped, the interrupted one resumes from its
    checkpoint. SIGTERM (``scancel``, ``scontrol requeue``, a node draining) puts the run in
    flight back to pending too, as it does for ``assay run`` itself.
    """

    def __init__(self, execute: Execute) -> None:
        self.execute = execute  # the engine's execute_chunk (pickled by reference)

    def __call__(
        self, runs: Sequence[PlannedRun], options: RunOptions, modules: Sequence[str]
    ) -> Any:
        # submitit ignores SIGTERM (it waits for USR2); a run killed without it would hold
        # its claim until its heartbeat went stale.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        node, scratch = _node_options(options)
        try:
            return self.execute(runs, node, modules)
        except SystemExit:  # submitit requeued the job after checkpoint() and is exiting
            release_claims(node, runs, why=_interruption())
            raise
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def checkpoint(
        self, runs: Sequence[PlannedRun], options: RunOptions, modules: Sequence[str]
    ) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, runs, options, modules)


def _interruption() -> str:
    job = os.environ.get("SLURM_JOB_ID", "?")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    name = f"{os.environ.get('SLURM_ARRAY_JOB_ID', job)}_{task}" if task else job
    return f"SLURM job {name} was preempted or reached its time limit; it is requeued"


def _node_options(options: RunOptions) -> tuple[RunOptions, Path | None]:
    """Offline jobs index into a fresh scratch SQLite file on the node, not the shared store."""
    if not options.cluster.get("offline"):
        return options, None
    job = os.environ.get("SLURM_JOB_ID") or str(os.getpid())
    scratch = Path(tempfile.mkdtemp(prefix=f"assay-job-{job}-"))  # $TMPDIR: node-local
    return options.model_copy(update={"store": f"sqlite:///{scratch / 'assay.db'}"}), scratch


def release_claims(options: RunOptions, runs: Sequence[PlannedRun], *, why: str) -> list[str]:
    """Put back to pending every run of ``runs`` this process holds; return their ids."""
    prefix = f"{_owner_host()}:{os.getpid()}:"
    released = []
    with resolve_store(options.store, options.root) as store:
        ids = [r.id for top in runs for r in top.closure()]
        for rec in store.query(ids=ids):
            if rec.status is not RunStatus.RUNNING or not (rec.owner or "").startswith(prefix):
                continue
            if store.finish(rec.id, rec.owner or "", RunStatus.PENDING, attempt=rec.attempts):
                released.append(rec.id)
                log = Path(options.root) / rec.id / "log.txt"
                if log.parent.is_dir():
                    with contextlib.suppress(OutsideRootError):  # never through a planted link
                        append_text_in_root(
                            options.root,
                            log,
                            f"{time.strftime('%Y-%m-%d %H:%M:%S')} attempt {rec.attempts}: "
                            f"{why}; the run resumes from its checkpoint\n",
                        )
    return released


def _owner_host() -> str:
    import socket

    return socket.gethostname()


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (an array has at most this many tasks)."""
    if shutil.which("scontrol") is None:
        return DEFAULT_MAX_ARRAY_SIZE
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return max(1, int(value.strip()))
    return DEFAULT_MAX_ARRAY_SIZE


class SubmititExecutor(Executor):
    """Job arrays through submitit; see :class:`SlurmExecutor` and :class:`SubmititLocalExecutor`."""

    params = SLURM_PARAMS
    local: ClassVar[bool] = False

    def __init__(
        self, options: RunOptions, worker: WorkerEntry, modules: Sequence[str] = ()
    ) -> None:
        super().__init__(options, worker, modules)
        self.params_given = dict(options.cluster)
        # submitit-local jobs are children of this process: they cannot outlive it
        self.wait = bool(self.params_given.get("wait", self.local))
        if not self.local and shutil.which("sbatch") is None:  # before anything is recorded
            raise AssayError(
                f"--executor {self.name} submits with SLURM's `sbatch`, which is not on PATH "
                "here; run on a SLURM login node (or load SLURM's module), or use --executor "
                "local (--workers N), ray or submitit-local"
            )

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        try:
            import submitit
        except ImportError:
            raise AssayError("the slurm executors need submitit: pip install submitit") from None
        if not runs:
            return
        root = Path(self.options.root)
        ledger = Ledger(root)
        todo: list[PlannedRun] = []
        with resolve_store(self.options.store, root) as store:
            records = store.get_many(r.id for r in runs)
            queued = ledger.live_jobs({r.id for r in runs}, store) if not self.local else {}
        for planned in runs:
            rec = records.get(planned.id)
            if rec is not None and rec.status is RunStatus.DONE:
                yield Outcome(
                    planned.id, planned.stage, rec.status, Origin.EARLIER, index=planned.index
                )
            elif (
                rec is not None
                and rec.status is RunStatus.FAILED
                and not self.options.retry_failed
            ):
                yield Outcome(
                    planned.id,
                    planned.stage,
                    rec.status,
                    Origin.EARLIER,
                    error=rec.error,
                    index=planned.index,
                )
            elif planned.id in queued:  # its job is still pending or running: not twice
                yield Outcome(
                    planned.id,
                    planned.stage,
                    RunStatus.PENDING,
                    Origin.ELSEWHERE,
                    index=planned.index,
                )
            else:
                todo.append(planned)
        if not todo:
            return
        executor = submitit.AutoExecutor(
            folder=root / "_submitit" / "%j",
            cluster="local" if self.local else None,
            slurm_max_num_timeout=self.params_given.get("max_num_timeout", 3),
        )
        if executor.cluster not in ("slurm", "local"):
            raise AssayError(
                f"submitit found no SLURM here (cluster={executor.cluster!r}); run on a SLURM "
                "login node, or use --executor submitit-local / local"
            )
        jobs = self._submit(executor, todo)
        if not self.local:
            ledger.record([(j.job_id, [r.id for r in chunk]) for j, chunk in jobs])
        if not self.wait:
            ids = sorted({str(j.job_id).split("_")[0] for j, _ in jobs}, key=int)
            print(
                f"submitted {len(todo)} run(s) in {len(jobs)} job(s), array(s) "
                f"{', '.join(ids)}; follow with `assay status SUITE --root {root}`",
                flush=True,
            )
            for _job, chunk in jobs:
                for planned in chunk:
                    yield Outcome(
                        planned.id,
                        planned.stage,
                        RunStatus.PENDING,
                        Origin.EXECUTED,
                        index=planned.index,
                    )
            return
        for job, chunk in jobs:
            try:
                yield from job.result()
            except Exception as exc:  # the job itself died
                yield from _chunk_failed(chunk, f"job {job.job_id} failed: {exc}")

    def _submit(self, executor: Any, runs: list[PlannedRun]) -> list[tuple[Any, list[PlannedRun]]]:
        given = self.params_given
        limit = given.get("max_array_size") or (1 << 30 if self.local else max_array_size())
        modules = stage_modules(runs, self.modules)
        groups: dict[Resources, list[list[PlannedRun]]] = {}
        for needs, chunk in pack(runs, given.get("runs_per_job", 1)):
            groups.setdefault(needs, []).append(chunk)
        submitted: list[Any] = []
        for needs, chunks in groups.items():
            params = {
                _FROM_RESOURCES[k]: v for k, v in needs.model_dump().items() if v is not None
            }
            params.update({k: v for k, v in given.items() if k not in _OURS})  # --cluster wins
            params = {_TO_SUBMITIT.get(k, k): v for k, v in params.items()}
            if self.local:  # local processes accept only the generic parameters
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(name="assay", **params)
            for start in range(0, len(chunks), limit):  # arrays of at most MaxArraySize jobs
                part = chunks[start : start + limit]
                jobs = executor.map_array(
                    ChunkJob(self.worker.execute_chunk),
                    part,
                    [self.options] * len(part),
                    [modules] * len(part),
                )
                submitted.extend(zip(jobs, part, strict=True))
        return submitted


def _chunk_failed(chunk: Sequence[PlannedRun], message: str) -> Iterator[Outcome]:
    """Outcomes for a chunk whose job died as a whole (out of memory, lost node)."""
    for planned in chunk:
        yield Outcome(
            planned.id,
            planned.stage,
            RunStatus.FAILED,
            Origin.EXECUTED,
            error=message[:500],
            index=planned.index,
        )


class SlurmExecutor(SubmititExecutor):
    """``--executor slurm``: SLURM job arrays through submitit; submits and returns."""

    name = "slurm"


class SubmititLocalExecutor(SubmititExecutor):
    """``--executor submitit-local``: submitit's local processes, the SLURM code path on one
    machine with no scheduler (blocks until its jobs end)."""

    name = "submitit-local"
    local = True


__all__ = ["SlurmExecutor", "SubmititLocalExecutor", "job_states", "release_claims"]
