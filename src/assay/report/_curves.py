"""Metric curves from ``metrics.jsonl``: per group, mean and a 95% band over seeds at each step.

The band is ``assay.mean_interval``'s interval of the mean over the runs that logged that step
(the one interval the grouped statistics use: t, on the logit scale for a metric whose name
declares a two-sided range, so an accuracy band never leaves [0, 1]); a step logged by one run
has no band (``lo``/``hi`` are None) and says so through ``n``. Non-finite values cannot enter a
mean: they are counted per step (``nonfinite``) and reported in ``notes``, never silently
dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis._stats import group_intervals, known_bounds
from ._runfiles import as_float

MAX_STEPS = 400  # points per group line; beyond it every k-th logged step is kept (noted)
RUN_POINTS = 200  # points per run and metric kept for the run-detail chart
RUN_POINTS_BUDGET = 300_000  # all runs' detail points together; above it they are left out
SKIP_KEYS = frozenset({"step", "time"})


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _thin(steps: list[int], limit: int) -> tuple[list[int], bool]:
    if len(steps) <= limit:
        return steps, False
    k = math.ceil(len(steps) / limit)
    kept = steps[::k]
    if kept[-1] != steps[-1]:
        kept.append(steps[-1])  # the last step is what a reader looks at
    return kept, True


def run_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, float]]:
    """One run's metrics: ``{metric: {step: value}}``; a step logged twice keeps its last value
    (a resumed run logs again from its checkpoint)."""
    out: dict[str, dict[int, float]] = {}
    for row in rows:
        step = row["step"]
        for key, value in row.items():
            if key in SKIP_KEYS:
                continue
            kind = type(value)
            if kind is float or kind is int:
                out.setdefault(key, {})[step] = float(value)
            elif kind is str:
                x = as_float(value)  # "nan", "inf": logged non-finite values
                if x is not None:
                    out.setdefault(key, {})[step] = x
    return out


def aggregate_curves(
    series: Mapping[str, dict[str, dict[int, float]]],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Group curves from per-run series.

    Args:
        series: run id -> ``run_series`` of that run.
        labels: run id -> group label (runs without a label are left out).

    Returns:
        ``{"metrics": [...], "groups": [...], "series": {metric: [{group, steps, mean, lo, hi,
        n, nonfinite, edges}]}, "notes": [...], "runs": {run id: {metric: [steps, values]}}}``;
        ``nonfinite`` counts a step's nan/inf values, ``edges`` lists only the steps that have
        any, as ``[index into steps, n -inf, n +inf, n nan]``.
    """
    groups = list(dict.fromkeys(labels[rid] for rid in series if rid in labels))
    metrics = sorted({m for s in series.values() for m in s})
    by_group: dict[str, list[str]] = {g: [] for g in groups}
    for rid in series:
        if rid in labels:
            by_group[labels[rid]].append(rid)
    notes: list[str] = []
    out: dict[str, list[dict[str, Any]]] = {}
    bounds_of = {
        m: known_bounds(m, [x for s in series.values() for x in s.get(m, {}).values()])
        for m in metrics
    }
    for metric in metrics:
        lines = []
        for group in groups:
            per_step: dict[int, list[float]] = {}
            for rid in by_group[group]:
                for step, x in series[rid].get(metric, {}).items():
                    per_step.setdefault(step, []).append(x)
            if not per_step:
                continue
            steps, thinned = _thin(sorted(per_step), MAX_STEPS)
            if thinned:
                notes.append(
                    f"{metric} / {group}: {len(per_step)} logged steps; every "
                    f"{math.ceil(len(per_step) / MAX_STEPS)}th is drawn"
                )
            values = [v for st in steps for v in per_step[st]]
            codes = [i for i, st in enumerate(steps) for _ in per_step[st]]
            iv = group_intervals(codes, values, len(steps), bounds=bounds_of[metric])
            ns = [int(v) for v in iv["n"]]
            bad = [
                int(a + b + c)
                for a, b, c in zip(iv["n_nan"], iv["n_posinf"], iv["n_neginf"], strict=True)
            ]
            nonfinite = sum(bad)
            mean, lo, hi = (
                [None if math.isnan(v) else _round(float(v)) for v in iv[key]]
                for key in ("mean", "lo", "hi")
            )
            if nonfinite:
                notes.append(
                    f"{metric} / {group}: {nonfinite} non-finite value(s) (nan/inf) "
                    "left out of the mean"
                )
            if max(ns) == 1:
                notes.append(f"{metric} / {group}: one run per step, no band")
            # the steps with non-finite values, by kind, for the page's markers at the axis edge
            edges = [
                [k, int(iv["n_neginf"][k]), int(iv["n_posinf"][k]), int(iv["n_nan"][k])]
                for k, b in enumerate(bad)
                if b
            ]
            lines.append(
                {
                    "group": group,
                    "steps": steps,
                    "mean": mean,
                    "lo": lo,
                    "hi": hi,
                    "n": ns,
                    "nonfinite": bad,
                    "edges": edges,
                }
            )
        out[metric] = lines
    return {
        "metrics": metrics,
        "groups": groups,
        "series": out,
        "notes": notes,
        "runs": _run_points(series, notes),
    }


def _run_points(
    series: Mapping[str, dict[str, dict[int, float]]], notes: list[str]
) -> dict[str, dict[str, list[list[Any]]]]:
    """Each run's own curves for its detail view, thinned; left out above the budget."""
    total = sum(min(len(v), RUN_POINTS) for s in series.values() for v in s.values())
    if total > RUN_POINTS_BUDGET:
        notes.append(
            f"per-run curves left out of the run details: {total:,} points exceed the "
            f"budget of {RUN_POINTS_BUDGET:,} (the group curves cover every run)"
        )
        return {}
    out: dict[str, dict[str, list[list[Any]]]] = {}
    for rid, s in series.items():
        per: dict[str, list[list[Any]]] = {}
        for metric, values in s.items():
            steps, _ = _thin(sorted(values), RUN_POINTS)
            per[metric] = [
                steps,
                [
                    _round(values[st]) if math.isfinite(values[st]) else str(values[st])
                    for st in steps
                ],
            ]
        out[rid] = per
    return out
