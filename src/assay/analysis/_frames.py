"""Runs as a table: records -> one DataFrame row each (``config.*``, ``results.*``), the columns
that group runs (every varying config field but the replicates) and the metric columns; export.

The first step of the analysis (:mod:`._summary` computes per-group statistics on these frames,
:mod:`._compare` the tests between groups, :mod:`._markdown` only draws them). pandas, scipy
and matplotlib are imported inside the functions so ``import assay`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._errors import AssayError
from ..core._flatten import flatten as flatten
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
SUMMARY_COLUMNS = (
    "group",
    "metric",
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "ci_method",
    "n_nonfinite",
    "n_nan",
    "n_posinf",
    "n_neginf",
    "bounds",
    "flags",
    "note",
)


def records_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: ``id, stage, status, attempts, duration_s, config.*, results.*``.

    A config column whose values are all integers stays integer (pandas' nullable ``Int64``
    when some runs lack the key or hold null), so ``degree=17`` never reads ``17.0``.
    """
    import pandas as pd

    rows = []
    for rec in records:
        row: dict[str, Any] = {
            "id": rec.id,
            "stage": rec.stage,
            "status": rec.status.value,
            "attempts": rec.attempts,
            "duration_s": rec.duration_s,
        }
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
        c
        for c in df.columns
        if c.startswith("results.")
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
        and (info or not is_info_key(c))
        and c.split(".", 2)[1] not in RESERVED
    ]


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
    shortened = [
        ", ".join(f"{key}={c[g]}" for key, c in zip(keys, cells, strict=True) if c[g] != "None")
        for g in range(len(uniques))
    ]
    taken: dict[str, int] = {}
    for s in shortened:
        taken[s] = taken.get(s, 0) + 1
    display = np.array(
        [s if s and taken[s] == 1 else u for s, u in zip(shortened, uniques, strict=True)],
        dtype=object,
    )
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
