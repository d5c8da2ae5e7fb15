"""Data maps and cluster plots: the numbers come from ``_metrics`` (tested); this draws them.

datamap_figure(metrics, title) -> figure: variability (x) vs confidence (y), coloured by
correctness, median-split region labels, marginal histograms of both axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assay import save_figure

from ._metrics import median_regions, region_counts

MAX_POINTS = 25_000  # a scatter of more points is ink, not information; subsampled, seeded


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    return plt


def datamap_figure(m: dict[str, np.ndarray], title: str):
    plt = _pyplot()
    n = len(m["confidence"])
    pick = np.arange(n)
    if n > MAX_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(n, MAX_POINTS, replace=False))
    var, conf, corr = m["variability"][pick], m["confidence"][pick], m["correctness"][pick]
    fig = plt.figure(figsize=(7.5, 7))
    grid = fig.add_gridspec(
        2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05
    )
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    points = ax.scatter(
        var, conf, c=corr, cmap="coolwarm_r", vmin=0, vmax=1, s=6, alpha=0.6, linewidths=0
    )
    ax.axvline(np.median(m["variability"]), color="grey", lw=0.8, ls="--")
    ax.axhline(np.median(m["confidence"]), color="grey", lw=0.8, ls=":")
    counts = region_counts(m)["median"]
    regions = median_regions(m)
    for region in ("easy", "hard", "ambiguous"):
        sel = regions == region
        if sel.any():
            x, y = np.median(m["variability"][sel]), np.median(m["confidence"][sel])
            ax.annotate(
                f"{region}\n(n={counts[region]})",
                (x, y),
                ha="center",
                fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
            )
    ax.set_xlabel("variability (std of gold-label probability over epochs)")
    ax.set_ylabel("confidence (mean gold-label probability)")
    ax.set_ylim(-0.02, 1.02)
    top.hist(m["variability"], bins=50, color="tab:grey")
    right.hist(m["confidence"], bins=50, orientation="horizontal", color="tab:grey")
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    top.set_title(title, fontsize=10)
    fig.colorbar(points, ax=right, label="correctness (fraction of epochs)", fraction=0.5)
    return fig


def save_datamap(m: dict[str, np.ndarray], path: Path, title: str) -> Path:
    return save_figure(datamap_figure(m, title), path)


def save_cluster_plot(xy: np.ndarray, labels: np.ndarray, path: Path, title: str) -> Path:
    """The first two principal components, coloured by cluster (noise in grey)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    noise = labels < 0
    ax.scatter(xy[noise, 0], xy[noise, 1], s=4, c="lightgrey", label=f"noise (n={noise.sum()})")
    ax.scatter(xy[~noise, 0], xy[~noise, 1], s=4, c=labels[~noise], cmap="tab20")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)
