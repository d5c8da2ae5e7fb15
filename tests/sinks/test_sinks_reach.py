"""A tracker that cannot be reached costs one short wait per invocation, is said once on the
terminal and in the report, and finished runs can be sent to it later."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

SUITE = "stage: example.fit\nconfig: {data: {n_train: 20}}\nsweep:\n  grid: {degree: [1, 2, 3]}\n"


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connects are refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assay(cwd, *args, env=None):
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "assay", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full,
        timeout=300,
    )


@pytest.fixture
def suite(tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE)
    return tmp_path


def test_an_unreachable_mlflow_server_is_said_once_and_does_not_stall(suite):
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}"}
    start = time.monotonic()
    proc = assay(suite, "run", "s.yaml", "--quiet", "--sink", "mlflow", env=env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 60
    assert proc.stderr.count("cannot connect to 127.0.0.1") == 1
    assert "assay sink replay" in proc.stderr
    lines = (suite / "runs" / "sink-problems.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["sink"] == "mlflow"
    report = assay(suite, "report", "s.yaml", "--out", "r.html")
    assert report.returncode == 0, report.stderr
    assert "cannot connect to 127.0.0.1" in (suite / "r.html").read_text()


def test_mlflow_file_store_names_its_fix(suite):
    env = {"MLFLOW_TRACKING_URI": str(suite / "mlruns"), "MLFLOW_ALLOW_FILE_STORE": ""}
    proc = assay(suite, "run", "s.yaml", "--quiet", "--sink", "mlflow", env=env)
    assert proc.returncode == 0 and "MLFLOW_ALLOW_FILE_STORE=true" in proc.stderr


def test_finished_runs_are_replayed_into_a_sink(suite):
    assert assay(suite, "run", "s.yaml", "--quiet").returncode == 0
    again = assay(suite, "run", "s.yaml", "--quiet", "--sink", "tensorboard")
    assert "3 run(s) had finished before and were not sent to tensorboard" in again.stdout
    replayed = assay(suite, "sink", "replay", "s.yaml", "--sink", "tensorboard")
    assert replayed.returncode == 0, replayed.stderr
    assert (
        "sent 4 of 4 finished run(s) to tensorboard" in replayed.stdout
    )  # 3 fits + their data run
    events = list((suite / "runs" / "tensorboard").rglob("events.out.tfevents.*"))
    assert len({e.parent.name for e in events}) >= 3  # one folder per run
