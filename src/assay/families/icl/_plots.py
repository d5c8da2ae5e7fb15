"""Plots of the icl stages (matplotlib Agg, written atomically with ``assay.save_figure``).

Each function draws numbers a stage already computed and saved (curves.json, css.npz, ...);
nothing is computed here. Cells with non-finite values are left blank and counted in the title.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from assay import save_figure
from assay.ml import agg_pyplot


def _arr(x) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in x], dtype=float)


def plot_curves(
    doc: dict,
    out: Path,
    metrics: Sequence[str],
    x_key: str = "context_lengths",
    xlabel: str = "context length (words)",
) -> list[Path]:
    """One figure per metric: mean ± sem vs context length, one line per layer."""
    plt = agg_pyplot()
    cmap = plt.get_cmap("viridis")
    written = []
    xs = doc[x_key]
    for name in metrics:
        if name not in doc["metrics"]:
            continue
        m = doc["metrics"][name]
        mean, sem = _arr(m["mean"]), _arr(m["sem"])
        bad = int(np.sum(m["n_nonfinite"]))
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        for i, layer in enumerate(doc["layers"]):
            colour = cmap(i / max(1, len(doc["layers"]) - 1))
            ax.plot(xs, mean[i], "o-", ms=3, color=colour, label=f"layer {layer}")
            ax.fill_between(xs, mean[i] - sem[i], mean[i] + sem[i], color=colour, alpha=0.15)
        if min(xs) > 0:
            ax.set_xscale("log", base=2)
        title = f"{name} ({doc['n_contexts']} contexts, mean ± sem)"
        ax.set(
            xlabel=xlabel,
            ylabel=name,
            title=title + (f"; {bad} non-finite left out" if bad else ""),
        )
        ax.legend(fontsize=7, ncol=2)
        written.append(save_figure(fig, Path(out) / f"curve_{name.replace('/', '_')}.png"))
        plt.close(fig)
    return written


def plot_pca(coords: np.ndarray, lengths: Sequence[int], graph, layer: int, path: Path) -> Path:
    """PCA scatter of class means, coloured by cluster, one panel per context length; lattice
    edges drawn between the points so the graph's shape can be recognised."""
    plt = agg_pyplot()
    fig, axes = plt.subplots(
        1, len(lengths), figsize=(4 * len(lengths), 4), layout="constrained", squeeze=False
    )
    i, j = np.nonzero(np.triu(graph.edges, 1))
    for ax, xy, length in zip(axes[0], coords, lengths, strict=True):
        ok = ~np.isnan(xy).any(1)
        for a, b in zip(i, j, strict=True):
            if ok[a] and ok[b]:
                ax.plot(xy[[a, b], 0], xy[[a, b], 1], color="0.8", lw=0.8, zorder=1)
        ax.scatter(xy[ok, 0], xy[ok, 1], c=graph.labels[ok], cmap="tab10", zorder=2, s=40)
        for n in np.flatnonzero(ok):
            ax.annotate(
                graph.words[n], xy[n], fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
        ax.set(title=f"{length} words ({(~ok).sum()} nodes absent)", xlabel="PC1", ylabel="PC2")
    fig.suptitle(f"class means, layer {layer}, coloured by cluster")
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_css(
    css: dict[str, np.ndarray], layers: Sequence[int], lengths: Sequence[int], out: Path
) -> list[Path]:
    """CSS (layer x position) at the longest length, one heatmap per Φ."""
    plt = agg_pyplot()
    written = []
    for name, grid in css.items():
        g = grid[-1][:, : lengths[-1]]
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * len(layers)), layout="constrained")
        lim = np.nanmax(np.abs(g)) if np.isfinite(g).any() else 1.0
        im = ax.imshow(
            g, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest"
        )
        ax.set(
            yticks=range(len(layers)),
            yticklabels=layers,
            xlabel="word position t",
            ylabel="layer",
            title=f"CSS_t = -cov_c(loss_t, {name}), {lengths[-1]} words",
        )
        fig.colorbar(im, ax=ax)
        written.append(save_figure(fig, Path(out) / f"css_{name.replace('/', '_')}.png"))
        plt.close(fig)
    return written


def plot_loo(doc: dict, out: Path) -> list[Path]:
    """Per influence: a (layer x position) heatmap of the mean influence, bridge positions
    marked, and bridge vs anchor means per layer."""
    plt = agg_pyplot()
    written = []
    layers = doc["layers"]
    bridge_frac = np.array(doc["bridge_fraction"])  # (P,)
    for name, d in doc["influence"].items():
        grid = _arr(d["heatmap"]["mean"])  # (L, P)
        fig, (ax, bx) = plt.subplots(
            1, 2, figsize=(12, 1.5 + 0.4 * len(layers)), layout="constrained", width_ratios=[3, 1]
        )
        lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
        im = ax.imshow(
            grid, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest"
        )
        for p in np.flatnonzero(bridge_frac > 0.5):
            ax.axvline(p, color="k", lw=0.4, alpha=0.4)
        ax.set(
            yticks=range(len(layers)),
            yticklabels=layers,
            xlabel="left-out position",
            ylabel="layer",
            title=f"LOO {name} influence (lines: mostly bridges)",
        )
        fig.colorbar(im, ax=ax)
        for kind, style in (("bridge", "o-"), ("anchor", "s--")):
            m, s = _arr([d[kind]["mean"]])[0], _arr([d[kind]["sem"]])[0]
            bx.errorbar(m, layers, xerr=s, fmt=style, ms=3, label=f"{kind} (n={d[kind]['n'][0]})")
        bx.axvline(0, color="0.6", lw=0.8)
        bx.set(xlabel=f"mean {name} influence", ylabel="layer", title="bridge vs anchor")
        bx.invert_yaxis()
        bx.legend(fontsize=7)
        written.append(save_figure(fig, Path(out) / f"loo_{name}.png"))
        plt.close(fig)
    return written


def plot_lines(
    xs,
    series: dict[str, np.ndarray],
    layers,
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str,
    vline: float | None = None,
    logx: bool = False,
) -> Path:
    """Curves of several conditions (dict name -> (L, len(xs))) in one panel per layer."""
    plt = agg_pyplot()
    n = len(layers)
    fig, axes = plt.subplots(
        1, n, figsize=(3.2 * n, 3), layout="constrained", squeeze=False, sharey=True
    )
    for i, (ax, layer) in enumerate(zip(axes[0], layers, strict=True)):
        for name, ys in series.items():
            ax.plot(xs, np.asarray(ys, float)[i], "o-", ms=3, label=name)
        if vline is not None:
            ax.axvline(vline, color="0.5", ls=":")
        if logx:
            ax.set_xscale("log", base=2)
        ax.set(title=f"layer {layer}", xlabel=xlabel)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    out = save_figure(fig, path)
    plt.close(fig)
    return out
