"""Tests between groups: Welch's t-test (or a paired test over shared replicates) of every group
against a baseline, Holm-corrected across the comparisons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core._errors import AssayError
from ._frames import (
    SAME_DIFFERENCE,
    SAME_IN_BOTH,
    _check_metrics,
    _codes,
    _group_moments,
    _labels,
    _texts,
    _values,
    group_columns,
    metric_columns,
    seed_column,
    value_text,
)

if TYPE_CHECKING:
    import pandas as pd


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaNs stay NaN and do not count)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- comparisons


def compare_groups(
    df: pd.DataFrame,
    baseline: Mapping[str, Any] | str | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Each group against its baseline group, per metric.

    Welch's t-test (unequal variances) with Holm correction over the comparisons of a metric, and
    a paired t-test on the seeds both groups share when they share at least two. Computed for
    all groups at once from per-group moments (the formulas of scipy's ``ttest_ind`` and
    ``ttest_rel``), so its cost does not grow with the number of groups times runs. Where the
    values do not vary (both groups constant; every paired difference equal) there is nothing
    to test: the p-value is NaN and ``note`` says "no variation", never a p of 1e-33.

    Args:
        baseline: ``{"lr": 0.1}`` / ``"lr=0.1"``: the baseline is the group whose config
            matches. Naming only some of the keys that vary picks one baseline per value of the
            others: with groups over ``lora_r`` and ``task``, ``lora_r=8`` compares every group
            with the ``lora_r=8`` group of its own task. Default: the first group in suite order.
    """
    import numpy as np
    import pandas as pd

    from ._stats import no_variation

    metrics = list(metrics) if metrics else metric_columns(df)
    _check_metrics(df, metrics)
    groups = group_columns(df)
    labels = _labels(df, groups)
    codes, names = _codes(labels)
    k = len(names)
    base_of = _baselines(df, labels, codes, k, baseline, groups)
    others = np.flatnonzero(base_of >= 0)
    ob = base_of[others]
    seed_col = seed_column(df)
    parts = []
    for metric in metrics:
        x = _values(df[metric])
        ok = np.isfinite(x)
        n, mean, var = _group_moments(codes, x, k)
        flat = no_variation(codes[ok], x[ok], k)
        p_welch = _welch(n[ob], mean[ob], var[ob], n[others], mean[others], var[others])
        both_flat = flat[ob] & flat[others]
        p_welch = np.where(both_flat, np.nan, p_welch)
        n_pairs, p_paired, d_flat, d_value = _paired(df, codes, x, base_of, others, seed_col)
        p_paired = np.where(d_flat, np.nan, p_paired)
        with np.errstate(invalid="ignore"):
            diff = mean[others] - mean[ob]
        notes = [
            "; ".join(
                ([SAME_IN_BOTH] if both_flat[i] else [])
                + ([f"{SAME_DIFFERENCE} {d_value[i]:.6g}"] if d_flat[i] else [])
            )
            for i in range(len(others))
        ]
        parts.append(
            pd.DataFrame(
                {
                    "metric": metric.removeprefix("results."),
                    "baseline": [names[b] for b in ob],
                    "group": [names[g] for g in others],
                    "baseline_mean": mean[ob],
                    "mean": mean[others],
                    "diff": diff,
                    "n_baseline": n[ob].astype(int),
                    "n": n[others].astype(int),
                    "p_welch": p_welch,
                    "n_pairs": n_pairs,
                    "p_paired": p_paired,
                    "note": notes,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True) if parts and len(others) else pd.DataFrame()
    if out.empty:
        return out
    for col in ("p_welch", "p_paired"):
        out[f"{col}_holm"] = math.nan
        for index in out.groupby("metric", sort=False).groups.values():
            out.loc[index, f"{col}_holm"] = holm(out.loc[index, col].tolist())
    return out[[c for c in out.columns if c != "note"] + ["note"]]


def _welch(na: Any, ma: Any, va: Any, nb: Any, mb: Any, vb: Any) -> Any:
    """Two-sided Welch p-values of each group (b) against its baseline (a); NaN below 2 each."""
    import numpy as np
    from scipy import special

    with np.errstate(divide="ignore", invalid="ignore"):
        vn1, vn2 = vb / nb, va / na
        df = (vn1 + vn2) ** 2 / (vn1**2 / (nb - 1) + vn2**2 / (na - 1))
        df = np.where(np.isnan(df), 1.0, df)  # both variances zero: as scipy does
        t = (mb - ma) / np.sqrt(vn1 + vn2)
        p = 2 * special.stdtr(df, -np.abs(t))
    return np.where((nb > 1) & (na > 1), p, np.nan)


def _paired(
    df: pd.DataFrame, codes: Any, x: Any, base_of: Any, others: Any, seed_col: str | None
) -> tuple[Any, Any, Any, Any]:
    """Per compared group: the number of seeds shared with its baseline, the paired t-test
    p-value over them (NaN below two pairs), whether every paired difference is the same
    (up to float rounding) and that difference. A seed held twice pairs every combination, as
    a merge on the seed does."""
    import numpy as np
    import pandas as pd
    from scipy import special

    from ._stats import NO_VARIATION_RTOL

    k = len(others)
    n_pairs, p = np.zeros(k, dtype=int), np.full(k, np.nan)
    flat, value = np.zeros(k, dtype=bool), np.full(k, np.nan)
    if seed_col is None or not k:
        return n_pairs, p, flat, value
    seeds = df[seed_col].to_numpy(dtype=object)
    known = np.isfinite(x) & ~pd.isna(df[seed_col]).to_numpy()
    is_base = np.zeros(codes.max() + 1, dtype=bool)
    is_base[base_of[others]] = True
    slot = np.full(codes.max() + 1, -1)
    slot[others] = np.arange(k)
    bm, om = known & is_base[codes], known & (slot[codes] >= 0)
    a = pd.DataFrame({"bg": codes[bm], "s": seeds[bm], "va": x[bm]})
    o = pd.DataFrame(
        {"slot": slot[codes[om]], "bg": base_of[codes[om]], "s": seeds[om], "vb": x[om]}
    )
    j = o.merge(a, on=["bg", "s"], how="inner", sort=False)
    c = j["slot"].to_numpy(dtype=np.intp)
    d = (j["vb"] - j["va"]).to_numpy(dtype=float)
    scale = np.maximum(np.abs(j["vb"].to_numpy(float)), np.abs(j["va"].to_numpy(float)))
    n_pairs = np.bincount(c, minlength=k)
    top, bottom, size = np.full(k, -np.inf), np.full(k, np.inf), np.zeros(k)
    np.maximum.at(top, c, d)
    np.minimum.at(bottom, c, d)
    np.maximum.at(size, c, scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(c, weights=d, minlength=k) / n_pairs
        var = np.bincount(c, weights=(d - mean[c]) ** 2, minlength=k) / (n_pairs - 1)
        t = mean / np.sqrt(var / n_pairs)
        p = np.where(
            n_pairs > 1, 2 * special.stdtr(np.maximum(n_pairs - 1, 1), -np.abs(t)), np.nan
        )
    # rounding: x_b - x_a of equal steps differs in the last bits (1e-17 on values near 1)
    flat = (n_pairs > 1) & (top - bottom <= 4 * NO_VARIATION_RTOL * size)
    return n_pairs, p, flat, np.where(flat, mean, np.nan)


def _baselines(
    df: pd.DataFrame,
    labels: pd.Series,
    codes: Any,
    k: int,
    baseline: Mapping[str, Any] | str | None,
    groups: list[str],
) -> Any:
    """Per group: the index of the group it is compared with (-1: none, a baseline itself)."""
    import numpy as np
    import pandas as pd

    from ..core._config import parse_value

    base_of = np.full(k, -1)
    if not baseline:
        base_of[1:] = 0
        return base_of
    if isinstance(baseline, str):
        pairs = [part.split("=", 1) for part in baseline.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise AssayError(f"cannot read baseline {baseline!r}; write key=value[,key=value]")
        baseline = {k.strip(): parse_value(v.strip()) for k, v in pairs}
    mask = np.ones(len(df), dtype=bool)
    keys = []
    for key, value in baseline.items():
        col = key if key.startswith("config.") else f"config.{key}"
        if col not in df.columns:
            valid = ", ".join(c.removeprefix("config.") for c in groups)
            raise AssayError(f"baseline key {key!r} is not a config key; keys that vary: {valid}")
        keys.append(col)
        mask &= (_texts(df[col]) == value_text(value)).to_numpy()
    chosen = np.unique(codes[mask])
    if not len(chosen):
        shown = "; ".join(list(dict.fromkeys(labels))[:20])
        more = len(set(labels)) - 20
        raise AssayError(
            f"baseline {dict(baseline)} matches 0 groups; groups are: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
            + "; name a value that occurs"
        )
    rest = [c for c in groups if c not in keys]  # one baseline per value of the other keys
    stratum = (
        pd.factorize(_labels(df, rest, short=False), sort=False)[0]
        if rest
        else np.zeros(len(df), dtype=int)
    )
    group_stratum = np.zeros(k, dtype=int)
    group_stratum[codes] = stratum
    base_in = {}
    for g in chosen:
        s = group_stratum[g]
        if s in base_in:  # cannot happen: the keys and the rest determine a group
            raise AssayError(f"baseline {dict(baseline)} matches 2 groups of one variant")
        base_in[s] = g
    for g in range(k):
        b = base_in.get(group_stratum[g], -1)
        base_of[g] = -1 if b == g else b
    return base_of
