"""Analysis across seeds: runs -> DataFrame -> per-group statistics -> comparisons -> plots.

Pure functions compute the numbers (tested); :mod:`._report` only draws them. pandas, scipy
and matplotlib are imported inside the functions so ``import assay`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._errors import AssayError
from ..core._run import RunRecord, RunStatus
from ..store import Store, resolve_store

if TYPE_CHECKING:
    import pandas as pd

CONFIDENCE = 0.95
EXPORT_FORMATS = ("csv", "json", "parquet")
INFO_KEYS = frozenset({"threads", "num_threads", "n_threads", "device"})  # not metrics
RESERVED = ("_bounds", "_flags")  # results keys that declare, not measure (engine-contract.md)
CI_OUTSIDE_UNIT = "t-interval leaves [0, 1]"  # the note flagging a meaningless interval
NO_VARIATION = "no variation"  # the note of a group (or comparison) whose values are all equal
SAME_IN_BOTH = f"{NO_VARIATION}: every run of both groups gives the same value"  # Welch: NaN
SAME_DIFFERENCE = f"{NO_VARIATION}: every paired difference is"  # paired test: NaN
SUMMARY_COLUMNS = ("group", "metric", "n", "mean", "std", "ci_low", "ci_high", "ci_method",
                   "n_nonfinite", "n_nan", "n_posinf", "n_neginf", "bounds", "flags",
                   "note")  # fmt: skip


def flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` -> ``{"<prefix>a.b": 1}``; lists of scalars become tuples (hashable).

    Under ``results.`` the strings ``"nan"``, ``"inf"``, ``"-inf"`` (how non-finite results are
    written to JSON) become floats; a config's string stays a string (``mode: nan`` is a name).
    """
    kind = type(obj)
    if kind in _SCALARS:  # most cells: skip the (slow) abstract Mapping check
        numeric = kind is str and obj in _NONFINITE and prefix.startswith("results.")
        out[prefix[:-1]] = float(obj) if numeric else obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            flatten(value, f"{prefix}{key}.", out)
        if not obj and prefix:
            out[prefix[:-1]] = None
    elif isinstance(obj, list):
        out[prefix[:-1]] = (
            tuple(obj) if all(not isinstance(v, dict | list) for v in obj) else str(obj)
        )
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
    from ..engine._api import plan_suite

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
    """Replicate ids (``seed``, ``*_seed``, or declared: see :func:`assay.is_replicate`, the
    one rule), not what defines a group, so analysis pools over them."""
    from ..core._config import is_replicate

    return is_replicate(name)


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
        and c.split(".", 2)[1] not in RESERVED
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


def _labels(df: pd.DataFrame, groups: list[str], *, short: bool = True) -> pd.Series:
    """Each run's group label: ``lr=0.1, depth=3`` (``all`` when nothing varies).

    ``short``: a group's ``key=None`` parts (a key it lacks or holds null) are left out of its
    label, so five filters read ``filter.kind=top`` rather than a row of ``...=None`` beside
    the one key that is set; a label that would come out empty or equal to another group's
    keeps its ``None`` parts (``end_index=None``).
    """
    import numpy as np
    import pandas as pd

    if not groups:
        return pd.Series(["all"] * len(df), index=df.index, dtype=object)
    texts = [_texts(df[col]) for col in groups]
    label = None
    for col, text in zip(groups, texts, strict=True):
        part = col.removeprefix("config.") + "=" + text
        label = part if label is None else label + ", " + part
    if not short:
        return label
    codes, uniques = pd.factorize(label, sort=False)
    first = np.unique(codes, return_index=True)[1]  # first row of each group
    keys = [col.removeprefix("config.") for col in groups]
    cells = [t.to_numpy(dtype=object)[first] for t in texts]
    shortened = [", ".join(f"{key}={c[g]}" for key, c in zip(keys, cells, strict=True)
                           if c[g] != "None") for g in range(len(uniques))]  # fmt: skip
    taken: dict[str, int] = {}
    for s in shortened:
        taken[s] = taken.get(s, 0) + 1
    display = np.array([s if s and taken[s] == 1 else u
                        for s, u in zip(shortened, uniques, strict=True)], dtype=object)  # fmt: skip
    return pd.Series(display[codes], index=df.index, dtype=object)


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


def known_bounds(metric: str, values: Any = None) -> tuple[float, float] | None:
    """The range a metric's name declares (``assay.analysis._stats.NAME_BOUNDS``; see
    docs/engine-contract.md, analysis), or None. With ``values``, only a range holding every
    finite value (``eval_f1`` at 87.5 is a percent: [0, 100])."""
    from ._stats import known_bounds as by_name

    return by_name(metric, values)


