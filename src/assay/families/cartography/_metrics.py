"""Data-map coordinates and regions, vectorised over (epochs E, examples N).

    m = compute_metrics(dyn.gold_prob, dyn.correct)           # dict of (N,) arrays
    regions = median_regions(m)                                # "easy" / "hard" / "ambiguous"
    keep = top_fraction_subset(m, "ambiguous", 0.33)           # positions, the reference's way

Definitions (p_e the gold-label probability at epoch e, c_e whether the argmax was right):
    confidence          = mean_e p_e
    variability         = std_e p_e (population std, ddof=0, as numpy/the reference)
                          include_ci: sqrt(var + var^2 / (E - 1)) (the reference's option)
    correctness         = mean_e c_e (a fraction; the reference reports the count sum_e c_e)
    forgetfulness       = #{e >= 1 : c_{e-1} and not c_e} (learned -> forgotten events, Toneva et
                          al.); never-learned examples get NaN and ``never_learned`` (the
                          reference writes the sentinel 1000)
    threshold_closeness = confidence * (1 - confidence)
``burn_out=k`` uses only the first k epochs (the reference's option).
"""

from __future__ import annotations

import math

import numpy as np

from assay import ConfigError

METRICS = ("confidence", "variability", "correctness", "forgetfulness", "threshold_closeness")
NEVER_LEARNED_SENTINEL = 1000  # allenai/cartography's value for never-learned forgetfulness
# the reference's ranking direction: True = the most valuable examples have the *lowest* value
REFERENCE_ASCENDING = {
    "variability": False,
    "confidence": True,
    "threshold_closeness": False,
    "forgetfulness": False,
    "correctness": True,
}
# top-k% regions of the reference: region -> (metric, descending)
TOPK_REGIONS = {
    "ambiguous": ("variability", True),
    "hard": ("confidence", False),
    "easy": ("confidence", True),
}


def compute_metrics(
    gold_prob: np.ndarray,
    correct: np.ndarray,
    *,
    burn_out: int | None = None,
    include_ci: bool = False,
) -> dict[str, np.ndarray]:
    """Per-example metrics from (E, N) arrays; see the module docstring for the formulas."""
    if gold_prob.ndim != 2 or gold_prob.shape != correct.shape:
        raise ConfigError(
            f"dynamics must be (epochs, examples) arrays of one shape, got "
            f"{gold_prob.shape} and {correct.shape}"
        )
    if burn_out is not None:
        if burn_out < 1:
            raise ConfigError(f"burn_out must be >= 1 epoch, got {burn_out}")
        gold_prob, correct = gold_prob[:burn_out], correct[:burn_out]
    p = gold_prob.astype(np.float64)
    E = p.shape[0]
    confidence = p.mean(0)
    var = p.var(0)
    if include_ci:
        if E < 2:
            raise ConfigError("include_ci needs at least 2 epochs of dynamics")
        variability = np.sqrt(var + var * var / (E - 1))
    else:
        variability = np.sqrt(var)
    c = correct.astype(bool)
    forgotten = (c[:-1] & ~c[1:]).sum(0).astype(np.float64)  # (N,)
    never = ~c.any(0)
    forgotten[never] = np.nan
    return {
        "confidence": confidence,
        "variability": variability,
        "correctness": c.mean(0),
        "correctness_count": c.sum(0),
        "forgetfulness": forgotten,
        "never_learned": never,
        "threshold_closeness": confidence * (1 - confidence),
    }


