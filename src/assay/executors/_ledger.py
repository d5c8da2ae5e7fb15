"""Which SLURM job holds which runs, and what SLURM says of those jobs: for ``assay status``.

``assay run --executor slurm`` returns once its arrays are submitted; it appends one file per
submission to ``<root>/_jobs/`` (job id -> run ids). :func:`reconcile` reads those files, asks
SLURM for the jobs' states (``sacct`` where accounting is on, else ``squeue``, which knows the
jobs the controller still holds) and, for every run not done:

- a run whose job is pending or running is shown with the job and its state;
- a run whose job ended (cancelled, timed out, out of memory, failed, node failure) but that the
  store still calls running is *stuck*: its claim is released (fenced on owner and attempt) so
  the next ``assay run`` takes it at once, and it is listed with the job's state;
- :func:`ingest` first records runs whose directories say they finished but the store does not
  (nodes that could not reach the database, ``offline=true``). Both are idempotent.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..core._io import atomic_write_json
from ..core._run import RunRecord, RunStatus, record_from_dir
from ..store import Store  # the store workers coordinate through (see _base)

LEDGER_DIR = "_jobs"
ALIVE = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
    "STAGE_OUT",
    "SIGNALING",
}
QUERY_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class JobOfRun:
    run_id: str
    job_id: str
    state: str  # SLURM's state word, or UNKNOWN when SLURM no longer knows the job

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


class Ledger:
    """The submissions under ``<root>/_jobs/``: one JSON file per ``assay run``."""

    def __init__(self, root: str | Path) -> None:
        self.dir = Path(root) / LEDGER_DIR

    def record(self, jobs: Sequence[tuple[str, list[str]]]) -> Path | None:
        if not jobs:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.dir / f"{stamp}-{str(jobs[0][0]).split('_')[0]}.json"
        atomic_write_json(
            path,
            {"submitted": time.time(), "jobs": [{"job_id": str(j), "runs": r} for j, r in jobs]},
        )
        return path

    def latest_jobs(self, ids: Iterable[str]) -> dict[str, str]:
        """run id -> the job id of its latest submission."""
        wanted = set(ids)
        out: dict[str, str] = {}
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("*.json")):  # oldest first: later ones win
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for job in data.get("jobs", []):
                for rid in job.get("runs", []):
                    if rid in wanted:
                        out[rid] = str(job["job_id"])
        return out

    def jobs_of(self, ids: Iterable[str]) -> list[JobOfRun]:
        latest = self.latest_jobs(ids)
        states = job_states(set(latest.values()))
        return [JobOfRun(rid, job, states.get(job, "UNKNOWN")) for rid, job in latest.items()]

    def live_jobs(self, ids: Iterable[str], store: Store) -> dict[str, str]:
        """Runs not done whose latest job is still pending or running (not to submit again)."""
        latest = self.latest_jobs(ids)
        if not latest:
            return {}
        records = store.get_many(latest)
        latest = {
            rid: job
            for rid, job in latest.items()
            if getattr(records.get(rid), "status", None) is not RunStatus.DONE
        }
        states = job_states(set(latest.values()))
        return {rid: job for rid, job in latest.items() if states.get(job, "UNKNOWN") in ALIVE}


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM's state of each job (``123`` or array task ``123_4``); unknown ones are left out."""
    ids = sorted(set(job_ids))
    if not ids or shutil.which("squeue") is None:
        return {}
    states = _query(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)])
    if states is None:  # no accounting database: the controller's memory of recent jobs
        states = _query(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(ids)])
    return {k: v for k, v in (states or {}).items() if k in set(ids)}


def _query(cmd: list[str]) -> dict[str, str] | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state:
            out[job] = state.split()[0].rstrip("+")  # "CANCELLED by 0" -> CANCELLED
    return out


def ingest(root: str | Path, store: Store, ids: Iterable[str]) -> int:
    """Record the runs whose directories finished but the store does not know it; idempotent.

    Only a finished result (``results.json``, or a ``.results.attempt-N.json`` left by a kill)
    or a recorded failure is taken; a done row is never replaced.
    """
    root = Path(root)
    ids = list(ids)
    known = store.get_many(ids, light=True)  # states and attempts: no configs to parse
    count = 0
    for rid in ids:
        rec = known.get(rid)
        if rec is not None and rec.status in (RunStatus.DONE, RunStatus.RUNNING):
            continue  # done, or held by a live claim: the claimant commits it
        run_dir = root / rid
        if not (run_dir / "config.json").exists():
            continue
        try:
            found = record_from_dir(run_dir.resolve())
        except (OSError, ValueError):
            continue
        if found is None or found.status is RunStatus.PENDING:
            continue
        if rec is not None and rec.status is found.status:
            continue
        store.put(dataclasses.replace(found, attempts=max(found.attempts, _attempts(rec))))
        count += 1
    return count


def _attempts(rec: RunRecord | None) -> int:
    return rec.attempts if rec is not None else 0


def reconcile(root: str | Path, store: Store, ids: Sequence[str]) -> list[str]:
    """Ingest finished run directories, release runs stuck in ended jobs; lines to print."""
    lines = []
    n = ingest(root, store, ids)
    if n:
        lines.append(f"ingested {n} finished run(s) from their run directories")
    records = store.get_many(ids, light=True)
    open_ids = [
        rid for rid in ids if getattr(records.get(rid), "status", None) is not RunStatus.DONE
    ]
    jobs = Ledger(root).jobs_of(open_ids)
    if not jobs:
        return lines
    by_state: dict[str, int] = {}
    stuck: list[tuple[JobOfRun, RunRecord | None]] = []
    for job in jobs:
        by_state[job.state] = by_state.get(job.state, 0) + 1
        rec = records.get(job.run_id)
        if job.alive:
            continue
        if rec is not None and rec.status is RunStatus.RUNNING:
            store.finish(rec.id, rec.owner or "", RunStatus.PENDING, attempt=rec.attempts)
        if rec is None or rec.status is not RunStatus.FAILED:
            stuck.append((job, rec))
    lines.append(
        "SLURM jobs of the runs not done: "
        + ", ".join(f"{v} {k.lower()}" for k, v in sorted(by_state.items()))
    )
    if stuck:
        lines.append(
            f"{len(stuck)} run(s) stuck in job(s) that ended; `assay run` again "
            "submits them (they resume from their checkpoints):"
        )
        for job, _rec in stuck[:50]:
            lines.append(f"  {job.run_id}: job {job.job_id} {job.state}")
    return lines