def parse_bounds(values: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--bounds acc=0:1`` values (repeated and/or comma lists) -> ``{"results.acc": (0, 1)}``;
    ``inf`` / ``-inf`` allowed (``abs_err=0:inf``)."""
    from ._stats import check_bounds

    out: dict[str, tuple[float, float]] = {}
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            name, _, rng = item.partition("=")
            lo, sep, hi = rng.partition(":")
            if not name.strip() or not sep:
                raise AssayError(
                    f"--bounds {item!r} is not METRIC=LOW:HIGH; write e.g. --bounds acc=0:1 or "
                    "--bounds abs_err=0:inf"
                )
            metric = name.strip()
            metric = metric if metric.startswith("results.") else f"results.{metric}"
            out[metric] = check_bounds((lo.strip(), hi.strip()), f"--bounds {item}")
    return out


def _declared(df: pd.DataFrame, metric: str, reserved: str) -> Any:
    """The ``results.<reserved>.<metric>`` column the runs' results declared, or None."""
    col = f"results.{reserved}.{metric.removeprefix('results.')}"
    return df[col] if col in df.columns else None


def metric_bounds(
    df: pd.DataFrame, metric: str, x: Any, declared: tuple[float, float] | None = None
) -> tuple[tuple[float, float] | None, str]:
    """A metric's range and where it comes from: ``declared`` (``--bounds``, ``bounds=``),
    else the runs' ``"_bounds"`` results, else its name; ``(None, "")`` when none applies.
    A declared range (either kind) that some value leaves is an AssayError."""
    from ._stats import check_bounds, cut_rounding

    name = metric.removeprefix("results.")
    if declared is not None:
        bounds = check_bounds(declared, f"bounds of {name}")
        cut_rounding(x, bounds, f"metric {name}")
        return bounds, "declared"
    column = _declared(df, metric, "_bounds")
    if column is not None:
        found = {check_bounds(b, f'results "_bounds" of {name}')
                 for b in column if b is not None and not _missing(b)}  # fmt: skip
        if len(found) > 1:
            raise AssayError(
                f'runs declare different "_bounds" for {name}: {sorted(found)}; a metric has '
                "one range: fix the stage, or pass --bounds {name}=LOW:HIGH"
            )
        if found:
            bounds = found.pop()
            cut_rounding(x, bounds, f"metric {name} (bounds from its results)")
            return bounds, "results"
    named = known_bounds(metric, x)
    return (named, "name") if named is not None else (None, "")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _flag_texts(df: pd.DataFrame, metric: str, codes: Any, k: int) -> list[str]:
    """Per group: the flags its runs' results declared for ``metric`` (``"_flags"``), counted:
    ``above τ (2 of 3 runs)``."""
    from collections import Counter

    column = _declared(df, metric, "_flags")
    out = [""] * k
    if column is None:
        return out
    total = [0] * k
    per: list[Counter[str]] = [Counter() for _ in range(k)]
    for g, flag in zip(codes, column, strict=True):
        total[g] += 1
        if not _missing(flag) and str(flag):
            per[g][str(flag)] += 1
    for g in range(k):
        out[g] = "; ".join(f"{f} ({c} of {total[g]} runs)" for f, c in per[g].items())
    return out


def _nonfinite_text(nan: int, pos: int, neg: int) -> str:
    parts = [(neg, "-inf"), (pos, "+inf"), (nan, "nan")]
    return ", ".join(f"{c} {what}" for c, what in parts if c)


def summarize(
    df: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Per group (config minus seed) and metric: n, mean, std and a 95% confidence interval.

    The interval is ``assay.mean_interval``'s (one implementation, ``assay.analysis._stats``): Student's
    t over seeds, on the logit scale for a metric bounded on both sides so it never leaves the
    range, cut at the bound for one bounded on one side. A metric's range comes from
    ``bounds``, else the runs' ``"_bounds"`` results, else its name (:func:`metric_bounds`);
    ``bounds`` says which range was used. Values that do not vary give a zero-width interval and
    the note "no variation". Non-finite values are left out of the mean and counted
    (``n_nonfinite``, and by kind ``n_nan``, ``n_posinf``, ``n_neginf``); a group none of whose
    values is finite stays in the table with ``n`` 0. ``flags`` counts the flags the runs'
    ``"_flags"`` results set on the metric ("above τ (2 of 3 runs)").

    Args:
        metrics: ``results.<name>`` columns; default every metric (:func:`metric_columns`).
        bounds: ``{"results.acc": (0, 1)}`` (or without the prefix): ranges to respect.
    """
    import numpy as np
    import pandas as pd

    from ._stats import group_intervals

    if df.empty:
        raise AssayError("no finished runs to analyze; run the suite first (`assay run SUITE`)")
    metrics = list(metrics) if metrics else metric_columns(df)
    _check_metrics(df, metrics)
    declared = {(m if m.startswith("results.") else f"results.{m}"): b
                for m, b in (bounds or {}).items()}  # fmt: skip
    _check_metrics(df, list(declared), what="metric(s) in --bounds")
    codes, names = _codes(_labels(df, group_columns(df)))
    k = len(names)
    columns: dict[str, list[Any]] = {c: [] for c in SUMMARY_COLUMNS}
    for metric in metrics:
        x = _values(df[metric])
        rng, source = metric_bounds(df, metric, x, declared.get(metric))
        if rng is not None:
            from ._stats import cut_rounding

            x = cut_rounding(x, rng, f"metric {metric.removeprefix('results.')}")
        iv = group_intervals(codes, x, k, bounds=rng, level=CONFIDENCE)
        n, mean = iv["n"], iv["mean"]
        # rows of stages that report this metric at all: another stage's runs are not "missing"
        # (a metric NaN in every run cannot be told from a missing one: all its rows count)
        reported = np.ones(len(x), dtype=bool)
        if "stage" in df.columns and not np.isnan(x).all():
            reported = df["stage"].isin(set(df["stage"][~np.isnan(x)])).to_numpy()
        n_rows = np.bincount(codes[reported], minlength=k)
        flags = _flag_texts(df, metric, codes, k)
        bounds_text = "" if rng is None else f"[{rng[0]:g}, {rng[1]:g}] ({source})"
        for g in range(k):
            if n_rows[g] == 0:
                continue
            counts = (int(iv["n_nan"][g]), int(iv["n_posinf"][g]), int(iv["n_neginf"][g]))
            bad = int(n_rows[g] - n[g])
            kinds = _nonfinite_text(bad - counts[1] - counts[2], counts[1], counts[2])
            notes = []
            if n[g] == 0:
                notes.append(f"no finite value among {bad} run(s): {kinds}")
            elif n[g] == 1:
                notes.append("one value: no interval")
            elif iv["no_variation"][g]:
                notes.append(f"{NO_VARIATION}: all {int(n[g])} values are {mean[g]:.6g}")
            if bad and n[g]:
                notes.append(f"{bad} non-finite value(s) left out of the mean: {kinds}")
            if iv["clipped"][g]:
                notes.append(f"t-interval cut at the bound of {list(rng)}")  # type: ignore[arg-type]
            if (rng is None and n[g] > 1 and np.nanmin(x, initial=np.inf) >= 0.0
                    and np.nanmax(np.where(np.isfinite(x), x, np.nan), initial=-np.inf) <= 1.0
                    and (iv["lo"][g] < 0.0 or iv["hi"][g] > 1.0)):  # fmt: skip
                notes.append(
                    f"{CI_OUTSIDE_UNIT} though every value lies in it; if the metric is a "
                    f"fraction, pass its bounds (--bounds {metric.removeprefix('results.')}=0:1, "
                    'or "_bounds" in the results)'
                )
            row = (names[g], metric.removeprefix("results."), int(n[g]), float(mean[g]),
                   float(iv["std"][g]), float(iv["lo"][g]), float(iv["hi"][g]),
                   iv["method"] if n[g] > 1 else "none", bad, bad - counts[1] - counts[2],
                   counts[1], counts[2], bounds_text, flags[g], "; ".join(notes))  # fmt: skip
            for col, value in zip(SUMMARY_COLUMNS, row, strict=True):
                columns[col].append(value)
    out = pd.DataFrame(columns)
    # group-major order (every metric of the first group, then the next group), as before
    order = {name: i for i, name in enumerate(names)}
    out["_g"] = out["group"].map(order)
    out = out.sort_values("_g", kind="stable").drop(columns="_g").reset_index(drop=True)
    for col in ("n", "n_nonfinite", "n_nan", "n_posinf", "n_neginf"):
        out[col] = out[col].astype(int)
    return out


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
            ) for i in range(len(others))
        ]  # fmt: skip
        parts.append(pd.DataFrame({
            "metric": metric.removeprefix("results."), "baseline": [names[b] for b in ob],
            "group": [names[g] for g in others], "baseline_mean": mean[ob],
            "mean": mean[others], "diff": diff, "n_baseline": n[ob].astype(int),
            "n": n[others].astype(int), "p_welch": p_welch, "n_pairs": n_pairs,
            "p_paired": p_paired, "note": notes,
        }))  # fmt: skip
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
    o = pd.DataFrame({"slot": slot[codes[om]], "bg": base_of[codes[om]], "s": seeds[om],
                      "vb": x[om]})  # fmt: skip
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
        p = np.where(n_pairs > 1, 2 * special.stdtr(np.maximum(n_pairs - 1, 1), -np.abs(t)),
                     np.nan)  # fmt: skip
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
    stratum = (pd.factorize(_labels(df, rest, short=False), sort=False)[0] if rest
               else np.zeros(len(df), dtype=int))  # fmt: skip
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


def _check_metrics(df: pd.DataFrame, metrics: Sequence[str], what: str = "metric(s)") -> None:
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        valid = ", ".join(c.removeprefix("results.") for c in metric_columns(df, info=True))
        raise AssayError(
            f"unknown {what} {', '.join(m.removeprefix('results.') for m in missing)}; "
            f"numeric results: {valid}"
        )


def export(df: pd.DataFrame, path: Path, fmt: str) -> Path:
    """Write ``df`` as csv, json or parquet (atomically)."""
    from ..core._io import atomic_path

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
