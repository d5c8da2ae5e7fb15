"""Intervals that respect a metric's bounds, non-finite values counted, seed curves drawn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import assay
import assay.ml as ml


def test_unbounded_values_get_the_t_interval():
    x = [1.0, 2.0, 4.0, 7.0]
    iv = ml.mean_interval(x)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(x), scale=stats.sem(x))
    assert (iv.method, iv.n, iv.n_nonfinite, iv.clipped) == ("t", 4, 0, False)
    assert iv.mean == pytest.approx(3.5) and (iv.lo, iv.hi) == pytest.approx((lo, hi))


def test_a_bounded_metric_near_its_bound_stays_inside_the_range():
    corr = [0.97, 0.99, 0.999]  # 3 seeds of a correlation close to 1
    t = ml.mean_interval(corr, method="t", bounds=(-1, 1))
    raw_hi = stats.t.interval(0.95, 2, loc=np.mean(corr), scale=stats.sem(corr))[1]
    assert raw_hi > 1 and t.hi == 1 and t.clipped  # the t-interval runs past 1: cut, flagged
    logit = ml.mean_interval(corr, bounds=(-1, 1))
    assert logit.method == "logit-t" and not logit.clipped
    assert logit.lo < logit.mean < logit.hi <= 1
    # all successes: no variation, a zero-width interval at 1 (no jump to a Wilson interval)
    w = ml.mean_interval([1, 1, 1], bounds=(0, 1))
    assert w.no_variation and (w.lo, w.mean, w.hi) == (1, 1, 1)
    frac = ml.mean_interval([0, 1, 1, 0, 1], bounds=(0, 1))
    assert frac.method == "logit-t" and 0 <= frac.lo < 0.6 < frac.hi <= 1
    assert ml.mean_interval([1 + 1e-12, 0.5], bounds=(0, 1)).n == 2  # rounding is cut


def test_non_finite_values_are_counted_not_hidden_and_bad_input_fails():
    iv = ml.mean_interval([0.1, float("nan"), 0.3, float("inf")], bounds=(0, 1))
    assert (iv.n, iv.n_nonfinite) == (2, 2) and iv.mean == pytest.approx(0.2)
    one = ml.mean_interval([0.5])
    assert one.method == "none" and math.isnan(one.lo) and one.mean == 0.5
    none = ml.mean_interval([float("nan")])
    assert (none.n, none.n_nonfinite) == (0, 1) and math.isnan(none.mean)
    with pytest.raises(assay.AssayError, match=r"outside its bounds \[0, 1\]"):
        ml.mean_interval([0.5, 1.5], bounds=(0, 1))
    with pytest.raises(assay.AssayError, match="valid: auto, t, logit-t"):
        ml.mean_interval([1, 2], method="z")
    with pytest.raises(assay.AssayError, match="needs finite bounds on both sides"):
        ml.mean_interval([1, 2], method="logit-t")


def test_seed_curves_draw_mean_and_band_per_group(tmp_path):
    plt = ml.agg_pyplot()
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"
    rows = [
        {"seed": s, "step": step, "acc": min(1.0, 0.2 * step + 0.05 * s), "model": m}
        for s in range(3)
        for step in (1, 2, 3)
        for m in ("a", "b")
    ]
    rows.append({"seed": 3, "step": 3, "acc": float("nan"), "model": "b"})
    fig, ax = plt.subplots()
    with pytest.warns(ml.NonFiniteWarning, match="1 non-finite"):
        curves = ml.plot_seed_curves(ax, rows, x="step", y="acc", group="model", bounds=(0, 1))
    assert set(curves) == {"a", "b"} and [p[0] for p in curves["a"]] == [1, 2, 3]
    step1 = curves["a"][0][1]
    assert step1.mean == pytest.approx(0.25) and step1.n == 3
    assert curves["b"][2][1].n_nonfinite == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "a",
        "b (1 non-finite left out)",
    ]
    assert len(ax.collections) >= 2  # a band per group
    path = assay.save_figure(fig, tmp_path / "acc.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ml.MLError, match="columns"):
        ml.seed_curves(rows, x="epoch", y="acc")