def reference_metrics_loop(
    gold_prob: np.ndarray,
    correct: np.ndarray,
    *,
    burn_out: int | None = None,
    include_ci: bool = False,
) -> dict:
    """allenai/cartography's per-example Python loop (train_dy_filtering.py), for checks/bench."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for i in range(gold_prob.shape[1]):
        probs = [float(v) for v in gold_prob[:, i]]
        trend = [bool(v) for v in correct[:, i]]
        if burn_out is not None:
            probs, trend = probs[:burn_out], trend[:burn_out]
        conf = float(np.mean(probs))
        if include_ci:
            v = np.var(probs)
            var = float(np.sqrt(v + v * v / (len(probs) - 1)))
        else:
            var = float(np.std(probs))
        if not any(trend):
            forget = NEVER_LEARNED_SENTINEL
        else:
            learnt, forget = False, 0
            for ok in trend:
                if learnt and not ok:
                    learnt, forget = False, forget + 1
                elif not learnt and ok:
                    learnt = True
        out["confidence"].append(conf)
        out["variability"].append(var)
        out["correctness"].append(sum(trend))  # a count in the reference
        out["forgetfulness"].append(forget)
        out["threshold_closeness"].append(conf * (1 - conf))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def metrics_table(ids: list[str], m: dict[str, np.ndarray], *, reference: bool = False):
    """The CSV table: guid, confidence, variability, correctness, forgetfulness, closeness.

    ``reference=True`` writes correctness as a count and never-learned forgetfulness as 1000,
    as allenai/cartography does; the default writes a fraction, NaN and a ``never_learned`` flag.
    """
    import pandas as pd

    df = pd.DataFrame({"guid": ids, **{k: m[k] for k in METRICS}})
    if reference:
        df["correctness"] = m["correctness_count"]
        df["forgetfulness"] = np.where(
            m["never_learned"], NEVER_LEARNED_SENTINEL, np.nan_to_num(m["forgetfulness"])
        ).astype(int)
    else:
        df["never_learned"] = m["never_learned"]
    return df


def _rank_key(m: dict[str, np.ndarray], metric: str) -> np.ndarray:
    """Values to sort by; never-learned forgetfulness ranks as the most forgettable."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    values = m[metric].astype(np.float64)
    if metric == "forgetfulness":
        values = np.where(m["never_learned"], np.inf, values)
    return values


def order_by(m: dict[str, np.ndarray], metric: str, descending: bool) -> np.ndarray:
    """Positions sorted by ``metric``; ties keep dataset order (a stable sort), so the same
    dynamics always select the same examples (the reference's pandas quicksort does not)."""
    values = _rank_key(m, metric)
    return np.argsort(-values if descending else values, kind="stable")


def top_fraction_subset(
    m: dict[str, np.ndarray], region: str, fraction: float, *, reference_count: bool = False
) -> np.ndarray:
    """The reference's top-k% region: the ``fraction`` of examples most ambiguous/hard/easy.

    Count: floor(fraction * N); ``reference_count`` adds the reference's extra example
    (``sorted.head(n=num_samples + 1)`` in train_dy_filtering.py).
    """
    check_fraction("fraction", fraction)
    if region not in TOPK_REGIONS:
        raise ConfigError(f"unknown region {region!r}; valid: {', '.join(TOPK_REGIONS)}")
    metric, descending = TOPK_REGIONS[region]
    n_total = len(m["confidence"])
    n = int(fraction * n_total) + (1 if reference_count else 0)
    return np.sort(order_by(m, metric, descending)[: min(n, n_total)])


def median_regions(m: dict[str, np.ndarray]) -> np.ndarray:
    """The published median split: ambiguous if variability > its median; otherwise easy if
    confidence >= its median, else hard. Returns (N,) strings."""
    var, conf = m["variability"], m["confidence"]
    ambiguous = var > np.median(var)
    easy = ~ambiguous & (conf >= np.median(conf))
    return np.where(ambiguous, "ambiguous", np.where(easy, "easy", "hard"))


def topk_regions(m: dict[str, np.ndarray], fraction: float = 0.33) -> dict[str, np.ndarray]:
    """Boolean masks of the reference's three top-k% regions (they may overlap)."""
    n = len(m["confidence"])
    out = {}
    for region in TOPK_REGIONS:
        mask = np.zeros(n, dtype=bool)
        mask[top_fraction_subset(m, region, fraction)] = True
        out[region] = mask
    return out


def region_counts(m: dict[str, np.ndarray], fraction: float = 0.33) -> dict[str, dict[str, int]]:
    """Examples per region under both schemes (what the data-map legend and table show)."""
    regions = median_regions(m)
    return {
        "median": {r: int((regions == r).sum()) for r in ("easy", "hard", "ambiguous")},
        f"top_{fraction:g}": {r: int(v.sum()) for r, v in topk_regions(m, fraction).items()},
        "never_learned": {"all": int(m["never_learned"].sum())},
    }


def check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value <= 1 and math.isfinite(value)):
        raise ConfigError(f"`{name}` must be in (0, 1], got {value!r}")
