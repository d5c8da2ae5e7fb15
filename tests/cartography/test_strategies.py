"""Strategies are applied: kept counts and manifests, exact loss differences, smoothed targets,
and bad input fails with the value, the valid choices and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import assay
from assay.families.cartography._strategies import (
    CartographyFilter,
    ClusterFilter,
    Smoothing,
    SubsetFilter,
    Weighting,
    plan_strategies,
    strategy_loss,
)
from assay.families.cartography.stages import DynamicsConfig, StrategyConfig


def _metrics():
    # 8 examples: var median 0.125 -> 4..7 ambiguous; of 0..3 confidence median 0.5
    conf = np.array([0.9, 0.8, 0.2, 0.1, 0.5, 0.6, 0.3, 0.4])
    var = np.array([0.0, 0.1, 0.1, 0.05, 0.3, 0.2, 0.4, 0.15])
    return {
        "confidence": conf,
        "variability": var,
        "never_learned": np.zeros(8, dtype=bool),
        "correctness": conf,
        "forgetfulness": np.zeros(8),
        "threshold_closeness": conf,
    }


def test_cartography_filter_keeps_easy_hard_and_most_unstable_ambiguous():
    plan = plan_strategies(
        CartographyFilter(top_fraction=0.5), None, None, None, 8, _metrics(), None, seed=0
    )
    # ambiguous 4..7, instability (1-c)+v: 0.8, 0.6, 1.1, 0.75 -> top 2: examples 6 and 4
    assert plan.keep.tolist() == [0, 1, 2, 3, 4, 6]
    assert plan.steps == [
        {
            "filter": "cartography",
            "n_in": 8,
            "n_kept": 6,
            "regions": {"easy": 2, "hard": 2, "ambiguous": 4},
            "ambiguous_kept": 2,
        }
    ]
    other = plan_strategies(
        CartographyFilter(top_fraction=0.25), None, None, None, 8, _metrics(), None, seed=0
    )
    assert len(other.keep) == 5  # a different top_fraction trains on different data


def test_subset_and_random_and_cluster_filter_compose():
    m = _metrics()
    plan = plan_strategies(
        SubsetFilter(region="ambiguous", fraction=0.5), None, None, None, 8, m, None, seed=0
    )
    assert plan.keep.tolist() == [4, 5, 6, 7]
    rand = plan_strategies(
        SubsetFilter(region="random", fraction=0.5), None, None, None, 8, None, None, seed=3
    )
    assert len(rand.keep) == 4 and len(set(rand.keep)) == 4
    clusters = {
        "labels": np.array([0, 0, -1, 1, -1, 1, 0, 0]),
        "probabilities": np.array([1, 0.2, 1, 1, 1, 1, 1, 1.0]),
    }
    both = plan_strategies(
        SubsetFilter(region="ambiguous", fraction=0.5),
        ClusterFilter(min_cluster_probability=0.5),
        None,
        None,
        8,
        m,
        clusters,
        seed=0,
    )
    assert both.keep.tolist() == [5, 6, 7]  # 4 is noise
    assert [s["n_kept"] for s in both.steps] == [4, 3]


def test_epsilon_and_weights_follow_the_formulas_and_report_the_clip():
    m = _metrics()
    plan = plan_strategies(
        None,
        None,
        Smoothing(smoothing_factor=1.0, eps_max=0.3),
        Weighting(beta=1.0),
        8,
        m,
        None,
        seed=0,
    )
    np.testing.assert_allclose(plan.epsilon, np.minimum(0.3, m["variability"]))
    np.testing.assert_allclose(plan.weight, 1 + m["variability"])
    assert plan.summary["clip_binds_fraction"] == 0 and "never binds" in plan.summary["clip_note"]
    assert plan.summary["smoothing_capped_fraction"] == pytest.approx(2 / 8)
    tight = plan_strategies(None, None, None, Weighting(weight_clip_max=1.2), 8, m, None, seed=0)
    assert tight.weight.max() == pytest.approx(1.2) and tight.summary["clip_binds_fraction"] > 0


def test_weighted_loss_differs_by_exactly_the_expected_amount():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    w = torch.tensor([1.0, 1.5, 1.2, 1.0, 1.1, 1.4])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    plain, weighted = strategy_loss(logits, labels), strategy_loss(logits, labels, weight=w)
    assert plain.item() == pytest.approx(ce.mean().item(), rel=1e-6)
    assert (weighted - plain).item() == pytest.approx(((w - 1) * ce).mean().item(), rel=1e-5)


def test_smoothed_targets_on_a_fixed_batch():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    eps = torch.tensor([0.3, 0.0])
    target = torch.tensor([[0.8, 0.1, 0.1], [0.0, 0.0, 1.0]])  # (1-eps) onehot + eps/K
    expect = -(target * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert strategy_loss(logits, labels, epsilon=eps).item() == pytest.approx(expect.item())
    torch_ls = torch.nn.functional.cross_entropy(logits[:1], labels[:1], label_smoothing=0.3)
    assert strategy_loss(logits[:1], labels[:1], epsilon=eps[:1]).item() == pytest.approx(
        torch_ls.item(), rel=1e-6
    )


def _stage_error(data: dict) -> str:
    with pytest.raises(assay.ConfigError) as err:
        assay.testing.build_config(StrategyConfig, data, stage="cartography.train")
    return str(err.value)


def test_bad_strategy_input_fails_clearly():
    import assay.testing  # noqa: F401

    msg = _stage_error({"filtr": {"kind": "cartography"}})
    assert "unknown key 'filtr'" in msg and "filter" in msg and "smoothing" in msg
    msg = _stage_error({"filter": {"kind": "cartography", "top_fraction": 1.5}, "dynamics": {}})
    assert "`top_fraction` must be in (0, 1], got 1.5" in msg
    msg = _stage_error({"filter": {"kind": "cartography", "top_fraction": 0}, "dynamics": {}})
    assert "got 0" in msg
    msg = _stage_error({"smoothing": {"smoothing_factor": 0.6}})
    assert "smoothing need(s) training dynamics" in msg and "dynamics:" in msg
    msg = _stage_error({"cluster_filter": {}})
    assert "cluster_filter needs `cluster:`" in msg
    msg = _stage_error({"filter": {"kind": "bogus"}, "dynamics": {}})
    assert "cartography" in msg and "subset" in msg and "rules" in msg
    StrategyConfig(filter={"kind": "subset", "region": "random"})  # random needs no map
    StrategyConfig(dynamics=DynamicsConfig(), filter=CartographyFilter())


def test_filter_reading_the_data_map_without_metrics_names_the_fix():
    # plan_strategies called directly (not through StrategyConfig, which already checks this)
    with pytest.raises(assay.ConfigError, match=r"'cartography' reads the data map.*dynamics:"):
        plan_strategies(CartographyFilter(), None, None, None, 8, None, None, seed=0)
    with pytest.raises(assay.ConfigError, match="cluster_filter reads the cluster labels"):
        plan_strategies(None, ClusterFilter(), None, None, 8, _metrics(), None, seed=0)
