"""Agg plotting of seed-grouped means with intervals that respect a metric's range.

    plt = agg_pyplot()
    fig, ax = plt.subplots()
    plot_seed_curves(ax, frame, x="step", y="accuracy", group="model", bounds=(0, 1))
    assay.save_figure(fig, run.artifacts_dir / "accuracy.png")   # atomic

The intervals are :func:`assay.analysis._stats.mean_interval`'s (re-exported here as part of assay.ml).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..analysis._stats import Interval, NonFiniteWarning, mean_interval
from ..core._io import agg_pyplot
from ._errors import MLError

__all__ = [
    "Interval",
    "NonFiniteWarning",
    "agg_pyplot",
    "mean_interval",
    "plot_seed_curves",
    "seed_curves",
]


def seed_curves(
    data: Any, x: str, y: str, group: str | None = None, bounds: tuple[float, float] | None = None
) -> dict[Any, list[tuple[float, Interval]]]:
    """The numbers :func:`plot_seed_curves` draws: group -> [(x, interval of y over seeds)].

    ``data`` is a pandas DataFrame or a list of row dicts, one row per (seed, x[, group]).
    """
    rows = data.to_dict("records") if hasattr(data, "to_dict") else list(data)
    missing = [c for c in (x, y, group) if c is not None and rows and c not in rows[0]]
    if missing:
        raise MLError(f"columns {missing} not in the data; it has {sorted(rows[0])}")
    cells: dict[Any, dict[float, list[float]]] = {}
    for r in rows:
        cells.setdefault(r[group] if group else y, {}).setdefault(r[x], []).append(r[y])
    return {
        g: [(xv, mean_interval(vals, bounds=bounds)) for xv, vals in sorted(by_x.items())]
        for g, by_x in cells.items()
    }


def plot_seed_curves(
    ax: Any,
    data: Any,
    x: str,
    y: str,
    group: str | None = None,
    bounds: tuple[float, float] | None = None,
) -> dict[Any, list[tuple[float, Interval]]]:
    """Draw the mean of ``y`` over seeds against ``x``, one line and interval band per group.

    Points whose values were partly non-finite are ringed and counted in the legend and a
    NonFiniteWarning; they are never dropped silently. Returns what was drawn.
    """
    curves = seed_curves(data, x, y, group, bounds)
    for g, points in curves.items():
        xs = np.array([p[0] for p in points], dtype=float)
        iv = [p[1] for p in points]
        mean = np.array([i.mean for i in iv])
        lo, hi = np.array([i.lo for i in iv]), np.array([i.hi for i in iv])
        bad = sum(i.n_nonfinite for i in iv)
        label = f"{g}" + (f" ({bad} non-finite left out)" if bad else "")
        (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        flagged = [k for k, i in enumerate(iv) if i.n_nonfinite]
        if flagged:
            ax.scatter(xs[flagged], mean[flagged], s=60, facecolors="none", edgecolors="red")
            warnings.warn(
                f"{y} of group {g!r}: {bad} non-finite value(s) left out of the means at "
                f"{x}={[float(xs[k]) for k in flagged]}",
                NonFiniteWarning,
                stacklevel=2,
            )
    if bounds is not None and np.isfinite(bounds).all():
        ax.set_ylim(
            bounds[0] - 0.02 * (bounds[1] - bounds[0]), bounds[1] + 0.02 * (bounds[1] - bounds[0])
        )
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if group is not None:
        ax.legend(title=group, fontsize="small")
    return curves
