"""A context with a NaN Φ is left out of Φ and CSS, counted and logged, never voiding a cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import assay
from assay.families.icl import _metrics as M
from assay.families.icl._contexts import draw_contexts
from assay.families.icl._graphs import GraphConfig
from assay.testing import smoke_config


def test_context_sensitivity_skips_contexts_whose_phi_is_nan():
    loss = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0], [9.0, 9.0]])  # (C=4, T=2)
    phi = torch.tensor([[0.0, 1.0], [1.0, float("nan")], [2.0, 3.0], [float("nan"), 5.0]])
    css = M.context_sensitivity(loss, phi)  # (K=2, T)
    for k in range(2):
        ok = torch.isfinite(phi[:, k])
        want = M.context_sensitivity(loss[ok], phi[ok, k])  # the finite contexts alone
        assert torch.allclose(css[k], want, atol=1e-12) and torch.isfinite(css[k]).all()
    assert M.finite_contexts(phi).tolist() == [3, 3]
    one = torch.tensor([1.0, float("nan"), float("nan"), float("nan")])
    assert torch.isnan(M.context_sensitivity(loss, one)).all()  # one context: no covariance


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("icl_nonfinite")


# seed 0: contexts 0, 1 and 4 of these 6 hSBM walks of 16 words stay in one cluster, so their
# cluster separation is NaN (checked below, so a change in the walk sampler shows up here)
HSBM = {"graph": {"kind": "hsbm"}, "n_contexts": 6, "seed": 0}
ONE_CLUSTER = 3


def test_the_walks_really_visit_one_cluster():
    graph, walks, _ = draw_contexts(GraphConfig(kind="hsbm"), 6, 16, 0)
    assert sum(len(set(graph.labels[w])) == 1 for w in walks) == ONE_CLUSTER


def test_stagewise_phi_and_css_use_the_finite_contexts_and_count_the_rest(root):
    cfg = smoke_config("icl.stagewise", **HSBM, n_words=16)
    rec = assay.run_config(cfg, root=root)
    doc = json.loads((rec.dir / "artifacts" / "stagewise.json").read_text())
    phi = np.array(doc["phi_mean"], float)  # (S, L)
    assert np.isfinite(phi).all(), doc["phi_mean"]  # no all-null Φ
    assert np.array(doc["contexts_dropped"]).tolist() == [[ONE_CLUSTER] * len(doc["layers"])] * 2
    assert np.isfinite(np.array(doc["mean_abs_css"], float)).all()
    css = np.load(rec.dir / "artifacts" / "stagewise.npz")["css"]  # (S, L, W)
    assert np.isfinite(css[:, :, 1:]).all()  # word 0 has no loss without a BOS
    assert rec.results["contexts_dropped/max"] == ONE_CLUSTER
    assert rec.results["phi/last"] is not None
    assert rec.results["_flags"]["phi/last"] == "3 of 6 contexts dropped (non-finite Φ)"
    log = (rec.dir / "log.txt").read_text()
    assert f"{ONE_CLUSTER} of 6 contexts have a non-finite cluster_separation_bounded" in log


def test_geometry_css_of_a_nan_metric_is_computed_over_the_finite_contexts(root):
    cfg = smoke_config(
        "icl.geometry", **HSBM, context_lengths=(4, 16), css_metrics=("cluster_separation",)
    )
    rec = assay.run_config(cfg, root=root)
    doc = json.loads((rec.dir / "artifacts" / "curves.json").read_text())
    dropped = np.array(doc["css_contexts_dropped"]["cluster_separation"])  # (L, lengths)
    n_nonfinite = np.array(doc["metrics"]["cluster_separation"]["n_nonfinite"])
    assert (dropped == n_nonfinite).all() and (dropped[:, 1] == ONE_CLUSTER).all()
    css = np.load(rec.dir / "artifacts" / "css.npz")["cluster_separation"]  # (len, L, pos)
    assert np.isfinite(css[1, :, 1:16]).all()  # length 16: 3 finite contexts -> finite CSS
    assert rec.results["css_contexts_dropped"] == int(dropped.sum())
    assert "WARNING: CSS of cluster_separation" in (rec.dir / "log.txt").read_text()
    sep = doc["metrics"]["cluster_separation_bounded"]["n_nonfinite"][-1]  # last layer
    flag = rec.results["_flags"]["cluster_separation_bounded/last"]
    assert flag == f"{sep[-1]} of 6 contexts non-finite"


def test_css_loss_pairings():
    loss = np.array([[np.nan, 1.0, 2.0, 3.0]])  # word 0 has no loss without a BOS
    assert M.css_loss(loss, 3).tolist()[0][1:] == [1.0, 2.0]
    nxt = M.css_loss(loss, 3, "next_word")  # the published pairing: predicting word t + 1
    assert nxt[0, :2].tolist() == [1.0, 2.0] and np.isnan(nxt[0, 2])
    with pytest.raises(ValueError, match="valid: of_word, next_word"):
        M.css_loss(loss, 3, "previous")


def test_published_css_pairing_is_this_css_shifted_by_one(root):
    kw = {**HSBM, "context_lengths": (8, 16), "css_metrics": ("between_cluster_variance",)}
    ours = assay.run_config(smoke_config("icl.geometry", **kw), root=root)
    pub = assay.run_config(smoke_config("icl.geometry", **kw, css_pairing="next_word"), root=root)
    a = np.load(ours.dir / "artifacts" / "css.npz")["between_cluster_variance"]  # (len, L, T)
    b = np.load(pub.dir / "artifacts" / "css.npz")["between_cluster_variance"]
    for i, length in enumerate((8, 16)):
        np.testing.assert_allclose(b[i, :, : length - 1], a[i, :, 1:length], atol=1e-12)
        assert np.isnan(b[i, :, length - 1]).all()
