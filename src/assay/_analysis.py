"""Analysis across seeds: runs -> DataFrame -> per-group statistics -> comparisons -> plots.

Pure functions compute the numbers (tested); :mod:`._report` only draws them. pandas, scipy
and matplotlib are imported inside the functions so ``import assay`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import AssayError
from ._run import RunRecord, RunStatus
from ._store import Store, resolve_store

if TYPE_CHECKING:
    import pandas as pd

CONFIDENCE = 0.95
EXPORT_FORMATS = ("csv", "json", "parquet")


def flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` -> ``{"<prefix>a.b": 1}``; lists of scalars become tuples (hashable)."""
    if isinstance(obj, Mapping):
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


def records_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
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
    return pd.DataFrame.from_records(rows)


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
    from ._api import plan_suite

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


def seed_column(df: pd.DataFrame) -> str | None:
    cols = [c for c in df.columns if c.startswith("config.") and c.rsplit(".", 1)[-1] == "seed"]
    cols.sort(key=lambda c: c.count("."))
    return cols[0] if cols else None


def group_columns(df: pd.DataFrame) -> list[str]:
    """Config columns that vary across runs, seed fields excluded: what defines a group."""
    out = []
    for col in df.columns:
        if not col.startswith("config.") or col.rsplit(".", 1)[-1] == "seed":
            continue
        if df[col].astype(str).nunique(dropna=False) > 1:
            out.append(col)
    return out


def metric_columns(df: pd.DataFrame) -> list[str]:
    import pandas as pd

    return [
        c for c in df.columns
        if c.startswith("results.") and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    ]  # fmt: skip


def _labels(df: pd.DataFrame, groups: list[str]) -> pd.Series:
    import pandas as pd

    if not groups:
        return pd.Series(["all"] * len(df), index=df.index)
    parts = [df[c].astype(str).radd(c.removeprefix("config.") + "=") for c in groups]
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label


def summarize(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Per group (config minus seed) and metric: n, mean, std, and a 95% t confidence interval."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    if df.empty:
        raise AssayError("no finished runs to analyze; run the suite first (`assay run SUITE`)")
    metrics = list(metrics) if metrics else metric_columns(df)
    _check_metrics(df, metrics)
    labels = _labels(df, group_columns(df))
    rows = []
    for label in dict.fromkeys(labels):  # first-seen order = suite order
        sub = df[labels == label]
        for metric in metrics:
            values = pd.to_numeric(sub[metric], errors="coerce").dropna().to_numpy(float)
            values = values[np.isfinite(values)]
            n = len(values)
            if n == 0:
                continue  # this group has no finite value of the metric (e.g. another stage's)
            mean = float(values.mean())
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            half = (
                float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * std / math.sqrt(n))
                if n > 1 else math.nan
            )  # fmt: skip
            rows.append({"group": label, "metric": metric.removeprefix("results."), "n": n,
                         "mean": mean, "std": std, "ci_low": mean - half,
                         "ci_high": mean + half})  # fmt: skip
    return pd.DataFrame(rows)


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


def compare_groups(
    df: pd.DataFrame,
    baseline: Mapping[str, Any] | str | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Each group against the baseline group, per metric.

    Welch's t-test (unequal variances) with Holm correction over the comparisons of a metric, and
    a paired t-test on the seeds both groups share when they share at least two.

    Args:
        baseline: ``{"lr": 0.1}`` / ``"lr=0.1"`` selects the group whose config matches; default the
            first group in suite order.
    """
    import numpy as np
    import pandas as pd
    from scipy import stats

    metrics = list(metrics) if metrics else metric_columns(df)
    _check_metrics(df, metrics)
    groups = group_columns(df)
    labels = _labels(df, groups)
    order = list(dict.fromkeys(labels))
    base_label = _baseline_label(df, labels, baseline, groups) if baseline else order[0]
    seed_col = seed_column(df)
    rows = []
    for metric in metrics:
        base = df[labels == base_label]
        for label in order:
            if label == base_label:
                continue
            other = df[labels == label]
            a = pd.to_numeric(base[metric], errors="coerce").to_numpy(float)
            b = pd.to_numeric(other[metric], errors="coerce").to_numpy(float)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            p_welch = (
                float(stats.ttest_ind(b, a, equal_var=False).pvalue)
                if len(a) > 1 and len(b) > 1 else math.nan
            )  # fmt: skip
            p_paired, n_pairs = math.nan, 0
            if seed_col is not None:
                joined = pd.merge(base[[seed_col, metric]], other[[seed_col, metric]],
                                  on=seed_col, suffixes=("_a", "_b")).dropna()  # fmt: skip
                n_pairs = len(joined)
                if n_pairs > 1:
                    p_paired = float(
                        stats.ttest_rel(joined[f"{metric}_b"], joined[f"{metric}_a"]).pvalue
                    )
            rows.append({
                "metric": metric.removeprefix("results."), "baseline": base_label,
                "group": label, "baseline_mean": float(a.mean()) if len(a) else math.nan,
                "mean": float(b.mean()) if len(b) else math.nan,
                "diff": (float(b.mean()) - float(a.mean())) if len(a) and len(b) else math.nan,
                "n_baseline": len(a), "n": len(b), "p_welch": p_welch,
                "n_pairs": n_pairs, "p_paired": p_paired,
            })  # fmt: skip
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col in ("p_welch", "p_paired"):
        out[f"{col}_holm"] = math.nan
        for metric in out["metric"].unique():
            mask = out["metric"] == metric
            out.loc[mask, f"{col}_holm"] = holm(out.loc[mask, col].tolist())
    return out


def _baseline_label(
    df: pd.DataFrame, labels: pd.Series, baseline: Mapping[str, Any] | str, groups: list[str]
) -> str:
    from ._config import parse_value

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
        mask &= df[col].astype(str) == str(value)
    chosen = list(dict.fromkeys(labels[mask]))
    if len(chosen) != 1:
        raise AssayError(
            f"baseline {dict(baseline)} matches {len(chosen)} groups; groups are: "
            + "; ".join(dict.fromkeys(labels))
        )
    return chosen[0]


def _check_metrics(df: pd.DataFrame, metrics: Sequence[str]) -> None:
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        valid = ", ".join(c.removeprefix("results.") for c in metric_columns(df))
        raise AssayError(f"unknown metric(s) {', '.join(missing)}; numeric results: {valid}")


def export(df: pd.DataFrame, path: Path, fmt: str) -> Path:
    """Write ``df`` as csv, json or parquet (atomically)."""
    from ._io import atomic_path

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
