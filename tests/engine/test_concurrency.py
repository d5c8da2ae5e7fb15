"""Killed suites resume; concurrent invocations on one store never run a run twice."""

import os
import signal
import subprocess
import time
from collections import Counter

import assaycli
import pytest

import assay


def write_suite(path, marker_dir, n, sleep_s, stage="t.count", extra=""):
    path.write_text(
        f"stage: {stage}\nimports: [teststages]\n"
        f"config: {{marker_dir: '{marker_dir}', sleep_s: {sleep_s}{extra}}}\n"
        f"sweep: {{grid: {{x: {list(range(n))}}}}}\n"
    )
    return path


def launch(suite, root, *extra):
    return subprocess.Popen(
        assaycli.run_command(suite, root, "teststages", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for_lines(path, n, timeout_s=60):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if path.exists() and len(path.read_text().split()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_mid_suite_then_resume_loses_nothing_and_repeats_nothing(tmp_path, workers):
    root = tmp_path / "runs"
    suite = write_suite(tmp_path / "s.yaml", tmp_path, n=10, sleep_s=0.3)
    proc = launch(suite, root, "--workers", workers)
    wait_for_lines(tmp_path / "ends.txt", 3)
    time.sleep(0.1)  # now mid-way through a run
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: parent and workers
    proc.communicate()
    with assay.resolve_store(None, root) as store:
        before = {r.id: r for r in store.query()}
    states = Counter(r.status.value for r in before.values())
    assert states.get("done", 0) < 10  # killed mid-suite (almost always with a run in flight)
    finished = {
        rid: (r.dir / "results.json").stat().st_mtime_ns
        for rid, r in before.items()
        if r.status is assay.RunStatus.DONE
    }
    done = launch(suite, root, "--workers", workers)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    with assay.resolve_store(None, root) as store:
        records = {r.id: r for r in store.query()}
    # nothing lost: every run of the suite finished
    assert len(records) == 10 and all(r.status is assay.RunStatus.DONE for r in records.values())
    # nothing done twice: a run recorded as finished before the kill was not run again
    for rid, mtime in finished.items():
        assert records[rid].attempts == before[rid].attempts
        assert (records[rid].dir / "results.json").stat().st_mtime_ns == mtime
    # only the runs in flight at the kill ran again, and the store counted every execution
    starts = Counter((tmp_path / "starts.txt").read_text().split())
    assert all(starts[rid] == r.attempts for rid, r in records.items())
    assert sum(r.attempts for r in records.values()) - 10 <= int(workers)


def test_two_shards_concurrently_on_one_store(tmp_path):
    root = tmp_path / "runs"
    suite = tmp_path / "s.yaml"
    # every run depends on one shared upstream run: both shards need it, one runs it
    suite.write_text(
        "stage: t.double\nimports: [teststages]\n"
        f"config: {{source: {{x: 7, marker_dir: '{tmp_path}', sleep_s: 0.5}}}}\n"
        "sweep: {grid: {factor: [1, 2, 3, 4, 5, 6, 7, 8]}}\n"
    )
    shards = [launch(suite, root, "--shard", f"{i}/2") for i in range(2)]
    for p in shards:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with assay.resolve_store(None, root) as store:
        doubles = store.query(stage="t.double")
        counts = store.query(stage="t.count")
    assert sorted(r.results["y"] for r in doubles) == [14 * f for f in range(1, 9)]
    assert len(counts) == 1 and counts[0].attempts == 1
    assert (tmp_path / "starts.txt").read_text().split() == [counts[0].id]  # ran exactly once


def test_two_identical_invocations_split_the_work(tmp_path):
    root = tmp_path / "runs"
    suite = write_suite(tmp_path / "s.yaml", tmp_path, n=12, sleep_s=0.1)
    procs = [launch(suite, root) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    starts = Counter((tmp_path / "starts.txt").read_text().split())
    assert len(starts) == 12 and max(starts.values()) == 1


def test_sigint_puts_the_run_in_flight_back_to_pending(tmp_path):
    root = tmp_path / "runs"
    suite = write_suite(tmp_path / "s.yaml", tmp_path, n=3, sleep_s=30)
    proc = launch(suite, root)
    wait_for_lines(tmp_path / "starts.txt", 1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"rerun the command to continue" in err
    with assay.resolve_store(None, root) as store:
        (rec,) = store.query()
    assert rec.status is assay.RunStatus.PENDING  # not failed: the next run picks it up
    assert "interrupted" in (rec.dir / "log.txt").read_text()


def test_sigint_with_two_workers_starts_nothing_new_and_returns_runs_to_pending(tmp_path):
    root = tmp_path / "runs"
    suite = write_suite(tmp_path / "s.yaml", tmp_path, n=6, sleep_s=30)
    proc = launch(suite, root, "--workers", "2")
    wait_for_lines(tmp_path / "starts.txt", 2)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole group
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "the command took too long to stop"
    assert proc.returncode == 130 and b"rerun the command to continue" in err
    time.sleep(1.0)  # anything a worker wrongly started after the interrupt would show by now
    assert len((tmp_path / "starts.txt").read_text().split()) == 2  # nothing new started
    with assay.resolve_store(None, root) as store:
        states = Counter(r.status.value for r in store.query())
    assert states == {"pending": 2}


def test_sigint_to_the_parent_alone_still_returns_runs_to_pending(tmp_path):
    root = tmp_path / "runs"
    suite = write_suite(tmp_path / "s.yaml", tmp_path, n=4, sleep_s=30)
    proc = launch(suite, root, "--workers", "2")
    wait_for_lines(tmp_path / "starts.txt", 2)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    with assay.resolve_store(None, root) as store:
        states = Counter(r.status.value for r in store.query())
    assert states == {"pending": 2}
