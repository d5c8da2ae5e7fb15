"""Per-group statistics: for every group of runs (a configuration, its replicates pooled) and
metric, the mean, the interval (see :mod:`._stats`), the non-finite counts, declared bounds and
flags, and a note where the interval means nothing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core._errors import AssayError
from ._frames import (
    CI_OUTSIDE_UNIT,
    CONFIDENCE,
    NO_VARIATION,
    SUMMARY_COLUMNS,
    _check_metrics,
    _codes,
    _labels,
    _values,
    group_columns,
    metric_columns,
)

if TYPE_CHECKING:
    import pandas as pd


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
        found = {
            check_bounds(b, f'results "_bounds" of {name}')
            for b in column
            if b is not None and not _missing(b)
        }
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
    declared = {
        (m if m.startswith("results.") else f"results.{m}"): b for m, b in (bounds or {}).items()
    }
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
            if (
                rng is None
                and n[g] > 1
                and np.nanmin(x, initial=np.inf) >= 0.0
                and np.nanmax(np.where(np.isfinite(x), x, np.nan), initial=-np.inf) <= 1.0
                and (iv["lo"][g] < 0.0 or iv["hi"][g] > 1.0)
            ):
                notes.append(
                    f"{CI_OUTSIDE_UNIT} though every value lies in it; if the metric is a "
                    f"fraction, pass its bounds (--bounds {metric.removeprefix('results.')}=0:1, "
                    'or "_bounds" in the results)'
                )
            row = (
                names[g],
                metric.removeprefix("results."),
                int(n[g]),
                float(mean[g]),
                float(iv["std"][g]),
                float(iv["lo"][g]),
                float(iv["hi"][g]),
                iv["method"] if n[g] > 1 else "none",
                bad,
                bad - counts[1] - counts[2],
                counts[1],
                counts[2],
                bounds_text,
                flags[g],
                "; ".join(notes),
            )
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
