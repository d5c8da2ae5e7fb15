"""Data-map metrics on hand-computed dynamics, the reference's loop, regions and ties."""

from __future__ import annotations

import numpy as np
import pytest

from assay import ConfigError
from assay.families.cartography._metrics import (
    compute_metrics,
    median_regions,
    metrics_table,
    reference_metrics_loop,
    region_counts,
    top_fraction_subset,
)

# 4 epochs x 3 examples
P = np.array([[0.2, 0.9, 0.1], [0.6, 0.8, 0.2], [0.4, 0.9, 0.3], [0.8, 1.0, 0.2]])
C = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)


def test_hand_computed_values():
    m = compute_metrics(P, C)
    assert m["confidence"] == pytest.approx([0.5, 0.9, 0.2])
    # population std of [.2,.6,.4,.8]: sqrt(mean([.09,.01,.01,.09])) = sqrt(0.05)
    assert m["variability"][0] == pytest.approx(np.sqrt(0.05))
    assert m["variability"][1] == pytest.approx(np.sqrt(0.005))
    assert m["correctness"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["correctness_count"].tolist() == [2, 4, 0]
    # example 0: learned at 1, forgotten at 2, learned at 3 -> 1 forgetting event
    assert m["forgetfulness"][0] == 1 and m["forgetfulness"][1] == 0
    assert np.isnan(m["forgetfulness"][2]) and m["never_learned"].tolist() == [False, False, True]
    assert m["threshold_closeness"] == pytest.approx([0.25, 0.09, 0.16])


def test_burn_out_and_include_ci():
    m = compute_metrics(P, C, burn_out=2)
    assert m["confidence"] == pytest.approx([0.4, 0.85, 0.15])
    ci = compute_metrics(P, C, include_ci=True)
    var = np.var(P[:, 0])
    assert ci["variability"][0] == pytest.approx(np.sqrt(var + var * var / 3))
    with pytest.raises(ConfigError, match="burn_out"):
        compute_metrics(P, C, burn_out=0)


@pytest.mark.parametrize("kw", [{}, {"burn_out": 3}, {"include_ci": True}])
def test_equal_to_reference_loop(kw):
    rng = np.random.default_rng(0)
    p = rng.random((6, 400))
    c = rng.random((6, 400)) < p
    ours = compute_metrics(p, c, **kw)
    ref = reference_metrics_loop(p, c, **kw)
    for k in ("confidence", "variability", "threshold_closeness"):
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-12)
    np.testing.assert_array_equal(ours["correctness_count"], ref["correctness"])
    table = metrics_table([str(i) for i in range(400)], ours, reference=True)
    np.testing.assert_array_equal(table["forgetfulness"], ref["forgetfulness"])
    np.testing.assert_array_equal(table["correctness"], ref["correctness"])


def test_median_regions_and_counts():
    m = {
        "confidence": np.array([0.9, 0.8, 0.1, 0.2, 0.5, 0.5]),
        "variability": np.array([0.01, 0.02, 0.03, 0.04, 0.3, 0.4]),
        "never_learned": np.zeros(6, dtype=bool),
    }
    # variability median 0.035 -> the last three are ambiguous; confidence median 0.5
    assert median_regions(m).tolist() == [
        "easy",
        "easy",
        "hard",
        "ambiguous",
        "ambiguous",
        "ambiguous",
    ]
    assert region_counts(m)["median"] == {"easy": 2, "hard": 1, "ambiguous": 3}


def test_top_fraction_ties_keep_dataset_order_and_reference_count():
    m = {
        "confidence": np.array([0.5, 0.5, 0.5, 0.5, 0.1, 0.9]),
        "variability": np.array([0.2, 0.2, 0.2, 0.2, 0.0, 0.0]),
        "never_learned": np.zeros(6, dtype=bool),
    }
    # 0.5 * 6 = 3 most ambiguous among four tied at 0.2: the first three in dataset order
    assert top_fraction_subset(m, "ambiguous", 0.5).tolist() == [0, 1, 2]
    assert top_fraction_subset(m, "ambiguous", 0.5, reference_count=True).tolist() == [0, 1, 2, 3]
    assert top_fraction_subset(m, "hard", 0.2).tolist() == [4]
    assert top_fraction_subset(m, "easy", 0.2).tolist() == [5]
    with pytest.raises(ConfigError, match=r"`fraction` must be in \(0, 1\], got 1.5"):
        top_fraction_subset(m, "easy", 1.5)
