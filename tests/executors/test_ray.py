"""``--executor ray`` on a real two-node Ray cluster on loopback (a head and a worker node, each a
``ray start --block`` process tree started here); the worker node's raylet is killed mid-suite.

Slow (Ray's daemons take ~20 s to start on 2 cores): `make test-all`, and .ci/run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import assay
from assay.engine._suite import suite_from_dict

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.slow

RAY_START_S = 120  # both nodes registered with the head
RAY_BIN = Path(sys.executable).with_name("ray")


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [str(RAY_BIN), "start", "--block", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    """End a ``ray start --block`` process and every process it started, by pid."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    for child in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@pytest.fixture(scope="module")
def ray_cluster():
    if not RAY_BIN.exists():
        pytest.skip(f"no ray command at {RAY_BIN}")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    port = __import__("servers").free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = _start(
        [
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--node-ip-address=127.0.0.1",
        ],
        env,
    )
    worker = None
    try:
        address = f"127.0.0.1:{port}"
        time.sleep(3)
        worker = _start(
            [f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"], env
        )
        deadline = time.time() + RAY_START_S
        while True:
            out = subprocess.run(
                [str(RAY_BIN), "status", f"--address={address}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.stdout.count("node_") >= 2:
                break
            if time.time() > deadline or head.poll() is not None:
                pytest.skip(f"the Ray cluster did not come up: {out.stdout[-300:]}")
            time.sleep(1)
        yield address, worker
    finally:
        if worker is not None:
            _stop(worker)
        _stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def _raylet_of(worker: subprocess.Popen) -> psutil.Process:
    for child in psutil.Process(worker.pid).children(recursive=True):
        if child.name() == "raylet":
            return child
    raise AssertionError("the worker node has no raylet")


def test_worker_node_dies_mid_suite_without_duplicates(ray_cluster, tmp_path):
    address, worker = ray_cluster
    root, marks = tmp_path / "runs", tmp_path
    suite = suite_from_dict(
        {
            "stage": "c.slow_steps",
            "config": {"marker_dir": str(marks), "n_steps": 6, "step_s": 0.4},
            "sweep": {"grid": {"tag": list(range(6))}},
        }
    )
    killed: list[str] = []

    def kill_worker_node_mid_run() -> None:
        raylet = _raylet_of(worker)
        node_pids = {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for line in (
                (marks / "starts.txt").read_text().splitlines()
                if (marks / "starts.txt").exists()
                else []
            ):
                rid, _attempt, _resumed, pid = line.split()
                node_pids |= {p.pid for p in raylet.children(recursive=True)}
                if int(pid) in node_pids:  # a run in flight on the worker node
                    time.sleep(0.5)
                    raylet.kill()
                    killed.append(rid)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_worker_node_mid_run, daemon=True)
    killer.start()
    result = assay.run_suite(
        suite,
        root=root,
        executor="ray",
        imports=["clusterstages"],
        cluster={"address": address, "runs_per_job": 1},
    )
    killer.join(timeout=10)
    assert killed, "no run was seen on the worker node"
    assert result.counts == {"done": 6}, result.outcomes
    with assay.resolve_store(None, root) as store:
        records = {r.id: r for r in store.query()}
    assert len(records) == 6 and all(r.status is assay.RunStatus.DONE for r in records.values())
    assert Counter((marks / "ends.txt").read_text().split()) == {rid: 1 for rid in records}
    starts = Counter(line.split()[0] for line in (marks / "starts.txt").read_text().splitlines())
    assert all(starts[rid] == rec.attempts for rid, rec in records.items())
    # lost with the node and retried on the head (2), or finished by its orphaned worker (1)
    assert records[killed[0]].attempts in (1, 2)


def test_ray_executor_conforms(ray_cluster, tmp_path):
    from assay.testing import check_executor

    address, _ = ray_cluster
    check_executor("ray", tmp_path / "runs", cluster={"address": address})
