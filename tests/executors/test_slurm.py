"""``--executor slurm`` against a real one-node SLURM cluster started by the tests (conftest).

Submission returns at once; the tests follow the jobs through the store and the ledger with
bounded waits, cancel, requeue and preempt jobs, and check that nothing is lost or run twice.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import assay
from assay.engine._suite import suite_from_dict
from assay.executors._ledger import Ledger, job_states, reconcile

pytest.importorskip("submitit")

WAIT_S = 90  # every wait on SLURM is bounded by this


def _suite(stage: str, config: dict, grid: dict):
    return suite_from_dict({"stage": stage, "config": config, "sweep": {"grid": grid}})


def _submit(suite, root: Path, imports: str = "clusterstages", **cluster):
    return assay.run_suite(suite, root=root, executor="slurm", imports=[imports], cluster=cluster)


def _records(root: Path) -> dict[str, assay.RunRecord]:
    with assay.resolve_store(None, root) as store:
        return {r.id: r for r in store.query()}


def _wait(predicate, what: str, timeout_s: float = WAIT_S):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _all_done(root: Path, n: int):
    return lambda: (
        len(recs := _records(root)) == n
        and all(r.status is assay.RunStatus.DONE for r in recs.values())
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def test_job_array_runs_a_suite_through_sbatch(slurm, tmp_path):
    root = tmp_path / "runs"
    suite = _suite("t.count", {}, {"x": list(range(12))})
    started = time.time()
    result = _submit(suite, root, imports="teststages", runs_per_job=2, partition="long")
    assert time.time() - started < 30  # submits and returns; does not wait for the jobs
    assert result.counts == {"pending": 12}
    jobs = Ledger(root).latest_jobs(o.id for o in result.outcomes)
    assert len(set(jobs.values())) == 6  # 12 runs, 2 per job
    arrays = {j.split("_")[0] for j in jobs.values()}
    assert len(arrays) == 2  # MaxArraySize=5 splits 6 jobs into arrays of 5 and 1
    _wait(_all_done(root, 12), "12 runs done")
    records = _records(root)
    assert all(r.attempts == 1 for r in records.values())
    assert sorted(r.results["x2"] for r in records.values()) == [2 * x for x in range(12)]
    parts = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%P", "-j", ",".join(arrays)],
        capture_output=True,
        text=True,
        env=slurm.env,
        timeout=30,
    )
    assert set(parts.stdout.split()) == {"long"}
    _wait(lambda: set(job_states(set(jobs.values())).values()) == {"COMPLETED"}, "completion")
    # submitting again finds every run done: nothing is submitted
    again = _submit(suite, root, imports="teststages", runs_per_job=2)
    assert again.counts == {"skipped": 12}
    with assay.resolve_store(None, root) as store:
        assert reconcile(root, store, list(records)) == []  # all done: nothing to say


def test_cancelled_job_is_reported_and_its_run_recovered(slurm, tmp_path):
    root, marks = tmp_path / "runs", tmp_path
    suite = _suite(
        "c.slow_steps",
        {"marker_dir": str(marks), "n_steps": 12, "step_s": 0.3},
        {"tag": [0, 1, 2]},
    )
    result = _submit(suite, root)
    ids = [o.id for o in result.outcomes]
    jobs = Ledger(root).latest_jobs(ids)
    victim = ids[0]
    _wait(
        lambda: any(line.split()[0] == victim for line in _lines(marks / "steps.txt")),
        "the first run to checkpoint a step",
    )
    subprocess.run(["scancel", jobs[victim]], env=slurm.env, check=True, timeout=30)
    _wait(
        lambda: all(
            getattr(_records(root).get(i), "status", None) is assay.RunStatus.DONE for i in ids[1:]
        ),
        "the other runs",
    )
    _wait(lambda: job_states([jobs[victim]]).get(jobs[victim]) == "CANCELLED", "CANCELLED")
    with assay.resolve_store(None, root) as store:
        # SIGTERM from scancel put the run in flight back to pending before the job ended
        assert store.get(victim).status is assay.RunStatus.PENDING
        lines = reconcile(root, store, ids)
        assert any("1 run(s) stuck" in line for line in lines), lines
        assert any(victim in line and "CANCELLED" in line for line in lines), lines
    again = _submit(suite, root)
    assert again.counts == {"pending": 1, "skipped": 2}
    _wait(_all_done(root, 3), "the resubmitted run")
    records = _records(root)
    assert records[victim].attempts == 2 and records[victim].results["resumed_from"] > 0
    assert Counter(_lines(marks / "ends.txt")) == {i: 1 for i in ids}  # each finished once


def test_preempted_and_requeued_jobs_resume_from_their_checkpoints(slurm, tmp_path):
    root, marks = tmp_path / "runs", tmp_path
    suite = _suite(
        "c.slow_steps", {"marker_dir": str(marks), "n_steps": 8, "step_s": 0.5}, {"tag": [10, 11]}
    )
    result = _submit(suite, root)
    preempted, requeued = (o.id for o in result.outcomes)
    jobs = Ledger(root).latest_jobs([preempted, requeued])
    for rid in (preempted, requeued):
        _wait(
            lambda rid=rid: (
                sum(line.split()[0] == rid for line in _lines(marks / "steps.txt")) >= 2
            ),
            f"{rid} at step 2",
        )
    # preemption: SLURM sends the job's --signal (USR2); submitit checkpoints and requeues
    subprocess.run(
        ["scancel", "--signal=USR2", jobs[preempted]], env=slurm.env, check=True, timeout=30
    )
    # an operator's requeue: the job is killed and started again from its submission
    subprocess.run(["scontrol", "requeue", jobs[requeued]], env=slurm.env, check=True, timeout=30)
    # SLURM holds a requeued job ~2 minutes before it may start again; a test need not wait
    for rid in (preempted, requeued):
        _wait(lambda rid=rid: job_states([jobs[rid]]).get(jobs[rid]) == "PENDING", "requeued")
        subprocess.run(
            ["scontrol", "update", f"JobId={jobs[rid]}", "StartTime=now"],
            env=slurm.env,
            check=True,
            timeout=30,
        )
    _wait(_all_done(root, 2), "both runs after the requeues")
    records = _records(root)
    for rid in (preempted, requeued):
        rec = records[rid]
        assert rec.attempts == 2, rec  # the interrupted attempt and the resumed one
        assert rec.results["resumed_from"] >= 2  # resumed from the checkpoint, not step 0
        assert rec.results["total"] == sum(range(8))
    assert Counter(_lines(marks / "ends.txt")) == {preempted: 1, requeued: 1}


def test_offline_nodes_results_are_ingested(slurm, tmp_path):
    root = tmp_path / "runs"
    suite = _suite("t.count", {}, {"x": [1, 2, 3]})
    result = _submit(suite, root, imports="teststages", offline=True)
    ids = [o.id for o in result.outcomes]
    _wait(lambda: all((root / i / "results.json").exists() for i in ids), "results files")
    assert all(r.status is not assay.RunStatus.DONE for r in _records(root).values())
    with assay.resolve_store(None, root) as store:
        assert (
            reconcile(root, store, ids)[0]
            == "ingested 3 finished run(s) from their run directories"
        )
        assert reconcile(root, store, ids) == []  # idempotent
    records = _records(root)
    assert sorted(records[i].results["x2"] for i in ids) == [2, 4, 6]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a real 1-minute limit, then SLURM's requeue hold
def test_a_job_at_its_time_limit_is_recovered_and_resumes(slurm, tmp_path):
    """A run longer than its job's 1-minute limit: SLURM signals the job before the limit
    (submitit then checkpoints and requeues it) or kills it there; either way the run resumes
    from its checkpoint, finishes once, and is counted as two attempts at most twice."""
    root, marks = tmp_path / "runs", tmp_path
    n_steps = 60  # 30 s of work; SLURM signals the job ~15 s in (45 s before its 1-min limit)
    suite = _suite(
        "c.slow_steps",
        {"marker_dir": str(marks), "n_steps": n_steps, "step_s": 0.5},
        {"tag": [20]},
    )
    result = _submit(suite, root, timeout_min=1, signal_delay_s=45)
    (rid,) = (o.id for o in result.outcomes)
    job = Ledger(root).latest_jobs([rid])[rid]
    _wait(lambda: len(_lines(marks / "steps.txt")) >= 2, "the run to start stepping")
    _wait(
        lambda: job_states([job]).get(job) in ("PENDING", "TIMEOUT", "REQUEUED"),
        "the job to reach its time limit",
        timeout_s=240,
    )
    state = job_states([job]).get(job)
    if state == "PENDING":  # requeued by submitit: no need to wait out SLURM's hold
        subprocess.run(
            ["scontrol", "update", f"JobId={job}", "StartTime=now"],
            env=slurm.env,
            check=True,
            timeout=30,
        )
    else:  # killed at the limit: its process is dead, so the next submission takes the run
        _submit(suite, root, timeout_min=5)
    for _ in range(3):  # a requeued job may be held again by SLURM: release it each time
        state = job_states([job]).get(job)
        if state == "PENDING":
            subprocess.run(
                ["scontrol", "update", f"JobId={job}", "StartTime=now"],
                env=slurm.env,
                check=False,
                timeout=30,
            )
        try:
            _wait(_all_done(root, 1), "the run after its time limit", timeout_s=100)
            break
        except AssertionError:
            continue
    _wait(_all_done(root, 1), "the run after its time limit", timeout_s=30)
    rec = _records(root)[rid]
    assert rec.results["total"] == sum(range(n_steps)) and rec.results["resumed_from"] >= 2
    assert rec.attempts >= 2  # interrupted at the limit, resumed from its checkpoint
    assert _lines(marks / "ends.txt") == [rid]
