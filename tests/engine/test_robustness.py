"""What the engine audit found: dead pool workers, stopped owners, orphaned timeout children,
kills between result and commit, moved roots, corrupt files. Each must lose nothing and never
run a run twice at once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import teststages  # noqa: F401 - registers the t.* stages
from test_concurrency import launch, wait_for_lines, write_suite

import assay
from assay.core._options import RunOptions
from assay.core._spec import plan_config
from assay.engine._runner import Runner
from assay.store import resolve_store


def die_suite(tmp_path, die_x):
    suite = tmp_path / "die.yaml"
    suite.write_text(
        "stage: t.die\nsweep:\n  variants: ["
        + ", ".join(f"{{x: {x}, die: {str(x in die_x).lower()}}}" for x in range(6))
        + "]\n"
    )
    return suite


def test_a_killed_pool_worker_fails_its_run_and_the_suite_goes_on(tmp_path, root):
    result = assay.run_suite(die_suite(tmp_path, {2}), root=root, workers=2)
    by_x = {o.index: o for o in result.outcomes}
    assert result.counts == {"done": 5, "failed": 1}
    assert "WorkerDied" in by_x[2].error
    with resolve_store(None, root) as store:
        states = {r.config["x"]: r.status.value for r in store.query(stage="t.die")}
    assert states == {0: "done", 1: "done", 2: "failed", 3: "done", 4: "done", 5: "done"}


def test_with_retries_a_killed_workers_run_is_retried(tmp_path, root):
    result = assay.run_suite(die_suite(tmp_path, {1}), root=root, workers=2, retries=1)
    assert result.counts == {"done": 6}
    with resolve_store(None, root) as store:
        rec = [r for r in store.query(stage="t.die") if r.config["x"] == 1][0]
    assert rec.attempts == 2 and rec.results["attempt"] == 2


def test_a_dead_worker_touches_only_its_own_run(tmp_path, root):
    # worker A works on x=0 for 2 s while worker B dies on x=1: A's run must finish untouched
    suite = tmp_path / "die.yaml"
    suite.write_text(
        "stage: t.die\nsweep:\n  variants: [{x: 0, sleep_s: 2.0}, {x: 1, die: true}]\n"
    )
    result = assay.run_suite(suite, root=root, workers=2)
    assert result.counts == {"done": 1, "failed": 1}
    with resolve_store(None, root) as store:
        recs = {r.config["x"]: r for r in store.query(stage="t.die")}
    assert recs[0].status.value == "done" and recs[0].attempts == 1
    assert recs[1].status.value == "failed" and recs[1].attempts == 1  # one execution, one attempt
    assert "WorkerDied" in recs[1].error


def test_with_retries_only_the_dead_workers_run_executes_twice(tmp_path, root):
    suite = tmp_path / "die.yaml"
    suite.write_text(
        "stage: t.die\nsweep:\n  variants: [{x: 0, sleep_s: 2.0}, {x: 1, die: true}]\n"
    )
    result = assay.run_suite(suite, root=root, workers=2, retries=1)
    assert result.counts == {"done": 2}
    with resolve_store(None, root) as store:
        attempts = {r.config["x"]: r.results["attempt"] for r in store.query(stage="t.die")}
    assert attempts == {0: 1, 1: 2}


def test_a_stopped_owner_is_never_taken_over(tmp_path, root):
    marks = tmp_path / "marks"
    marks.mkdir()
    suite = write_suite(tmp_path / "s.yaml", marks, 1, 1.5)
    first = launch(suite, root)
    wait_for_lines(marks / "starts.txt", 1)
    os.kill(first.pid, signal.SIGSTOP)  # stalled: swapped out, or a debugger
    try:
        # its heartbeat goes stale (0.3 s), but its pid is alive on this host: hands off
        second = launch(suite, root, "--heartbeat-s", "0.1", "--stale-after-s", "0.3")
        time.sleep(2.0)
        assert second.poll() is None  # still waiting, not running it beside the first
        assert len((marks / "starts.txt").read_text().split()) == 1
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first.communicate(timeout=60)
    out = second.communicate(timeout=60)[0].decode()
    assert first.returncode == 0 and second.returncode == 0
    assert "1 done-elsewhere" in out
    assert len((marks / "starts.txt").read_text().split()) == 1
    assert len((marks / "ends.txt").read_text().split()) == 1


def test_a_timeout_child_dies_with_its_killed_parent(tmp_path, root):
    marks = tmp_path / "marks"
    marks.mkdir()
    suite = write_suite(tmp_path / "s.yaml", marks, 1, 2.0)
    first = launch(suite, root, "--timeout-s", "60")
    wait_for_lines(marks / "starts.txt", 1)
    os.kill(first.pid, signal.SIGKILL)  # the parent only: the child must not live on
    first.communicate(timeout=10)
    second = launch(suite, root, "--timeout-s", "60")
    second.communicate(timeout=60)
    assert second.returncode == 0
    time.sleep(2.5)  # long enough for an orphaned child to have finished its sleep
    assert len((marks / "starts.txt").read_text().split()) == 2
    assert len((marks / "ends.txt").read_text().split()) == 1  # only the second execution


class CrashBeforeCommit:
    """A store whose process 'dies' right after the results were written, before the commit."""

    def __init__(self, store):
        self._store = store

    def finish(self, run_id, owner, status, **kw):
        if status is assay.RunStatus.DONE:
            raise SystemExit("killed between results and commit")
        return self._store.finish(run_id, owner, status, **kw)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_kill_between_results_and_commit_keeps_the_result(tmp_path, root):
    marks = tmp_path / "marks"
    marks.mkdir()
    planned = plan_config(teststages.CountConfig(x=3, marker_dir=str(marks)))
    options = RunOptions(root=root)
    store = resolve_store(None, root)
    crashing = Runner(options, store=CrashBeforeCommit(store))
    crashing.owner = f"{crashing.owner.split(':')[0]}:999999999:0:dead"  # a pid that is gone
    with pytest.raises(SystemExit):
        crashing.execute(planned)
    assert list((root / planned.id).glob(".results.attempt-1.json"))
    outcome = Runner(options).execute(planned)
    assert outcome.label == "done" and len((marks / "starts.txt").read_text().split()) == 1
    assert json.loads((root / planned.id / "results.json").read_text())["x2"] == 6
    assert "adopted the finished result" in (root / planned.id / "log.txt").read_text()


def test_a_kill_between_commit_and_rename_restores_results_json(tmp_path, root):
    rec = assay.run_config(teststages.CountConfig(x=4), root=root)
    (rec.dir / "results.json").rename(rec.dir / ".results.attempt-1.json")
    again = assay.run_config(teststages.CountConfig(x=4), root=root)
    assert again.status is assay.RunStatus.DONE and again.attempts == 1
    assert json.loads((rec.dir / "results.json").read_text())["x2"] == 8


def test_a_moved_root_keeps_its_upstream_runs(tmp_path):
    first, moved = tmp_path / "a", tmp_path / "b"
    assay.run_config(teststages.DoubleConfig(factor=2), root=first)
    shutil.move(first, moved)
    rec = assay.run_config(teststages.DoubleConfig(factor=5), root=moved)  # reuses the source
    assert rec.status is assay.RunStatus.DONE and rec.results["y"] == 0
    with resolve_store(None, moved) as store:
        for r in store.query():
            assert r.dir.parent == moved.resolve()


def test_reindex_reports_corrupt_files_and_leaves_the_store_alone(tmp_path, root):
    for x in range(3):
        assay.run_config(teststages.CountConfig(x=x), root=root)
    with resolve_store(None, root) as store:
        before = sorted((r.id, r.status.value) for r in store.query())
        victim = store.query()[1]
    (victim.dir / "results.json").write_text('{"x2": 4')  # truncated
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "reindex", "--root", str(root)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(victim.dir / "results.json") in proc.stderr or victim.id in proc.stderr
    with resolve_store(None, root) as store:
        assert sorted((r.id, r.status.value) for r in store.query()) == before


@pytest.mark.parametrize(
    "content", [b"not a database at all" * 10, b"SQLite format 3\x00" + b"\x00" * 50]
)
def test_a_corrupt_store_file_gets_a_message(tmp_path, content):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "assay.db").write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "ls", "--root", str(root)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "assay reindex" in proc.stderr


def test_identical_invocations_report_what_each_executed(tmp_path, root):
    marks = tmp_path / "marks"
    marks.mkdir()
    suite = write_suite(tmp_path / "s.yaml", marks, 8, 0.3)
    procs = [launch(suite, root) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    executed = [executed_count(o) for o in outs]
    assert sum(executed) == 8 and len((marks / "starts.txt").read_text().split()) == 8
    assert all(e >= 1 for e in executed), outs  # shared, not one waiting on the other


def executed_count(summary: str) -> int:
    """``suite s: 5 done, 3 done-elsewhere`` -> 5."""
    counts = summary.strip().splitlines()[-1].split(": ", 1)[1].split(", ")
    return sum(int(c.split()[0]) for c in counts if c.split()[1] == "done")
