"""The volume formulas on hand-computed cases (pure numpy, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.families.volume._volume import (
    cutoff_level,
    first_crossing,
    kendall_tau,
    log_volume,
    ordering_violations,
    radii_from_curves,
    radius_stats,
    rank_stability,
    spearman,
)


def test_radius_is_first_grid_point_above_tau_times_direction_norm():
    coeffs = np.array([0.0, 0.25, 0.5, 1.0])
    curves = np.array(
        [
            [0.01, 0.05, 0.2, 0.9],  # crosses 0.1 at index 2
            [0.01, 0.02, 0.03, 0.04],  # never crosses: dropped
            [0.30, 0.40, 0.5, 0.6],  # centre already above: radius 0
            [0.01, 0.2, 0.05, 0.3],  # non-monotone: the *first* crossing counts
        ]
    )
    norms = np.array([2.0, 3.0, 4.0, 5.0])
    r = radii_from_curves(curves, coeffs, norms, 0.1)
    assert r[0] == pytest.approx(0.5 * 2.0)
    assert math.isnan(r[1])
    assert r[2] == 0.0
    assert r[3] == pytest.approx(0.25 * 5.0)


def test_accuracy_criterion_crosses_when_accuracy_drops_below():
    curves = np.array([[1.0, 0.95, 0.7, 0.5]])
    assert first_crossing(curves, 0.8, "accuracy").tolist() == [2]
    assert first_crossing(np.array([[1.0, np.nan, np.nan, 0.1]]), 0.8, "accuracy").tolist() == [3]


def test_log_volume_matches_hand_computation():
    # n = 2 parameters: V = mean(r^2) over counted directions; NaN (dropped) is not counted
    r = np.array([1.0, 2.0, 0.0, np.nan])
    assert log_volume(r, 2) == pytest.approx(math.log((1 + 4 + 0) / 3))
    assert log_volume(np.array([0.0, 0.0]), 5) == -math.inf
    assert math.isnan(log_volume(np.array([np.nan]), 5))


def test_log_volume_is_stable_for_huge_exponents():
    # n ln r = 10000 * ln 3 overflows exp(); logsumexp must not
    r = np.array([3.0, 3.0])
    assert log_volume(r, 10_000) == pytest.approx(10_000 * math.log(3.0))


def test_radius_stats_report_top_radii_with_seeds():
    st = radius_stats(np.array([1.0, np.nan, 3.0, 0.0]), np.array([10, 11, 12, 13]), top_k=2)
    assert st["n_counted"] == 3 and st["n_dropped"] == 1 and st["n_zero"] == 1
    assert st["max_radius"] == 3.0 and st["median_radius"] == 1.0
    assert st["top_radii"] == [{"seed": 12, "radius": 3.0}, {"seed": 10, "radius": 1.0}]


def test_cutoff_is_first_level_where_running_mean_exceeds_tau():
    # base of 2 samples with loss 0; extra samples with loss 0.3 each
    losses = np.array([0.0, 0.0, 0.3, 0.3, 0.3])
    # running means at L = 0..3: 0, 0.1, 0.15, 0.18
    assert cutoff_level(losses, base=2, tau=0.12) == 2
    assert cutoff_level(losses, base=2, tau=0.05) == 1
    assert cutoff_level(losses, base=2, tau=0.5) is None


def test_ranking_statistics():
    assert spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert ordering_violations([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == (0, 3)
    assert ordering_violations([3.0, 2.0, 1.0], [3.0, 2.0, 1.0]) == (3, 3)
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([-math.inf, -math.inf, 1], [0, 0, 1]) == pytest.approx(2 / 3)


def test_rank_stability_is_one_when_models_are_far_apart():
    radii = np.stack([np.full(40, 1.0), np.full(40, 2.0)])  # model 1 always larger
    same, tau = rank_stability(radii, n_params=10, n_subsets=10, fraction=0.5, seed=0)
    assert same == 1.0 and tau == 1.0


def test_cross_seed_aggregate_and_plot_records():
    from assay.families.volume._analysis import aggregate
    from assay.families.volume._plots import plot_records

    def row(land, model, level, v, cut="None"):
        return {
            "landscape": str(land),
            "model": model,
            "model_level": str(level),
            "log_volume": str(v),
            "test_loss": "0.5",
            "test_accuracy": "0.9",
            "cutoff": cut,
        }

    seeds = [
        [row(0, "k0", 0, 10.0, "3"), row(0, "k30", 30, 4.0)],
        [row(0, "k0", 0, 14.0, "5"), row(0, "k30", 30, "-inf")],
    ]
    agg = aggregate(seeds)
    assert [(a["model"], a["n_seeds"]) for a in agg] == [("k0", 2), ("k30", 2)]
    assert agg[0]["log_volume_mean"] == 12.0 and agg[0]["cutoff_mean"] == 4.0
    # t(0.975, 1) * std([10, 14]) / sqrt(2) = 12.706 * 2.828 / 1.414
    assert agg[0]["log_volume_ci95"] == pytest.approx(12.7062 * 2.0, rel=1e-3)
    assert agg[1]["log_volume_mean"] == 4.0  # -inf (volume 0) seeds are left out of the mean

    rows = [
        {
            "landscape": 0,
            "model": "k0",
            "model_level": 0,
            "log_volume": 1.0,
            "cutoff": 3,
            "test_loss": 0.5,
            "test_accuracy": 0.9,
        },
        {
            "landscape": 0,
            "model": "k30",
            "model_level": 30,
            "log_volume": -math.inf,
            "cutoff": None,
            "test_loss": 0.4,
            "test_accuracy": 0.95,
        },
    ]
    rec = plot_records(rows)
    assert rec["by_landscape"][0] == ([0, 30], [1.0, -math.inf])
    assert rec["by_model"]["k0"] == ([0], [1.0], 3)
    assert rec["scatter"][0] == [1.0]  # only finite log-volumes are scattered
