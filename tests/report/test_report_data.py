"""The report's data record: the numbers every section shows, checked against the run files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _helpers import run_demo, write_suite
from scipy import stats

import assay
from assay.report import collect
from assay.report._curves import MAX_STEPS, aggregate_curves
from assay.report._provenance import provenance_summary


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    suite, root = run_demo(tmp_path_factory.mktemp("demo"))
    return suite, root, collect(root=root, suite=suite)


def _results(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/results.json")}


def _column(data: dict, label: str) -> int:
    return [c["label"] for c in data["table"]["columns"]].index(label)


def test_plan_status_and_table_match_the_run_files(demo):
    suite, root, data = demo
    assert data["plan"]["n_runs"] == 9 and data["plan"]["name"] == "rpt-demo"
    assert data["counts"] == {"done": 6, "failed": 3}
    results = _results(root)
    rows = data["table"]["rows"]
    assert len(rows) == 9
    labels = [c["label"] for c in data["table"]["columns"]]
    assert labels[:5] == ["#", "id", "state", "lr", "seed"]
    for row in rows:
        rid, state = row[1], row[2]
        lr = row[_column(data, "lr")]
        assert state == ("failed" if lr == 0.9 else "done")
        if state == "done":
            assert row[_column(data, "final_loss")] == results[rid]["final_loss"]
            assert row[_column(data, "label")] == f"lr{lr}"
        else:
            assert row[_column(data, "final_loss")] is None  # a failed run has no result
    assert [r[0] for r in rows] == list(range(9))  # suite order, suite index
    numeric = {c["label"]: c["numeric"] for c in data["table"]["columns"]}
    assert numeric["final_loss"] and numeric["lr"] and not numeric["label"]


def test_statistics_are_the_engines_over_finished_runs(demo):
    suite, root, data = demo
    results = _results(root)
    rows = {(r["group"], r["metric"]): r for r in data["stats"]["summary"]}
    assert {g for g, _ in rows} == {"lr=0.1", "lr=0.3"}  # the failed group has no values
    losses = []
    for rid, res in results.items():
        cfg = json.loads((root / rid / "config.json").read_text())
        if cfg["lr"] == 0.1:
            losses.append(res["final_loss"])
    row = rows[("lr=0.1", "final_loss")]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(np.mean(losses))
    half = stats.t.ppf(0.975, 2) * np.std(losses, ddof=1) / math.sqrt(3)
    assert row["ci_high"] - row["mean"] == pytest.approx(half)
    comp = {(c["group"], c["metric"]): c for c in data["stats"]["comparison"]}
    c = comp[("lr=0.3", "final_loss")]
    assert c["baseline"] == "lr=0.1" and c["n_pairs"] == 3  # seeds match: the paired test ran
    assert 0 <= c["p_paired"] <= 1 and 0 <= c["p_welch_holm"] <= 1


def test_curves_are_the_mean_and_t_band_of_the_seeds(demo):
    suite, root, data = demo
    curves = data["curves"]
    assert curves["metrics"] == ["acc", "loss"]
    line = next(s for s in curves["series"]["loss"] if s["group"] == "lr=0.3")
    per_run = []
    for p in root.glob("rpt_train_*/metrics.jsonl"):
        cfg = json.loads((p.parent / "config.json").read_text())
        if cfg["lr"] == 0.3:
            per_run.append(
                {r["step"]: r["loss"] for r in map(json.loads, p.read_text().splitlines())}
            )
    assert len(per_run) == 3 and line["steps"] == list(range(12))
    at5 = [r[5] for r in per_run]
    assert line["mean"][5] == pytest.approx(np.mean(at5), rel=1e-5)
    half = stats.t.ppf(0.975, 2) * np.std(at5, ddof=1) / math.sqrt(3)
    assert line["hi"][5] - line["mean"][5] == pytest.approx(half, rel=1e-3)
    assert line["n"] == [3] * 12
    # failed runs' partial curves stay out of the group means
    assert {s["group"] for s in curves["series"]["loss"]} == {"lr=0.1", "lr=0.3"}
    rid = next(r[1] for r in data["table"]["rows"] if r[2] == "done")
    assert len(curves["runs"][rid]["loss"][0]) == 12  # the run's own curve, for its detail


def test_failures_carry_their_error_tails(demo):
    _, _, data = demo
    fails = data["failures"]
    assert fails["n"] == 3 and len(fails["shown"]) == 3
    f = fails["shown"][0]
    assert f["params"]["lr"] == 0.9
    assert "diverged at lr=0.9" in f["error"]
    assert "RuntimeError: diverged at lr=0.9" in f["error_tail"]
    assert "failed" in f["log_tail"]


def test_provenance_names_commit_and_packages(demo):
    _, _, data = demo
    pv = data["provenance"]
    assert pv["n_recorded"] == 9 and pv["n_missing"] == 0
    assert sum(c["runs"] for c in pv["commits"]) == 9
    assert "numpy" in pv["packages_shared"] and pv["packages_differing"] == {}


def test_pending_runs_are_planned_rows(demo, tmp_path):
    suite, root, _ = demo
    data = collect(root=root, suite=suite, seeds=[0, 1, 2, 3])  # seed 3 never ran
    assert data["counts"] == {"done": 6, "failed": 3, "pending": 3}
    pending = [r for r in data["table"]["rows"] if r[2] == "pending"]
    assert {r[_column(data, "seed")] for r in pending} == {3}


def test_stage_report_and_bad_input(demo):
    _, root, _ = demo
    data = collect(root=root, stage="rpt.train")
    assert len(data["table"]["rows"]) == 9 and data["plan"] is None
    with pytest.raises(assay.AssayError, match="no recorded runs of stage 'rpt.nope'"):
        collect(root=root, stage="rpt.nope")
    with pytest.raises(assay.AssayError, match="exactly one"):
        collect(root=root)
    with pytest.raises(assay.AssayError, match="baseline"):
        collect(root=root, stage="rpt.train", baseline="lr=5")


def test_nonfinite_results_are_flagged_not_dropped(tmp_path):
    import reportstages  # noqa: F401

    suite = write_suite(
        tmp_path,
        """\
        name: nan-demo
        stage: rpt.train
        config: {n_steps: 3}
        sweep:
          variants: [{nan_result: false}, {nan_result: true}]
          seeds: [0, 1]
        """,
    )
    root = tmp_path / "runs"
    assay.run_suite(suite, root=root)
    data = collect(root=root, suite=suite)
    score = _column(data, "score")
    cells = [r[score] for r in data["table"]["rows"]]
    assert cells.count("nan") == 2 and all(isinstance(c, float) for c in cells if c != "nan")
    rows = {(r["group"], r["metric"]): r for r in data["stats"]["summary"]}
    bad = rows[("nan_result=True", "score")]
    assert bad["n"] == 0 and bad["n_nonfinite"] == 2 and "no finite value" in bad["note"]


def test_curve_aggregation_thins_flags_and_bands():
    long = {f"r{i}": {"loss": {s: float(s + i) for s in range(1000)}} for i in range(2)}
    long["r2"] = {"loss": {0: math.nan, 1: 5.0}}
    out = aggregate_curves(long, {"r0": "a", "r1": "a", "r2": "b"})
    a = next(s for s in out["series"]["loss"] if s["group"] == "a")
    assert len(a["steps"]) <= MAX_STEPS + 1 and a["steps"][-1] == 999
    assert a["mean"][0] == 0.5 and a["n"][0] == 2 and a["lo"][0] < 0.5 < a["hi"][0]
    b = next(s for s in out["series"]["loss"] if s["group"] == "b")
    assert b["mean"] == [None, 5.0] and b["lo"] == [None, None]  # one run: no band
    notes = " ".join(out["notes"])
    assert "every 3th is drawn" in notes and "1 non-finite" in notes and "no band" in notes


def test_provenance_flags_dirty_runs_and_differing_packages():
    from assay import RunRecord, RunStatus

    recs = [
        RunRecord(f"r{i}", "s.t", RunStatus.DONE, {}, attempts=1, dir=Path(f"/x/r{i}"))
        for i in range(4)
    ]
    git = {"commit": "abc", "branch": "main", "dirty": False, "diff_sha256": None}
    prov = {
        "r0": {"git": git, "packages": {"numpy": "2.0", "torch": "2.13.0"}, "python": "3.11"},
        "r1": {"git": git, "packages": {"numpy": "2.1", "torch": "2.13.0"}, "python": "3.11"},
        "r2": {
            "git": {**git, "dirty": True, "diff_sha256": "d1"},
            "packages": {"numpy": "2.0"},
            "python": "3.11",
        },
        "r3": None,
    }
    pv = provenance_summary(recs, prov)
    assert pv["n_recorded"] == 3 and pv["missing"] == ["r3"]
    assert pv["dirty"] == ["r2"] and pv["commits"][0]["dirty"] == 1
    numpy = {v["value"]: v["runs"] for v in pv["packages_differing"]["numpy"]}
    assert numpy == {"2.0": 2, "2.1": 1}
    torch = {v["value"]: v["ids"] for v in pv["packages_differing"]["torch"]}
    assert torch["(not installed)"] == ["r2"]
