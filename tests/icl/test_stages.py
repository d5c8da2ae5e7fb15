"""Every icl stage passes the engine's conformance check; sweeps resume per unit of work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import assay
from assay.testing import check_stage, smoke_config

STAGES = (
    "icl.geometry",
    "icl.loo",
    "icl.switch",
    "icl.superposition",
    "icl.shuffle",
    "icl.inject",
    "icl.stagewise",
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("icl_runs")  # one smoke training run serves every stage


def test_train_smoke_logs_neighbour_probability(root):
    rec = check_stage("icl.train", root)
    res = rec.results
    assert 0 < res["p_nbr/grid/n8"] < 1 and 0 < res["p_nbr/hsbm/n16"] < 1
    assert "p_nbr/grid/n32" not in res  # smoke seq_len 32: nothing is predicted after 32 words
    assert (rec.dir / "artifacts" / "model" / "config.json").is_file()
    hist = json.loads((rec.dir / "artifacts" / "history.json").read_text())
    assert [h["step"] for h in hist] == [20]


@pytest.mark.parametrize("name", STAGES)
def test_stage_conformance(root, name):
    rec = check_stage(name, root)
    assert rec.results
    pngs = list((rec.dir / "artifacts").glob("*.png"))
    assert pngs, f"{name} drew no plot"


def test_geometry_artifacts_follow_the_documented_schema(root):
    rec = assay.run_config(smoke_config("icl.geometry"), root=root)
    doc = json.loads((rec.dir / "artifacts" / "curves.json").read_text())
    assert doc["schema"] == "icl.geometry/1" and doc["layers"] == [0, 1, 2]
    e = doc["metrics"]["dirichlet_energy"]
    assert np.array(e["mean"], float).shape == (3, 3)  # (layer, length)
    assert doc["model"]["trained_here"] and doc["graph"]["bipartite"] is True
    css = np.load(rec.dir / "artifacts" / "css.npz")
    assert css["between_cluster_variance"].shape == (3, 3, 32)  # (length, layer, position)
    assert "WARNING: the graph is bipartite" in (rec.dir / "log.txt").read_text()


def test_loo_resumes_after_the_last_finished_context(root, tmp_path):
    cfg = smoke_config("icl.loo")
    up = assay.run_config(cfg.train, root=root)
    upstream = {"train": up}  # a RunRecord has .artifact(), all the stage uses
    from assay.families.icl._stage_loo import loo_stage

    run = assay.detached_run(cfg, dir=tmp_path / "a", upstream=upstream)
    loo_stage(cfg, run)
    state = torch.load(tmp_path / "a" / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["done"] == 2
    # a run killed after its first context: keep context 0 (marked), recompute context 1 only
    state["done"] = 1
    state["items"] = {k: [v[0].fill_(7.0)] for k, v in state["items"].items()}
    resumed = assay.detached_run(cfg, dir=tmp_path / "b", upstream=upstream)
    resumed.save_checkpoint(state)
    loo_stage(cfg, resumed)
    raw = np.load(tmp_path / "b" / "artifacts" / "loo.npz")
    assert (raw["ratio"][0] == 7.0).all() and not (raw["ratio"][1] == 7.0).all()


def test_analyze_hook_reads_the_stages_real_artifacts(root, tmp_path, capsys):
    from assay.families.icl._analysis import analyze

    for name in ("icl.geometry", "icl.loo"):
        assay.run_config(smoke_config(name), root=root)  # done already: found, not rerun
    with assay.resolve_store(None, root) as store:
        runs = store.query()
    analyze(runs, tmp_path / "out")
    printed = capsys.readouterr().out
    assert "icl energy vs context length [all runs] dirichlet_energy_standardised" in printed
    assert "icl LOO influence [all runs] ratio" in printed and "bridge:" in printed
    assert "icl neighbour probability" in printed  # the upstream icl.train run
    for name in ("energy_vs_length", "css", "loo_bridge_anchor", "p_nbr"):
        assert (tmp_path / "out" / f"{name}.csv").is_file(), name
