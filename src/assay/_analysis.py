"""Analysis across seeds: runs -> DataFrame -> per-group statistics -> comparisons -> plots.

Pure functions compute the numbers (tested); :mod:`._report` only draws them. pandas, scipy
and matplotlib are imported inside the functions so ``import assay`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine._errors import AssayError
from ._engine._run import RunRecord, RunStatus
from ._store import Store, resolve_store

if TYPE_CHECKING:
    import pandas as pd

CONFIDENCE = 0.95
EXPORT_FORMATS = ("csv", "json", "parquet")
INFO_KEYS = frozenset({"threads", "num_threads", "n_threads", "device"})  # not metrics
# name tokens that declare a metric's range (known_bounds); "rate" is left out: learning_rate
UNIT_TOKENS = frozenset({"accuracy", "acc", "fraction", "frac", "prob", "probability",
                         "precision", "recall", "f1", "auc", "auroc"})  # fmt: skip
SIGNED_UNIT_TOKENS = frozenset({"corr", "correlation", "cosine", "pearson", "spearman"})
CI_OUTSIDE_UNIT = "t-interval leaves [0, 1]"  # the note flagging a meaningless interval
SUMMARY_COLUMNS = ("group", "metric", "n", "mean", "std", "ci_low", "ci_high", "ci_method",
                   "n_nonfinite", "note")  # fmt: skip


def flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` -> ``{"<prefix>a.b": 1}``; lists of scalars become tuples (hashable)."""
    kind = type(obj)
    if kind in _SCALARS:  # most cells: skip the (slow) abstract Mapping check
        out[prefix[:-1]] = float(obj) if kind is str and obj in _NONFINITE else obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            flatten(value, f"{prefix}{key}.", out)
        if not obj and prefix:
            out[prefix[:-1]] = None
    elif isinstance(obj, list):
        out[prefix[:-1]] = (
            tuple(obj) if all(not isinstance(v, dict | list) for v in obj) else str(obj)
        )
    elif type(obj) is str and obj in _NONFINITE:
        out[prefix[:-1]] = float(obj)  # results store nan/inf as strings (JSON has no literal)
    else:
        out[prefix[:-1]] = obj


_NONFINITE = frozenset({"nan", "inf", "-inf"})
_SCALARS = frozenset({int, float, bool, type(None), str})


def records_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: ``id, stage, status, attempts, duration_s, config.*, results.*``.

    A config column whose values are all integers stays integer (pandas' nullable ``Int64``
    when some runs lack the key or hold null), so ``degree=17`` never reads ``17.0``.
    """
    import pandas as pd

    rows = []
    for rec in records:
        row: dict[str, Any] = {
            "id": rec.id, "stage": rec.stage, "status": rec.status.value,
            "attempts": rec.attempts, "duration_s": rec.duration_s,
        }  # fmt: skip
        flatten(rec.config, "config.", row)
        flatten(rec.results or {}, "results.", row)
        rows.append(row)
    df = pd.DataFrame.from_records(rows)
    for col in df.columns:
        if col.startswith("config.") and df[col].dtype.kind == "f":
            cells = [row.get(col) for row in rows]
            if all(v is None or type(v) is int for v in cells):
                df[col] = pd.array(cells, dtype="Int64")  # from the ints: exact past 2**53
    return df


def load_runs(
    root: str | Path = "runs",
    store: str | Store | None = None,
    *,
    stage: str | None = None,
    suite: Any = None,
    overrides: Sequence[str] = (),
    status: str | None = "done",
) -> pd.DataFrame:
    """Recorded runs as a DataFrame: ``id, stage, status, config.<key>..., results.<key>...``.

    Args:
        suite: a suite (path or object): only its runs (after ``overrides``).
        stage: only runs of this stage.
        status: only runs in this state (default ``done``); None for all.
    """
    from ._engine._api import plan_suite

    opened = resolve_store(store, root)
    try:
        ids = None
        if suite is not None:
            ids = [r.id for r in plan_suite(suite, overrides)]
            stage = stage or None
        records = opened.query(ids=ids, stage=stage, status=RunStatus(status) if status else None)
    finally:
        if not isinstance(store, Store):
            opened.close()
    if ids is not None:  # keep the suite's order
        order = {rid: i for i, rid in enumerate(ids)}
        records.sort(key=lambda r: order.get(r.id, len(order)))
    return records_frame(records)


def is_seed_field(name: str) -> bool:
    """``seed`` and ``*_seed`` (``data_seed``, ``model_seed``): replicate ids, not what defines
    a group, so analysis pools over them."""
    return name == "seed" or name.endswith("_seed")


def seed_column(df: pd.DataFrame) -> str | None:
    cols = [c for c in df.columns if c.startswith("config.") and c.rsplit(".", 1)[-1] == "seed"]
    cols.sort(key=lambda c: c.count("."))
    return cols[0] if cols else None


# --------------------------------------------------------------------------- groups and metrics


def value_text(value: Any) -> str:
    """How a config value reads in a group label: ``17`` (never ``17.0``), ``0.1``, ``None``
    for null or a missing key, so a group whose key holds null is a group like any other."""
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or type(value).__name__ == "NAType"  # pandas.NA (a missing Int64 cell)
    ):
        return "None"
    return str(value)


def _texts(column: pd.Series) -> pd.Series:
    """:func:`value_text` of every cell, computed once per distinct value."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    texts = np.array([value_text(u) for u in uniques] + ["None"], dtype=object)
    return pd.Series(texts[codes], index=column.index, dtype=object)  # code -1 (missing): None


