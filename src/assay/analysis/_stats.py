"""Means with intervals that respect a metric's range: the one interval behind every CI assay shows.

    iv = mean_interval(accuracies, bounds=(0, 1))   # logit-t: never leaves [0, 1]

Unbounded metrics get Student's t-interval of the mean. A metric bounded on both sides
(``bounds=(a, b)``) gets the t-interval on the logit scale: each value is mapped to
p = (x - a) / (b - a), squeezed into [1/(2n), 1 - 1/(2n)] by the affine map
p* = (p (n - 1) + 1/2) / n (Smithson & Verkuilen 2006, so the bounds themselves have a finite
logit), the t-interval of the mean of logit(p*) is mapped back through the inverse of both maps
and cut to [a, b]. Every step is continuous in the data, so five seeds at 1.0 give the
zero-width interval [1, 1] and [1, 1, 1, 1, 0.99] gives [0.993, 1.0]. A metric bounded on one
side (an absolute error in [0, inf)) gets the t-interval cut at its bound (``clipped``).

Values that do not vary (every finite value equal, up to 1e-12 of their magnitude, so float
rounding in a mean of identical values does not count as variation) give the zero-width
interval at the mean and ``no_variation=True``: their spread is 0, not estimated. Non-finite
values are counted in ``n_nonfinite`` (by kind: ``n_nan``, ``n_posinf``, ``n_neginf``) and left
out of the mean. Core code (analysis, report curves) and the ML layer
(``assay.ml.mean_interval``) share this one implementation, :func:`group_intervals`.

The range of a metric is declared once: :func:`known_bounds` reads it from the metric's name
(:data:`NAME_BOUNDS`); a stage can declare it in its results (``"_bounds"``) and a user on the
command line (``assay analyze --bounds acc=0:1``), see :mod:`assay.analysis._summary`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core._errors import AssayError

METHODS = ("auto", "t", "logit-t")
NO_VARIATION_RTOL = 1e-12  # a spread below this share of the values' magnitude is rounding
BOUND_ROUNDING = 1e-9  # a value this share of the range past a bound is float rounding: cut
INF = math.inf

# The ranges metric names declare, in order; the first rule whose tokens match wins and the
# first of its ranges that holds every value is used (a rule whose ranges all fail declares
# nothing). Tokens are the parts of the last dotted key split at "_" and "-", lower-cased;
# ``suffix`` rules match the end of that key. QA's exact_match and F1 come as a fraction or
# as a percent (Hugging Face's squad metric), so they try [0, 1] then [0, 100].
NAME_BOUNDS: tuple[tuple[str, frozenset[str], tuple[tuple[float, float], ...]], ...] = (
    ("suffix", frozenset({"exact_match", "f1"}), ((0.0, 1.0), (0.0, 100.0))),
    (
        "token",
        frozenset(
            {
                "accuracy",
                "acc",
                "fraction",
                "frac",
                "prob",
                "probability",
                "precision",
                "recall",
                "auc",
                "auroc",
                "rate",
            }
        ),
        ((0.0, 1.0),),
    ),
    (
        "token",
        frozenset(
            {"corr", "correlation", "cosine", "cos", "pearson", "spearman", "kendall", "tau"}
        ),
        ((-1.0, 1.0),),
    ),
    (
        "suffix",
        frozenset({"abs_err", "abs_error", "mae", "mse", "rmse", "sem", "std", "norm"}),
        ((0.0, INF),),
    ),
)
NOT_A_RATE = frozenset({"learning_rate", "sample_rate", "sampling_rate", "frame_rate", "bit_rate"})


class NonFiniteWarning(UserWarning):
    """Some values of a mean were NaN or infinite and were left out of it."""


@dataclass(frozen=True)
class Interval:
    """A mean and its ``level`` confidence interval over the finite values."""

    mean: float
    lo: float
    hi: float
    n: int  # finite values used
    method: str  # "t" | "logit-t" | "none" (n < 2: no interval)
    n_nonfinite: int = 0  # NaN/inf values left out (say so wherever the mean is shown)
    clipped: bool = False  # a t-interval that crossed a bound was cut to it
    level: float = 0.95
    no_variation: bool = False  # every finite value equal: zero-width interval, nothing estimated


def known_bounds(metric: str, values: Any = None) -> tuple[float, float] | None:
    """The range a metric's name declares (:data:`NAME_BOUNDS`), or None.

    With ``values``, the first candidate range of the matching rule that holds every finite
    value (None when none does): ``eval_f1`` at 87.5 is a percent, at 0.875 a fraction.
    """
    last = metric.removeprefix("results.").rsplit(".", 1)[-1].lower().replace("-", "_")
    tokens = set(last.split("_"))
    if last.endswith(tuple(NOT_A_RATE)):
        tokens.discard("rate")  # a learning rate is no fraction
    finite = None
    if values is not None:
        x = np.asarray(values, dtype=float)
        finite = x[np.isfinite(x)]
    for kind, names, ranges in NAME_BOUNDS:
        if not (last.endswith(tuple(names)) if kind == "suffix" else tokens & names):
            continue
        if finite is None or not len(finite):
            return ranges[0]
        for lo, hi in ranges:
            if lo <= finite.min() and finite.max() <= hi:
                return (lo, hi)
        return None
    return None


def check_bounds(bounds: Any, what: str) -> tuple[float, float]:
    """``bounds`` as a (low, high) float pair with low < high, or an AssayError naming it."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise AssayError(
            f'{what}: bounds must be a pair [low, high] of numbers ("inf" allowed), got {bounds!r}'
        ) from None
    if not lo < hi or math.isnan(lo) or math.isnan(hi):
        raise AssayError(f"{what}: bounds must be [low, high] with low < high, got {bounds!r}")
    return lo, hi


