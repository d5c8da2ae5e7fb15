"""Results: one record per (definition, direction), the files they go to, and the ranking.

Pure functions first (records, ranking, effect grid: tested), file writers after. Renderers
(plots) live in ``_analysis.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assay.analysis._stats import t_half_width
from assay.ml.patching import NORMALISE_EPS, PatchOutcome, aggregate

SUMMARY_METRICS = ("l2", "delta_chosen", "action_changed", "kl_base_patched", "normalised_score")
DEFAULT_RANK_METRIC = "l2"  # always defined and direction-free: "how much did the output move"


def _num(x: Any) -> float | int | None:
    x = x.item() if hasattr(x, "item") else x
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN; None reads back as missing
    return x


def _module_label(definition: Any) -> str:
    """The heatmap row of a definition's first patch: its module, or module.site for heads."""
    first = definition.patches[0]
    if first.heads is not None:
        return f"{first.key}.{'pattern' if first.site == 'pattern' else 'z'}"
    return first.key if first.site == "output" else f"{first.key}.{first.site}"


def build_records(
    outcome: PatchOutcome, start_index: int = 0, method: str = "exact"
) -> list[dict[str, Any]]:
    """Aggregate (D, N) metrics into one JSON-able record per definition.

    Every metric's stats carry ``n`` (finite values) and ``n_undefined`` (NaN: undefined,
    left out of the mean; see ``assay.ml.patching._metrics``).
    """
    n_inputs = len(outcome.ids)
    stats = {name: aggregate(values) for name, values in outcome.metrics.items()}
    restored, gap = stats["restored"]["mean"], stats["gap"]["mean"]
    records = []
    for i, definition in enumerate(outcome.definitions):
        single = definition.single_unit()
        first = definition.patches[0]
        defined = abs(float(gap[i])) >= NORMALISE_EPS
        records.append(
            {
                "index": start_index + i,
                "label": definition.label(),
                "definition": definition.to_json(),
                "direction": outcome.direction,
                "method": method,
                "n_inputs": n_inputs,
                "module": _module_label(definition),
                "unit": single[1] if single else None,
                "positions": list(first.positions) if first.positions is not None else None,
                # fraction of the clean-corrupted difference restored, over all inputs at once
                "normalised_score": _num(restored[i] / gap[i]) if defined else None,
                "metrics": {
                    name: {
                        **{stat: _num(values[i]) for stat, values in s.items()},
                        "n_undefined": n_inputs - int(s["n"][i]),
                    }
                    for name, s in stats.items()
                },
            }
        )
    return records


def score(record: dict[str, Any], metric: str = DEFAULT_RANK_METRIC, stat: str = "mean") -> float:
    if metric == "normalised_score":
        value = record.get("normalised_score")
    else:
        value = record["metrics"].get(metric, {}).get(stat)
    return float("nan") if value is None else float(value)


def resolve_metric(records: Sequence[dict[str, Any]], metric: str = DEFAULT_RANK_METRIC) -> str:
    """``metric``, or ``restored`` (always computed) when the default l2 was not computed."""
    if metric == DEFAULT_RANK_METRIC and records and metric not in records[0]["metrics"]:
        return "restored"
    return metric