def group_columns(df: pd.DataFrame) -> list[str]:
    """Config columns that vary across runs, seed fields (``seed``, ``*_seed``) excluded: what
    defines a group."""
    out = []
    for col in df.columns:
        if not col.startswith("config.") or is_seed_field(col.rsplit(".", 1)[-1]):
            continue
        if _texts(df[col]).nunique() > 1:
            out.append(col)
    return out


def is_info_key(name: str) -> bool:
    """Whether a results key is information about the run rather than a metric of it.

    Timings (a key ending in ``_s``: ``load_s``, ``patch_s``), thread counts (``threads``,
    ``num_threads``, ``n_threads``, ``*_threads``) and ``device`` are kept in ``runs.csv`` but
    not summarised, compared or plotted unless asked for by name (``--metric load_s``).
    """
    last = name.removeprefix("results.").rsplit(".", 1)[-1]
    return last.endswith("_s") or last.endswith("_threads") or last in INFO_KEYS


def metric_columns(df: pd.DataFrame, *, info: bool = False) -> list[str]:
    """Numeric, non-boolean results columns; ``info=True`` keeps timings and thread counts."""
    import pandas as pd

    return [
        c for c in df.columns
        if c.startswith("results.") and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c]) and (info or not is_info_key(c))
    ]  # fmt: skip


def parse_metrics(values: Sequence[str]) -> list[str] | None:
    """``--metric`` values (repeated and/or comma lists) -> ``results.<name>`` columns."""
    out: list[str] = []
    for value in values:
        items = [v.strip() for v in value.split(",")]
        if any(not v for v in items):
            raise AssayError(
                f"--metric {value!r} has an empty name; write --metric a,b or repeat --metric"
            )
        out += [v if v.startswith("results.") else f"results.{v}" for v in items]
    return list(dict.fromkeys(out)) or None


def _labels(df: pd.DataFrame, groups: list[str]) -> pd.Series:
    """Each run's group label: ``lr=0.1, depth=3`` (``all`` when nothing varies)."""
    import pandas as pd

    if not groups:
        return pd.Series(["all"] * len(df), index=df.index, dtype=object)
    label = None
    for col in groups:
        part = col.removeprefix("config.") + "=" + _texts(df[col])
        label = part if label is None else label + ", " + part
    return label


group_labels = _labels


def _codes(labels: pd.Series) -> tuple[Any, list[str]]:
    """Group index of every run and the group labels, in first-seen (suite) order."""
    import pandas as pd

    codes, uniques = pd.factorize(labels, sort=False)
    return codes, list(uniques)


