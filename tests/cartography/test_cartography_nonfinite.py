"""Correctness in float64 as allenai computes it; QA examples without a map handled explicitly."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

import assay
from assay.families.cartography._dynamics import Dynamics, DynamicsRecorder
from assay.families.cartography._metrics import compute_metrics
from assay.families.cartography.stages import DynamicsConfig, StrategyConfig


def _reference(folder, logits_per_epoch, gold):
    d = folder / "training_dynamics"
    d.mkdir(parents=True)
    for e, rows in enumerate(logits_per_epoch):
        lines = [
            json.dumps({"guid": f"g{i}", f"logits_epoch_{e}": r, "gold": gold[i]})
            for i, r in enumerate(rows)
        ]
        (d / f"dynamics_epoch_{e}.jsonl").write_text("\n".join(lines) + "\n")


def test_near_tie_logits_keep_their_float64_argmax(tmp_path):
    # 1 + 1e-9 and 1 are one float32 value: a float32 argmax says label 0 (wrong) for gold 1
    near = [1.0, 1.0 + 1e-9]
    assert np.float32(near[0]) == np.float32(near[1])
    _reference(
        tmp_path, [[near, [0.0, 2.0]], [[2.0, 0.0], [0.0, 2.0]], [near, [0.0, 2.0]]], gold=[1, 1]
    )
    dyn = Dynamics.from_reference(tmp_path)
    assert dyn.correct[:, 0].tolist() == [True, False, True]  # allenai: argmax of float64 values
    m = compute_metrics(dyn.gold_prob, dyn.correct)
    assert m["forgetfulness"][0] == 1  # learned at epoch 0, forgotten at 1: one forgetting event
    assert m["correctness"][0] == np.float64(2 / 3)
    assert dyn.logits.dtype == np.float64 and dyn.logits[0, 0, 1] == near[1]  # kept as written


def test_recorder_computes_probability_and_correctness_in_float64():
    rec = DynamicsRecorder(["a"], 1, 2, "multiclass", keep_logits=False)
    logits = torch.tensor([[20.0, 20.0 + 2e-6]])  # float32: two distinct values 2e-6 apart
    rec.record(0, torch.tensor([0]), logits, torch.tensor([1]))
    dyn = rec.finish()
    x = logits.double()
    want = torch.softmax(x, -1)[0, 1].item()
    assert dyn.correct.tolist() == [[True]]
    assert dyn.gold_prob[0, 0] == np.float32(want)


QA = {
    "dataset": "qa_synthetic",
    "qa": {"n_train": 80, "n_validation": 20, "n_test": 20, "n_ood": 20, "people_max": 4},
}
# non-overlapping windows of 24 tokens: one of the 80 answers straddles a window boundary, so no
# window holds it and the dynamics run cannot map that example
MODEL = {
    "kind": "hf",
    "from_config": {"d_model": 32, "n_layers": 1, "n_heads": 2},
    "max_tokens": 24,
}
DYN = DynamicsConfig(data=QA, model=MODEL, epochs=2, batch_size=16, qa_stride_tokens=0)


def _strategy(root, **kw):
    cfg = StrategyConfig(
        data=QA, model=MODEL, epochs=1, batch_size=16, qa_stride_tokens=0, dynamics=DYN, **kw
    )
    return assay.run_config(cfg, root=root)


def test_strategies_exclude_or_include_the_unmapped_qa_examples(tmp_path):
    excluded = _strategy(tmp_path, weighting={})
    assert excluded.status is assay.RunStatus.DONE, excluded.error  # was "cover 79 of the 80"
    (dyn_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("cartography_dynamics")]
    unmapped = json.loads((dyn_dir / "artifacts" / "excluded.json").read_text())
    assert len(unmapped) == 1
    res = excluded.results
    assert res["n_train_unmapped"] == 1 and res["n_train_kept"] == 79
    sel = json.loads(excluded.artifact("selection.json").read_text())
    assert sel["n_unmapped"] == 1 and unmapped[0] not in sel["kept_ids"]
    assert sel["steps"][-1] == {"filter": "unmapped", "n_in": 79, "n_unmapped": 1, "n_kept": 79}
    log = (excluded.dir / "log.txt").read_text()
    assert "1 of 80 training examples have no data map" in log and "left out of training" in log

    included = _strategy(tmp_path, weighting={}, unmapped="include")
    assert included.status is assay.RunStatus.DONE, included.error
    assert included.results["n_train_kept"] == 80
    with open(included.artifact("per_example.csv"), newline="") as f:
        rows = {r["guid"]: r for r in csv.DictReader(f)}
    assert float(rows[unmapped[0]]["weight"]) == 1.0 and float(rows[unmapped[0]]["epsilon"]) == 0
    assert all(float(r["weight"]) > 1.0 for g, r in rows.items() if g != unmapped[0])

    subset = _strategy(tmp_path, filter={"kind": "subset", "region": "hard", "fraction": 0.5})
    assert subset.status is assay.RunStatus.DONE, subset.error
    kept = json.loads(subset.artifact("selection.json").read_text())["kept_ids"]
    assert unmapped[0] not in kept and len(kept) == subset.results["n_train_kept"]
