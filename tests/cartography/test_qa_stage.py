"""Extractive QA end to end: windows, dynamics per example, SQuAD EM/F1 as eval_* results."""

from __future__ import annotations

import json

import pytest
from cartography_marks import needs_minilm

import assay
from assay.families.cartography._dynamics import Dynamics
from assay.families.cartography.stages import DynamicsConfig, StrategyConfig

QA = {
    "dataset": "qa_synthetic",
    "qa": {"n_train": 160, "n_validation": 40, "n_test": 40, "n_ood": 40, "people_max": 4},
}
MODEL = {
    "kind": "hf",
    "from_config": {"d_model": 32, "n_layers": 1, "n_heads": 2},
    "max_tokens": 48,
}


def test_qa_dynamics_and_strategy(root):
    dyn_cfg = DynamicsConfig(data=QA, model=MODEL, epochs=2, batch_size=16)
    rec = assay.run_config(
        StrategyConfig(
            data=QA, model=MODEL, epochs=1, batch_size=16, dynamics=dyn_cfg, weighting={}
        ),
        root=root,
    )
    assert rec.status is assay.RunStatus.DONE, rec.error
    res = rec.results
    for key in ("eval_exact_match", "eval_f1", "ood_ood_templates_exact_match"):
        assert 0 <= res[key] <= 100
    assert res["eval_f1"] >= res["eval_exact_match"]
    assert res["n_train"] == 160 and res["n_train_windows"] > 160  # several windows an example
    (dyn_run,) = [
        r for r in assay.load_runs(root).itertuples() if r.stage == "cartography.dynamics"
    ]
    dyn = Dynamics.load(root / dyn_run.id / "artifacts" / "dynamics.npz")
    assert dyn.task == "qa" and len(dyn.ids) == 160 and dyn.gold_prob.shape == (2, 160)
    assert ((dyn.gold_prob > 0) & (dyn.gold_prob < 1)).all()
    assert "weight" in json.loads(rec.artifact("strategy.json").read_text())


def test_qa_needs_an_hf_model():
    with pytest.raises(ValueError, match="model.kind: hf"):
        DynamicsConfig(data=QA)


@pytest.mark.slow
@needs_minilm
def test_minilm_fine_tunes_and_clusters(root):
    from assay.families.cartography.stages import ClusterConfig

    rt = {"dataset": "rotten_tomatoes", "max_train_examples": 64}
    dyn = DynamicsConfig(data=rt, model={"kind": "hf", "max_tokens": 32}, epochs=2)
    cluster = ClusterConfig(data=rt, embedding="sentence_encoder", min_cluster_size=5)
    rec = assay.run_config(
        StrategyConfig(
            data=rt,
            model={"kind": "hf", "max_tokens": 32},
            epochs=1,
            dynamics=dyn,
            cluster=cluster,
            cluster_filter={"exclude_clusters": []},
            filter={"kind": "cartography"},
        ),
        root=root,
    )
    assert rec.status is assay.RunStatus.DONE, rec.error
    assert rec.results["n_train_kept"] < 64