def _values(column: pd.Series) -> Any:
    import numpy as np
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _group_moments(codes: Any, x: Any, k: int) -> tuple[Any, Any, Any]:
    """Per group: count, mean and sample variance (ddof 1) of the finite values of ``x``.

    Two passes (mean, then squared deviations), summed in run order like numpy's own mean for
    the small groups seeds make; NaN where a group has too few values.
    """
    import numpy as np

    ok = np.isfinite(x)
    c, v = codes[ok], x[ok]
    n = np.bincount(c, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(c, weights=v, minlength=k) / n
        ss = np.bincount(c, weights=(v - mean[c]) ** 2, minlength=k)
        var = np.where(n > 1, ss / (n - 1), np.nan)
    return n, mean, var


# --------------------------------------------------------------------------- summary


def known_bounds(metric: str) -> tuple[float, float] | None:
    """The range a metric's name declares (see docs/engine-contract.md, analysis): accuracies,
    fractions, probabilities and F1/AUC-like scores lie in [0, 1]; correlations and cosines in
    [-1, 1]. None for any other name."""
    last = metric.removeprefix("results.").rsplit(".", 1)[-1].lower()
    tokens = set(last.replace("-", "_").split("_"))
    if tokens & UNIT_TOKENS or last.endswith(("accuracy", "fraction")):
        return (0.0, 1.0)
    if tokens & SIGNED_UNIT_TOKENS or last.endswith(("correlation", "cosine")):
        return (-1.0, 1.0)
    return None


def summarize(
    df: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Per group (config minus seed) and metric: n, mean, std and a 95% confidence interval.

    The interval is Student's t over seeds. For a metric with known bounds (``bounds``, else
    :func:`known_bounds` from its name, when every value lies inside them) a t-interval that
    would leave the range is replaced by ``assay.ml.mean_interval``'s bounded one (bootstrap,
    or Wilson for 0/1 values); ``ci_method`` says which. A t-interval that leaves [0, 1] for a
    metric whose values all lie in [0, 1] but whose bounds are not known is kept and flagged in
    ``note``. Non-finite values are left out of the mean and counted in ``n_nonfinite``; a
    group none of whose values is finite stays in the table with ``n`` 0.

    Args:
        metrics: ``results.<name>`` columns; default every metric (:func:`metric_columns`).
        bounds: ``{"results.acc": (0, 1)}`` (or without the prefix): ranges to respect.
    """
    import numpy as np
    import pandas as pd
    from scipy import stats

    if df.empty:
        raise AssayError("no finished runs to analyze; run the suite first (`assay run SUITE`)")
    metrics = list(metrics) if metrics else metric_columns(df)
    _check_metrics(df, metrics)
    declared = {(m if m.startswith("results.") else f"results.{m}"): b
                for m, b in (bounds or {}).items()}  # fmt: skip
    codes, names = _codes(_labels(df, group_columns(df)))
    k = len(names)
    columns: dict[str, list[Any]] = {c: [] for c in SUMMARY_COLUMNS}
    for metric in metrics:
        x = _values(df[metric])
        n, mean, var = _group_moments(codes, x, k)
        # rows of stages that report this metric at all: another stage's runs are not "missing"
        reported = ~np.isnan(x)
        if "stage" in df.columns:
            reported = df["stage"].isin(set(df["stage"][reported])).to_numpy()
        n_rows = np.bincount(codes[reported], minlength=k)
        std = np.sqrt(var)
        with np.errstate(invalid="ignore"):
            half = np.where(n > 1, stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * std / np.sqrt(n),
                            np.nan)  # fmt: skip
        low, high = mean - half, mean + half
        method = np.where(n > 1, "t", "none").astype(object)
        notes: list[list[str]] = [[] for _ in range(k)]
        _bound_intervals(metric, declared.get(metric), codes, x, n, low, high, method, notes)
        for g in range(k):
            if n_rows[g] == 0:
                continue
            bad = int(n_rows[g] - n[g])
            if n[g] == 0:
                notes[g].insert(0, f"no finite value among {bad} run(s)")
            elif n[g] == 1:
                notes[g].insert(0, "one value: no interval")
            if bad and n[g]:
                notes[g].append(f"{bad} non-finite value(s) left out")
            row = (names[g], metric.removeprefix("results."), int(n[g]), float(mean[g]),
                   float(std[g]), float(low[g]), float(high[g]), method[g], bad,
                   "; ".join(notes[g]))  # fmt: skip
            for col, value in zip(SUMMARY_COLUMNS, row, strict=True):
                columns[col].append(value)
    out = pd.DataFrame(columns)
    # group-major order (every metric of the first group, then the next group), as before
    order = {name: i for i, name in enumerate(names)}
    out["_g"] = out["group"].map(order)
    out = out.sort_values("_g", kind="stable").drop(columns="_g").reset_index(drop=True)
    out["n"] = out["n"].astype(int)
    out["n_nonfinite"] = out["n_nonfinite"].astype(int)
    return out


def _bound_intervals(
    metric: str,
    declared: tuple[float, float] | None,
    codes: Any,
    x: Any,
    n: Any,
    low: Any,
    high: Any,
    method: Any,
    notes: list[list[str]],
) -> None:
    """Replace the t-intervals that leave a metric's bounds (in place), or flag them."""
    import numpy as np

    finite = np.isfinite(x)
    if not finite.any():
        return
    vmin, vmax = float(x[finite].min()), float(x[finite].max())
    bounds = declared
    if bounds is not None and (vmin < bounds[0] or vmax > bounds[1]):
        raise AssayError(
            f"metric {metric.removeprefix('results.')} has values {vmin:g}..{vmax:g} outside "
            f"its declared bounds {tuple(bounds)}; fix the bounds or the metric"
        )
    if bounds is None:
        named = known_bounds(metric)
        if named is not None and named[0] <= vmin and vmax <= named[1]:
            bounds = named
    with np.errstate(invalid="ignore"):
        if bounds is None:
            if vmin >= 0.0 and vmax <= 1.0:  # looks like a fraction: say the interval is off
                for g in np.flatnonzero((n > 1) & ((low < 0.0) | (high > 1.0))):
                    notes[g].append(
                        f"{CI_OUTSIDE_UNIT} though every value lies in it; if the metric is a "
                        "fraction, pass its bounds (a bounded interval is then used)"
                    )
            return
        leaving = np.flatnonzero((n > 1) & ((low < bounds[0]) | (high > bounds[1])))
    if not len(leaving):
        return
    from ._stats import mean_interval

    for g in leaving:
        iv = mean_interval(x[finite & (codes == g)], bounds=bounds)
        low[g], high[g], method[g] = iv.lo, iv.hi, iv.method
        notes[g].append(f"t-interval left {list(bounds)}: {iv.method} interval inside it")


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
    """Each group against the baseline group, per metric.

    Welch's t-test (unequal variances) with Holm correction over the comparisons of a metric, and
    a paired t-test on the seeds both groups share when they share at least two. Computed for
    all groups at once from per-group moments (the formulas of scipy's ``ttest_ind`` and
    ``ttest_rel``), so its cost does not grow with the number of groups times runs.

    Args:
        baseline: ``{"lr": 0.1}`` / ``"lr=0.1"`` selects the group whose config matches; default the
            first group in suite order.
    """
    import numpy as np
    import pandas as pd

    metrics = list(metrics) if metrics else metric_columns(df)
    _check_metrics(df, metrics)
    groups = group_columns(df)
    labels = _labels(df, groups)
    codes, names = _codes(labels)
    k = len(names)
    base_label = _baseline_label(df, labels, baseline, groups) if baseline else names[0]
    b = names.index(base_label)
    others = np.array([g for g in range(k) if g != b], dtype=int)
    seed_col = seed_column(df)
    parts = []
    for metric in metrics:
        x = _values(df[metric])
        n, mean, var = _group_moments(codes, x, k)
        p_welch = _welch(n[b], mean[b], var[b], n[others], mean[others], var[others])
        n_pairs, p_paired = _paired(df, codes, x, b, others, seed_col, metric)
        with np.errstate(invalid="ignore"):
            diff = mean[others] - mean[b]
        parts.append(pd.DataFrame({
            "metric": metric.removeprefix("results."), "baseline": base_label,
            "group": [names[g] for g in others], "baseline_mean": float(mean[b]),
            "mean": mean[others], "diff": diff, "n_baseline": int(n[b]),
            "n": n[others].astype(int), "p_welch": p_welch, "n_pairs": n_pairs,
            "p_paired": p_paired,
        }))  # fmt: skip
    out = pd.concat(parts, ignore_index=True) if parts and len(others) else pd.DataFrame()
    if out.empty:
        return out
    for col in ("p_welch", "p_paired"):
        out[f"{col}_holm"] = math.nan
        for index in out.groupby("metric", sort=False).groups.values():
            out.loc[index, f"{col}_holm"] = holm(out.loc[index, col].tolist())
    return out