def t_half_width(sample_std: Any, n: Any, level: float = 0.95) -> Any:
    """Half the width of the t-interval of a mean from its sample std (ddof 1) and count: the
    one t critical value every interval uses (NaN below n = 2). For code that holds only
    moments (a patching record's std over inputs); with the values, use :func:`mean_interval`."""
    from scipy import special

    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        crit = np.where(n > 1, special.stdtrit(np.maximum(n - 1, 1), 0.5 + level / 2), np.nan)
        out = crit * np.asarray(sample_std, dtype=float) / np.sqrt(n)
    return float(out) if out.ndim == 0 else out


def _moments(codes: Any, v: Any, k: int) -> tuple[Any, Any, Any]:
    """Per group: count, mean and sample variance (ddof 1; NaN below 2) of ``v``."""
    n = np.bincount(codes, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(codes, weights=v, minlength=k) / n
        ss = np.bincount(codes, weights=(v - mean[codes]) ** 2, minlength=k)
        var = np.where(n > 1, ss / (n - 1), np.nan)
    return n, mean, var


def _spread(codes: Any, v: Any, k: int) -> tuple[Any, Any]:
    """Per group: max - min and max |value| (0 for an empty group)."""
    top, bottom, size = np.full(k, -INF), np.full(k, INF), np.zeros(k)
    np.maximum.at(top, codes, v)
    np.minimum.at(bottom, codes, v)
    np.maximum.at(size, codes, np.abs(v))
    return np.where(np.isfinite(top), top - bottom, 0.0), size


def no_variation(codes: Any, v: Any, k: int) -> Any:
    """Per group: whether its (finite) values do not vary: max - min within
    ``NO_VARIATION_RTOL`` of their magnitude, from two values on."""
    n = np.bincount(codes, minlength=k)
    ptp, size = _spread(codes, v, k)
    return (n > 1) & (ptp <= NO_VARIATION_RTOL * size)


def group_intervals(
    codes: Any,
    x: Any,
    k: int,
    *,
    bounds: tuple[float, float] | None = None,
    level: float = 0.95,
    method: str = "auto",
) -> dict[str, Any]:
    """Per group (``codes``: group index 0..k-1 of every value of ``x``): the interval of
    the module docstring, computed for all groups at once.

    Returns arrays ``n, mean, std, lo, hi, no_variation, clipped, n_nan, n_posinf, n_neginf``
    and ``method`` (the method of the groups with an interval; ``"none"`` for the others).
    """
    from scipy import special

    if method not in METHODS:
        raise AssayError(f"unknown interval method {method!r}; valid: {', '.join(METHODS)}")
    two_sided = bounds is not None and math.isfinite(bounds[0]) and math.isfinite(bounds[1])
    if method == "logit-t" and not two_sided:
        raise AssayError(
            f"method='logit-t' needs finite bounds on both sides (e.g. (0, 1)), got {bounds}"
        )
    if method == "auto":
        method = "logit-t" if two_sided else "t"
    codes, x = np.asarray(codes, dtype=np.intp), np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    nan, pos = np.isnan(x), x == INF
    c, v = codes[ok], x[ok]
    n, mean, var = _moments(c, v, k)
    flat = no_variation(c, v, k)
    std = np.where(flat, 0.0, np.sqrt(var))
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "logit-t":
            a, b = bounds  # type: ignore[misc]
            eps = 0.5 / n  # per group: the squeeze into [1/(2n), 1 - 1/(2n)]
            p = (v - a) / (b - a)
            q = eps[c] + (1 - 2 * eps[c]) * p
            z = np.log(q) - np.log1p(-q)
            _, zmean, zvar = _moments(c, z, k)
            half = t_half_width(np.sqrt(zvar), n, level)
            back = lambda t: np.clip((special.expit(t) - eps) / (1 - 2 * eps), 0.0, 1.0)  # noqa: E731
            lo, hi = a + (b - a) * back(zmean - half), a + (b - a) * back(zmean + half)
            # the logit-scale interval is centred on the logit mean; widen it (continuously)
            # where it would not contain the mean of the values themselves
            lo, hi = np.minimum(lo, mean), np.maximum(hi, mean)
            clipped = np.zeros(k, dtype=bool)
        else:
            half = t_half_width(np.sqrt(var), n, level)
            lo, hi = mean - half, mean + half
            clipped = np.zeros(k, dtype=bool)
            if bounds is not None:
                clipped = (n > 1) & ((lo < bounds[0]) | (hi > bounds[1]))
                lo, hi = np.maximum(lo, bounds[0]), np.minimum(hi, bounds[1])
    lo, hi = np.where(flat, mean, lo), np.where(flat, mean, hi)
    lo, hi = np.where(n > 1, lo, np.nan), np.where(n > 1, hi, np.nan)
    return {
        "n": n,
        "mean": np.where(n > 0, mean, np.nan),
        "std": std,
        "lo": lo,
        "hi": hi,
        "no_variation": flat,
        "clipped": clipped & ~flat,
        "method": method,
        "n_nan": np.bincount(codes[nan], minlength=k),
        "n_posinf": np.bincount(codes[pos], minlength=k),
        "n_neginf": np.bincount(codes[x == -INF], minlength=k),
    }


def cut_rounding(x: Any, bounds: tuple[float, float], what: str) -> Any:
    """``x`` with float rounding past ``bounds`` (a correlation of 1 + 1e-16) cut to them;
    finite values further out are an AssayError naming them, the bounds and the fix."""
    x = np.asarray(x, dtype=float)
    lo, hi = bounds
    span = (hi - lo) if math.isfinite(hi - lo) else max(1.0, abs(lo) if math.isfinite(lo) else 1.0)
    eps = BOUND_ROUNDING * span
    x = np.where((x < lo) & (x >= lo - eps), lo, x)
    x = np.where((x > hi) & (x <= hi + eps), hi, x)
    finite = x[np.isfinite(x)]
    if len(finite) and (finite.min() < lo or finite.max() > hi):
        raise AssayError(
            f"{what} has values {finite.min():g}..{finite.max():g} outside its bounds "
            f"[{lo:g}, {hi:g}]; fix the bounds or the metric"
        )
    return x


def mean_interval(
    values: Iterable[float],
    *,
    bounds: tuple[float, float] | None = None,
    level: float = 0.95,
    method: str = "auto",
) -> Interval:
    """Mean and confidence interval of ``values``; see the module docstring for the method.

    ``method="auto"``: logit-t with finite bounds on both sides, else t (cut to a one-sided
    bound). An explicit ``"t"`` with bounds is cut to them and flagged ``clipped``.
    """
    if method not in METHODS:
        raise AssayError(f"unknown interval method {method!r}; valid: {', '.join(METHODS)}")
    if not 0 < level < 1:
        raise AssayError(f"level must be in (0, 1), got {level}")
    if bounds is not None:
        bounds = check_bounds(bounds, "mean_interval")
    x = np.asarray(list(values), dtype=float)
    if bounds is not None:
        x = cut_rounding(x, bounds, "the metric")
    g = group_intervals(
        np.zeros(len(x), dtype=np.intp), x, 1, bounds=bounds, level=level, method=method
    )
    n = int(g["n"][0])
    bad = int(g["n_nan"][0] + g["n_posinf"][0] + g["n_neginf"][0])
    return Interval(
        mean=float(g["mean"][0]),
        lo=float(g["lo"][0]),
        hi=float(g["hi"][0]),
        n=n,
        method=g["method"] if n > 1 else "none",
        n_nonfinite=bad,
        clipped=bool(g["clipped"][0]),
        level=level,
        no_variation=bool(g["no_variation"][0]),
    )
