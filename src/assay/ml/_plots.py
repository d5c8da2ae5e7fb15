"""Seed-grouped means with intervals that respect a metric's range, and Agg plotting.

    iv = mean_interval(correlations, bounds=(-1, 1))   # bootstrap: never leaves [-1, 1]
    plt = agg_pyplot()
    fig, ax = plt.subplots()
    plot_seed_curves(ax, frame, x="step", y="accuracy", group="model", bounds=(0, 1))
    assay.save_figure(fig, run.artifacts_dir / "accuracy.png")   # atomic

A t-interval over 3 seeds of a correlation near 1 easily runs past 1. For a bounded metric the
interval is a seeded percentile bootstrap of the mean (method "bootstrap"), which stays inside
the range because every resampled mean does; for values that are all 0 or 1 (a fraction of
successes) it is the Wilson score interval. Unbounded metrics get the t-interval. Non-finite
values are counted in ``n_nonfinite`` and shown, not silently dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import MLError

METHODS = ("auto", "t", "bootstrap", "wilson")
N_BOOTSTRAP = 10_000  # resamples: the 2.5% quantile moves < 1% of the width between seeds
BOOTSTRAP_SEED = 0  # fixed: the same values always give the same interval


class NonFiniteWarning(UserWarning):
    """Some values of a mean were NaN or infinite and were left out of it."""


@dataclass(frozen=True)
class Interval:
    """A mean and its ``level`` confidence interval over the finite values."""

    mean: float
    lo: float
    hi: float
    n: int  # finite values used
    method: str  # "t" | "bootstrap" | "wilson" | "none" (n < 2: no interval)
    n_nonfinite: int = 0  # NaN/inf values left out (say so wherever the mean is shown)
    clipped: bool = False  # an interval that crossed the bounds was cut to them (t only)
    level: float = 0.95


def _t_interval(x: np.ndarray, level: float) -> tuple[float, float]:
    from scipy import stats

    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def _bootstrap(x: np.ndarray, level: float) -> tuple[float, float]:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = x[rng.integers(0, len(x), size=(N_BOOTSTRAP, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


def _wilson(x: np.ndarray, level: float, lo: float, hi: float) -> tuple[float, float]:
    from scipy import stats

    n, p = len(x), float(((x - lo) / (hi - lo)).mean())
    z = stats.norm.ppf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return lo + (hi - lo) * max(0.0, centre - half), lo + (hi - lo) * min(1.0, centre + half)


def mean_interval(
    values: Iterable[float],
    *,
    bounds: tuple[float, float] | None = None,
    level: float = 0.95,
    method: str = "auto",
) -> Interval:
    """Mean and confidence interval of ``values``; see the module docstring for the method.

    ``method="auto"``: t when ``bounds`` is None; with bounds, Wilson when every value is one
    of the two bounds (successes/failures), else the percentile bootstrap. An explicit "t"
    with bounds is cut to the bounds and flagged ``clipped``.
    """
    if method not in METHODS:
        raise MLError(f"unknown interval method {method!r}; valid: {', '.join(METHODS)}")
    if not 0 < level < 1:
        raise MLError(f"level must be in (0, 1), got {level}")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise MLError(f"bounds must be (low, high) with low < high, got {bounds}")
    x = np.asarray(list(values), dtype=float)
    finite = np.isfinite(x)
    n_bad, x = int((~finite).sum()), x[finite]
    if bounds is not None and len(x):
        # float rounding (a correlation of 1 + 1e-16) is cut to the bounds; more is an error
        eps = 1e-9 * (bounds[1] - bounds[0])
        x = np.where((x < bounds[0]) & (x >= bounds[0] - eps), bounds[0], x)
        x = np.where((x > bounds[1]) & (x <= bounds[1] + eps), bounds[1], x)
    if bounds is not None and len(x) and (x.min() < bounds[0] or x.max() > bounds[1]):
        raise MLError(
            f"values {x.min():g}..{x.max():g} leave the metric's bounds {bounds}; fix the bounds "
            "or the metric"
        )
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "none", n_bad, False, level)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, 1, "none", n_bad, False, level)
    if method == "auto":
        binary = bounds is not None and bool(np.isin(x, bounds).all())
        method = "t" if bounds is None else "wilson" if binary else "bootstrap"
    if method == "wilson" and bounds is None:
        raise MLError("method='wilson' needs bounds (e.g. (0, 1) for a fraction)")
    clipped = False
    if method == "t":
        lo, hi = (mean, mean) if x.std() == 0 else _t_interval(x, level)
        if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
            lo, hi, clipped = max(lo, bounds[0]), min(hi, bounds[1]), True
    elif method == "bootstrap":
        lo, hi = _bootstrap(x, level)
    else:
        lo, hi = _wilson(x, level, *bounds)  # type: ignore[misc]
    return Interval(mean, lo, hi, len(x), method, n_bad, clipped, level)


def agg_pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first call)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def seed_curves(
    data: Any, x: str, y: str, group: str | None = None, bounds: tuple[float, float] | None = None
) -> dict[Any, list[tuple[float, Interval]]]:
    """The numbers :func:`plot_seed_curves` draws: group -> [(x, interval of y over seeds)].

    ``data`` is a pandas DataFrame or a list of row dicts, one row per (seed, x[, group]).
    """
    rows = data.to_dict("records") if hasattr(data, "to_dict") else list(data)
    missing = [c for c in (x, y, group) if c is not None and rows and c not in rows[0]]
    if missing:
        raise MLError(f"columns {missing} not in the data; it has {sorted(rows[0])}")
    cells: dict[Any, dict[float, list[float]]] = {}
    for r in rows:
        cells.setdefault(r[group] if group else y, {}).setdefault(r[x], []).append(r[y])
    return {
        g: [(xv, mean_interval(vals, bounds=bounds)) for xv, vals in sorted(by_x.items())]
        for g, by_x in cells.items()
    }


def plot_seed_curves(
    ax: Any,
    data: Any,
    x: str,
    y: str,
    group: str | None = None,
    bounds: tuple[float, float] | None = None,
) -> dict[Any, list[tuple[float, Interval]]]:
    """Draw the mean of ``y`` over seeds against ``x``, one line and interval band per group.

    Points whose values were partly non-finite are ringed and counted in the legend and a
    NonFiniteWarning; they are never dropped silently. Returns what was drawn.
    """
    curves = seed_curves(data, x, y, group, bounds)
    for g, points in curves.items():
        xs = np.array([p[0] for p in points], dtype=float)
        iv = [p[1] for p in points]
        mean = np.array([i.mean for i in iv])
        lo, hi = np.array([i.lo for i in iv]), np.array([i.hi for i in iv])
        bad = sum(i.n_nonfinite for i in iv)
        label = f"{g}" + (f" ({bad} non-finite left out)" if bad else "")
        (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        flagged = [k for k, i in enumerate(iv) if i.n_nonfinite]
        if flagged:
            ax.scatter(xs[flagged], mean[flagged], s=60, facecolors="none", edgecolors="red")
            warnings.warn(
                f"{y} of group {g!r}: {bad} non-finite value(s) left out of the means at "
                f"{x}={[float(xs[k]) for k in flagged]}",
                NonFiniteWarning,
                stacklevel=2,
            )
    if bounds is not None:
        ax.set_ylim(
            bounds[0] - 0.02 * (bounds[1] - bounds[0]), bounds[1] + 0.02 * (bounds[1] - bounds[0])
        )
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if group is not None:
        ax.legend(title=group, fontsize="small")
    return curves