def rank(
    records: Iterable[dict[str, Any]],
    metric: str = DEFAULT_RANK_METRIC,
    *,
    direction: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Records sorted by |mean metric|, largest effect first; undefined (NaN) last."""
    rows = [r for r in records if direction is None or r["direction"] == direction]
    metric = resolve_metric(rows, metric)
    if rows and metric not in rows[0]["metrics"] and metric != "normalised_score":
        valid = ", ".join([*rows[0]["metrics"], "normalised_score"])
        raise KeyError(f"unknown metric {metric!r}; valid: {valid}")

    def key(r: dict[str, Any]) -> tuple[bool, float]:
        s = score(r, metric)
        return (math.isnan(s), -abs(s) if not math.isnan(s) else 0.0)

    ranked = sorted(rows, key=key)
    return ranked[:top] if top else ranked


def effect_grid(
    records: Iterable[dict[str, Any]],
    metric: str = DEFAULT_RANK_METRIC,
    direction: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """(modules, (M, max units) array) of single-unit effects; NaN where a unit was not run."""
    cells: dict[str, dict[int, float]] = {}
    for r in sorted(records, key=lambda r: r["index"]):
        if r["unit"] is None or (direction is not None and r["direction"] != direction):
            continue
        if r.get("positions") is not None:
            continue  # position-specific patches would collide with all-position ones
        cells.setdefault(r["module"], {})[r["unit"]] = score(r, metric)
    modules = list(cells)
    width = max((max(c) + 1 for c in cells.values()), default=0)
    grid = np.full((len(modules), width), np.nan)
    for row, module in enumerate(modules):
        for unit, value in cells[module].items():
            grid[row, unit] = value
    return modules, grid


def top_bars(
    records: Iterable[dict[str, Any]],
    metric: str = DEFAULT_RANK_METRIC,
    *,
    direction: str | None = None,
    top: int = 20,
) -> list[dict[str, Any]]:
    """The numbers a top-units bar chart draws: per definition (largest |mean| first) the mean
    of ``metric`` over inputs, its std, n and the 95% t-interval half-width of the mean
    (NaN where n < 2, and for ``normalised_score``, a ratio of means with no per-input std)."""
    bars = []
    for r in rank(records, metric, direction=direction, top=top):
        mean = score(r, metric)
        if math.isnan(mean):
            continue
        entry = r["metrics"].get(metric, {}) if metric != "normalised_score" else {}
        n, std = int(entry.get("n") or 0), entry.get("std")
        half = float("nan")
        if n >= 2 and std is not None:
            sample_std = std * math.sqrt(n / (n - 1))  # records hold the population std
            half = t_half_width(sample_std, n)  # the engine's one t-interval
        bars.append(
            {
                "label": r["label"],
                "mean": mean,
                "std": float("nan") if std is None else float(std),
                "n": n,
                "half_width": half,
            }
        )
    return bars


def merge_shards(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of several shards, one per (index, direction); a later duplicate wins."""
    merged = {(r["index"], r["direction"]): r for r in records}
    return [merged[k] for k in sorted(merged)]


def format_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    header = ["#", "definition", "dir", *metrics]
    body = [
        [
            str(r["index"]),
            r["label"],
            r["direction"][:3],
            *(f"{score(r, m):+.4f}" if not math.isnan(score(r, m)) else "nan" for m in metrics),
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
        for line in [header, *body]
    )


def flat_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per record (for Parquet/CSV): <metric>_<stat> columns."""
    rows = []
    for r in records:
        row = {
            k: r[k] for k in ("index", "label", "direction", "module", "unit", "normalised_score")
        }
        row["definition"] = json.dumps(r["definition"])
        for name, stats in r["metrics"].items():
            for stat, value in stats.items():
                row[f"{name}_{stat}"] = value
        rows.append(row)
    return rows


def write_records(
    run: Any, records: list[dict[str, Any]], outcomes: Sequence[PatchOutcome]
) -> list[str]:
    """records.jsonl, summary.csv, records.parquet (if pyarrow), per_input.npz. Returns names."""
    import pandas as pd

    written = []
    with run.write_artifact("records.jsonl") as tmp:
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in records))
    written.append("records.jsonl")
    frame = pd.DataFrame(flat_rows(records))
    cols = [
        "index",
        "label",
        "direction",
        "normalised_score",
        *(f"{m}_mean" for m in SUMMARY_METRICS if f"{m}_mean" in frame),
    ]
    with run.write_artifact("summary.csv") as tmp:
        frame[cols].to_csv(tmp, index=False)
    written.append("summary.csv")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass  # Parquet is optional (assay[parquet]); records.jsonl holds the same data
    else:
        with run.write_artifact("records.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        written.append("records.parquet")
    arrays: dict[str, np.ndarray] = {}
    for o in outcomes:
        arrays["ids"] = np.asarray(o.ids)
        for name, values in o.metrics.items():
            arrays[f"{o.direction}.{name}"] = values.numpy()
    with run.write_artifact("per_input.npz") as tmp:
        # numpy's stub puts `allow_pickle: bool` beside `**kwds: ArrayLike`, so mypy matches
        # any str-keyed dict against that bool; these keys are "ids" and metric names
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    written.append("per_input.npz")
    return written
