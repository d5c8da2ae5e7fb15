"""Means with intervals that respect a metric's range: the numbers behind every CI assay shows.

    iv = mean_interval(correlations, bounds=(-1, 1))   # bootstrap: never leaves [-1, 1]

A t-interval over 3 seeds of a correlation near 1 easily runs past 1. For a bounded metric the
interval is a seeded percentile bootstrap of the mean (method "bootstrap"), which stays inside
the range because every resampled mean does; for values that are all 0 or 1 (a fraction of
successes) it is the Wilson score interval. Unbounded metrics get the t-interval. Non-finite
values are counted in ``n_nonfinite`` and shown, not silently dropped. Core code (analysis,
reports) and the ML layer (``assay.ml.mean_interval``) share this one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ._engine._errors import AssayError

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
        raise AssayError(f"unknown interval method {method!r}; valid: {', '.join(METHODS)}")
    if not 0 < level < 1:
        raise AssayError(f"level must be in (0, 1), got {level}")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise AssayError(f"bounds must be (low, high) with low < high, got {bounds}")
    x = np.asarray(list(values), dtype=float)
    finite = np.isfinite(x)
    n_bad, x = int((~finite).sum()), x[finite]
    if bounds is not None and len(x):
        # float rounding (a correlation of 1 + 1e-16) is cut to the bounds; more is an error
        eps = 1e-9 * (bounds[1] - bounds[0])
        x = np.where((x < bounds[0]) & (x >= bounds[0] - eps), bounds[0], x)
        x = np.where((x > bounds[1]) & (x <= bounds[1] + eps), bounds[1], x)
    if bounds is not None and len(x) and (x.min() < bounds[0] or x.max() > bounds[1]):
        raise AssayError(
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
        raise AssayError("method='wilson' needs bounds (e.g. (0, 1) for a fraction)")
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