def _welch(na: int, ma: float, va: float, nb: Any, mb: Any, vb: Any) -> Any:
    """Two-sided Welch p-values of each group (b) against the baseline (a); NaN below 2 each."""
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
    df: pd.DataFrame, codes: Any, x: Any, b: int, others: Any, seed_col: str | None, metric: str
) -> tuple[Any, Any]:
    """Per group: the number of seeds shared with the baseline and the paired t-test p-value
    over them (NaN below two pairs). A group with a seed twice pairs every combination."""
    import numpy as np
    import pandas as pd
    from scipy import special

    k = len(others)
    n_pairs, p = np.zeros(k, dtype=int), np.full(k, np.nan)
    if seed_col is None or not k:
        return n_pairs, p
    seeds = df[seed_col].to_numpy(dtype=object)
    known = ~np.isnan(x) & ~pd.isna(df[seed_col]).to_numpy()
    base = pd.Series(x[known & (codes == b)], index=seeds[known & (codes == b)])
    rows = known & (codes != b) & pd.Series(seeds).isin(base.index).to_numpy()
    dup = base.index.duplicated().any() or pd.DataFrame(
        {"g": codes[rows], "s": seeds[rows]}).duplicated().any()  # fmt: skip
    if dup:  # repeated seeds: pair every combination, as a merge on the seed does
        slot = {g: i for i, g in enumerate(others)}
        for g in np.unique(codes[rows]):
            d = _pairs_by_merge(seeds, x, known, codes, b, g)
            n_pairs[slot[g]], p[slot[g]] = len(d), _one_sample_p(d)
        return n_pairs, p
    slot = np.full(codes.max() + 1, -1)
    slot[others] = np.arange(k)
    c = slot[codes[rows]]
    d = x[rows] - base.reindex(seeds[rows]).to_numpy(dtype=float)
    n_pairs = np.bincount(c, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(c, weights=d, minlength=k) / n_pairs
        var = np.bincount(c, weights=(d - mean[c]) ** 2, minlength=k) / (n_pairs - 1)
        t = mean / np.sqrt(var / n_pairs)
        p = np.where(n_pairs > 1, 2 * special.stdtr(n_pairs - 1, -np.abs(t)), np.nan)
    return n_pairs, p


def _pairs_by_merge(seeds: Any, x: Any, known: Any, codes: Any, b: int, g: int) -> Any:
    import pandas as pd

    a = pd.DataFrame({"s": seeds[known & (codes == b)], "v": x[known & (codes == b)]})
    o = pd.DataFrame({"s": seeds[known & (codes == g)], "v": x[known & (codes == g)]})
    joined = a.merge(o, on="s", suffixes=("_a", "_b"))
    return (joined["v_b"] - joined["v_a"]).to_numpy(dtype=float)


def _one_sample_p(d: Any) -> float:
    import numpy as np
    from scipy import special

    if len(d) < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d.mean() / np.sqrt(d.var(ddof=1) / len(d))
        return float(2 * special.stdtr(len(d) - 1, -abs(t)))


def _baseline_label(
    df: pd.DataFrame, labels: pd.Series, baseline: Mapping[str, Any] | str, groups: list[str]
) -> str:
    from ._engine._config import parse_value

    if isinstance(baseline, str):
        pairs = [part.split("=", 1) for part in baseline.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise AssayError(f"cannot read baseline {baseline!r}; write key=value[,key=value]")
        baseline = {k.strip(): parse_value(v.strip()) for k, v in pairs}
    mask = labels == labels  # all True
    for key, value in baseline.items():
        col = key if key.startswith("config.") else f"config.{key}"
        if col not in df.columns:
            valid = ", ".join(c.removeprefix("config.") for c in groups)
            raise AssayError(f"baseline key {key!r} is not a config key; keys that vary: {valid}")
        mask &= _texts(df[col]) == value_text(value)
    chosen = list(dict.fromkeys(labels[mask]))
    if len(chosen) != 1:
        shown = "; ".join(list(dict.fromkeys(labels))[:20])
        more = len(set(labels)) - 20
        raise AssayError(
            f"baseline {dict(baseline)} matches {len(chosen)} groups; groups are: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
        )
    return chosen[0]


def _check_metrics(df: pd.DataFrame, metrics: Sequence[str]) -> None:
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        valid = ", ".join(c.removeprefix("results.") for c in metric_columns(df, info=True))
        raise AssayError(
            f"unknown metric(s) {', '.join(m.removeprefix('results.') for m in missing)}; "
            f"numeric results: {valid}"
        )


def export(df: pd.DataFrame, path: Path, fmt: str) -> Path:
    """Write ``df`` as csv, json or parquet (atomically)."""
    from ._engine._io import atomic_path

    if fmt not in EXPORT_FORMATS:
        raise AssayError(f"unknown export format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    path = path.with_suffix(f".{fmt}")
    with atomic_path(path) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        elif fmt == "json":
            df.to_json(tmp, orient="records", indent=2)
        else:
            try:
                df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(tmp)
            except ImportError:
                raise AssayError(
                    "parquet export needs pyarrow: pip install 'assay[parquet]'"
                ) from None
    return path
