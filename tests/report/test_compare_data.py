"""The report's live data: groups over every planned run, failed runs' partial curves, upstream
stages' curves, and what ``assay serve`` sends a page that already holds a build (deltas)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from _helpers import run_demo, write_suite

import assay
from assay.core._run import RunStatus
from assay.report import collect
from assay.report._delta import merge
from assay.report._serve import ReportServer
from assay.store import resolve_store


def _metrics(root: Path, rid: str) -> list[dict]:
    return [json.loads(line) for line in (root / rid / "metrics.jsonl").read_text().splitlines()]


def _source(root: Path, suite: Path) -> dict:
    return {
        "root": str(root),
        "store": None,
        "suite": assay.load_suite(suite),
        "overrides": [],
        "stage": None,
        "seeds": None,
        "imports": [],
        "trust_imports": False,
        "baseline": None,
        "families": False,
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("compare"))


def test_a_running_run_of_another_config_is_never_averaged_into_a_finished_group(tmp_path):
    """Only lr=0.05 has finished; the running lr=2.0 run gets its own curve."""
    import reportstages  # noqa: F401

    text = "name: g\nstage: rpt.train\nconfig: {n_steps: 5}\nsweep:\n  grid: {lr: [0.05]}\n"
    root = tmp_path / "runs"
    assay.run_suite(write_suite(tmp_path, text + "  seeds: [0, 1]\n"), root=root)
    suite = write_suite(tmp_path, text.replace("[0.05]", "[0.05, 2.0]") + "  seeds: [0, 1]\n")
    running = next(p for p in assay.plan_suite(suite) if p.params["lr"] == 2.0)
    (root / running.id).mkdir()
    (root / running.id / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 100.0}) + "\n" for s in range(3))
    )
    with resolve_store(None, root) as store:
        store.put(
            assay.RunRecord(
                running.id,
                "rpt.train",
                RunStatus.RUNNING,
                json.loads(running.config_json),
                attempts=1,
                started=time.time(),
                heartbeat=time.time(),
                dir=root / running.id,
            )
        )
    curves = collect(root=root, suite=suite, families=False)["curves"]
    lines = {line["group"]: line for line in curves["series"]["loss"]}
    assert set(lines) == {"lr=0.05", "lr=2.0"}
    assert lines["lr=2.0"]["mean"] == [100.0] * 3 and lines["lr=2.0"]["n"] == [1] * 3
    assert lines["lr=0.05"]["n"] == [2] * 5 and max(lines["lr=0.05"]["mean"]) < 1.0


def test_failed_runs_keep_their_partial_curves_apart_from_the_means(demo):
    suite, root = demo
    data = collect(root=root, suite=suite, families=False)
    failed = {r[1] for r in data["table"]["rows"] if r[2] == "failed"}
    lines = data["curves"]["failed"]["loss"]
    assert {line["run"] for line in lines} == failed and len(failed) == 3
    for line in lines:
        logged = _metrics(root, line["run"])
        assert line["group"] == "lr=0.9" and line["steps"] == [0, 1, 2]
        assert line["values"] == pytest.approx([m["loss"] for m in logged], rel=1e-5)
    # the group means hold the finished runs only
    assert [line["group"] for line in data["curves"]["series"]["loss"]] == ["lr=0.1", "lr=0.3"]
    assert all(line["n"] == [3] * 12 for line in data["curves"]["series"]["loss"])


def test_a_suite_shows_its_upstream_stages_curves_by_stage(tmp_path):
    import reportstages  # noqa: F401

    suite = write_suite(
        tmp_path,
        """\
        name: up
        stage: rpt.eval
        config: {train: {n_steps: 6}}
        sweep:
          grid: {train.lr: [0.1, 0.3], train.seed: [0, 1]}
        """,
    )
    root = tmp_path / "runs"
    assay.run_suite(suite, root=root)
    curves = collect(root=root, suite=suite, families=False)["curves"]
    assert curves["metrics"] == []  # rpt.eval logs nothing itself
    up = curves["upstream"]["rpt.train"]
    assert up["n_runs"] == 4 and up["groups"] == ["lr=0.1", "lr=0.3"]
    with resolve_store(None, root) as store:
        train = store.query(stage="rpt.train")
    for line in up["series"]["loss"]:
        lr = float(line["group"].split("=")[1])
        runs = [_metrics(root, r.id) for r in train if r.config["lr"] == lr]
        want = [sum(m[s]["loss"] for m in runs) / 2 for s in range(6)]
        assert line["mean"] == pytest.approx(want, rel=1e-5) and line["n"] == [2] * 6


def test_serve_sends_only_what_changed_and_the_merge_equals_the_new_build(demo):
    suite, root = demo
    server = ReportServer(_source(root, suite), refresh_ms=1000)
    fp0, data0, sections0 = server.build(None)
    data0 = json.loads(json.dumps(data0))
    assert server.payload(None, fp0) == '{"unchanged":true}'
    full = server.payload(None, "a-page-from-another-server")
    assert json.loads(full)["data"]["fingerprint"] == fp0
    # one run changes in the store: the next poll carries that run and the blocks it moves
    with resolve_store(None, root) as store:
        rec = next(r for r in store.query(stage="rpt.train") if r.status is RunStatus.DONE)
        store.put(
            dataclasses.replace(
                rec, attempts=rec.attempts + 1, results={**rec.results, "final_loss": 0.5}
            )
        )
    body = server.payload(None, fp0)
    change = json.loads(body)
    assert set(change["delta"]["runs"]) == {rec.id} and change["delta"]["removed"] == []
    assert "order" not in change["delta"] and len(body) < len(full) / 2
    fp1, data1, sections1 = server.build(None)
    assert change["fingerprint"] == fp1 != fp0
    merged, sections = merge(data0, sections0, change["delta"])
    assert merged == json.loads(json.dumps(data1)) and sections == sections1
    with resolve_store(None, root) as store:
        store.put(rec)  # the module's demo stays as it was


def test_serve_refreshes_while_only_upstream_runs_move(tmp_path):
    """The upstream runs train first: their progress must reach the page before any run of
    the suite's own stage moves."""
    import reportstages  # noqa: F401

    suite = write_suite(
        tmp_path,
        """\
        name: up
        stage: rpt.eval
        config: {train: {n_steps: 4}}
        sweep:
          grid: {train.lr: [0.1, 0.3]}
        """,
    )
    root = tmp_path / "runs"
    assay.run_suite(suite, root=root)
    server = ReportServer(_source(root, suite), refresh_ms=1000)
    fp0, data0, _ = server.build(None)
    with resolve_store(None, root) as store:
        up = store.query(stage="rpt.train")[0]
        store.put(dataclasses.replace(up, status=RunStatus.RUNNING, heartbeat=time.time()))
    change = json.loads(server.payload(None, fp0))
    assert change["fingerprint"] != fp0
    assert change["delta"]["runs"] == {}  # no row of the suite's own runs changed...
    assert change["delta"]["blocks"]["plan"]["upstream_states"] == {"done": 1, "running": 1}
