"""Plots of one volume run. ``plot_records`` computes what is drawn (tested); ``render_all``
draws it with matplotlib on the Agg backend (no display needed).

Conventions every volume plot follows (also ``_analysis``): series sharing an x are offset
sideways by a few points so markers and error bars do not hide each other; a log V of -inf
(volume 0) is drawn as a downward triangle on the bottom edge of the axis, never left out; the
symlog x axis gets one tick per level actually present; legends carry a title.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from assay import save_figure

DODGE_POINTS = 4.0  # sideways offset between neighbouring series, in points (1/72 inch)
MARKER_SIZE = 5
HIST_BINS = 30


def plot_records(rows: list[dict]) -> dict:
    """The numbers behind every plot, from the volume table rows.

    Returns:
        by_landscape: {L: (model levels, log-volumes)}   log V vs model level, per landscape
        by_model: {label: (landscape levels, log-volumes, cutoff)}   log V vs landscape
        scatter: (log-volumes, test losses, test accuracies, landscapes)  finite log V only
        minus_inf: [(landscape, model)] rows whose log V is -inf (drawn on the axis edge)
        flagged: models whose own training loss is above tau
    """
    by_land: dict[int, tuple[list, list]] = {}
    by_model: dict[str, tuple[list, list, int | None]] = {}
    scatter: tuple[list, list, list, list] = ([], [], [], [])
    minus_inf, flagged = [], []
    for r in rows:
        v = r["log_volume"]
        by_land.setdefault(r["landscape"], ([], []))
        by_model.setdefault(r["model"], ([], [], r["cutoff"]))
        by_land[r["landscape"]][0].append(r["model_level"])
        by_land[r["landscape"]][1].append(v)
        by_model[r["model"]][0].append(r["landscape"])
        by_model[r["model"]][1].append(v)
        if v is not None and math.isfinite(v):
            for lst, val in zip(
                scatter, (v, r["test_loss"], r["test_accuracy"], r["landscape"]), strict=True
            ):
                lst.append(val)
        elif v == -math.inf:
            minus_inf.append((r["landscape"], r["model"]))
        if r.get("centre_above_tau") and r["model"] not in flagged:
            flagged.append(r["model"])
    return {
        "by_landscape": by_land,
        "by_model": by_model,
        "scatter": scatter,
        "minus_inf": minus_inf,
        "flagged": flagged,
    }


def shared_bins(radii: list[np.ndarray], n_bins: int = HIST_BINS) -> np.ndarray:
    """One set of histogram bin edges for every model, so their histograms compare."""
    pos = np.concatenate([r[np.isfinite(r) & (r > 0)] for r in radii] or [np.zeros(0)])
    if len(pos) == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    return np.histogram_bin_edges(pos, bins=n_bins)


def running_means(centre_losses: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(levels L = 0.., mean loss over base ++ pool[:L]): the cutoff loss curve of one model."""
    running = np.cumsum(centre_losses, dtype=np.float64) / np.arange(1, len(centre_losses) + 1)
    return np.arange(len(centre_losses) - base + 1), running[base - 1 :]


# ---------------------------------------------------------------------------------------------
# Drawing helpers shared with _analysis.


def dodge(ax, i: int, n: int):
    """A transform shifting series ``i`` of ``n`` sideways (works on any axis scale)."""
    from matplotlib.transforms import ScaledTranslation

    dx = (i - (n - 1) / 2) * DODGE_POINTS / 72
    return ax.transData + ScaledTranslation(dx, 0, ax.figure.dpi_scale_trans)


def level_axis(ax, levels, label: str) -> None:
    """Symlog x axis (levels grow geometrically) with one plain tick per level present."""
    from matplotlib.ticker import FixedLocator, NullLocator

    levels = sorted({int(v) for v in levels})
    positive = [v for v in levels if v > 0]
    ax.set_xscale("symlog", linthresh=max(1, min(positive)) if positive else 1)
    ax.xaxis.set_major_locator(FixedLocator(levels))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(levels, [str(v) for v in levels], fontsize=7)
    ax.margins(x=0.06)  # room for the sideways offsets of the outermost series
    ax.set_xlabel(label)


def draw_series(ax, xs, ys, i: int, n: int, label: str, yerr=None, color=None, partial=None):
    """One line of log V with markers; -inf values become triangles on the bottom edge.

    partial: per point, True where the value is a mean over only some seeds (the others -inf):
    drawn hollow, so a partial mean never looks like a full one.
    """
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    finite = np.isfinite(ys)
    tr = dodge(ax, i, n)
    kw = {"marker": "o", "ms": MARKER_SIZE, "mec": "black", "mew": 0.5, "capsize": 3}
    err = None if yerr is None else np.where(finite, np.asarray(yerr, float), np.nan)
    line = ax.errorbar(
        xs[finite],
        ys[finite],
        yerr=None if err is None else err[finite],
        transform=tr,
        label=label,
        color=color,
        **kw,
    )
    color = line.lines[0].get_color()
    part = finite & np.asarray(partial if partial is not None else np.zeros(len(ys)), bool)
    if part.any():
        ax.plot(
            xs[part],
            ys[part],
            "o",
            ms=MARKER_SIZE,
            mfc="white",
            mec=color,
            mew=1.2,
            transform=tr,
            zorder=4,
        )
    # a shifted transform keeps artists out of autoscaling: add the points (and bars) by hand
    span = np.zeros(int(finite.sum())) if err is None else np.nan_to_num(err[finite])
    pts = np.concatenate(
        [
            np.column_stack([xs[finite], ys[finite] - span]),
            np.column_stack([xs[finite], ys[finite] + span]),
        ]
    )
    if len(pts):
        ax.update_datalim(pts)
    # -inf points have an x but no y: their x still widens the axis, or they fall outside it
    ax.dataLim.update_from_data_xy(
        np.column_stack([xs, np.zeros(len(xs))]), ignore=False, updatex=True, updatey=False
    )
    ax.autoscale_view()
    return color, xs[~finite & (ys == -np.inf)], tr


def mark_minus_inf(ax, pending: list[tuple[np.ndarray, object, str]], partial: bool = False):
    """Draw -inf points (collected per series) on the bottom edge, once the y range is final;
    ``partial``: add the legend entry of the hollow partial-mean markers."""
    if partial:
        ax.plot(
            [],
            [],
            "o",
            color="grey",
            mfc="white",
            mec="black",
            label="mean of the finite seeds only (others -inf)",
        )
    if not any(len(x) for x, _, _ in pending):
        return
    if not np.isfinite(ax.dataLim.y0):  # nothing finite on this axis: a y range of its own
        ax.set_ylim(-1.0, 1.0)
    lo, hi = ax.get_ylim()
    edge = lo + 0.03 * (
        hi - lo
    )  # inside the axis; clip_on=False: the sideways shift never hides it
    for x, tr, color in pending:
        if len(x):
            ax.plot(
                x,
                np.full(len(x), edge),
                "v",
                ms=MARKER_SIZE + 2,
                color=color,
                mec="black",
                mew=0.5,
                transform=tr,
                zorder=5,
                clip_on=False,
            )
    ax.plot([], [], "v", color="grey", mec="black", label="log V = -inf (volume 0)")
    ax.set_ylim(lo, hi)


# ---------------------------------------------------------------------------------------------


def render_all(
    rows: list[dict],
    radii: dict[str, np.ndarray],
    out: Path,
    tau: float,
    *,
    histories: dict | None = None,
    centre_losses=None,
    base: int = 0,
    labels: list[str] | None = None,
    cutoffs=None,
) -> None:
    from assay.ml import agg_pyplot

    plt = agg_pyplot()
    rec = plot_records(rows)
    out = Path(out)
    note = (
        f"\n{len(rec['flagged'])} model(s) with train loss > tau: -inf" if rec["flagged"] else ""
    )

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    items, pending = sorted(rec["by_landscape"].items()), []
    for n, (L, (ks, vs)) in enumerate(items):
        color, inf_x, tr = draw_series(ax, ks, vs, n, len(items), f"{L}")
        pending.append((inf_x, tr, color))
    level_axis(ax, [r["model_level"] for r in rows], "model data level k (extra samples)")
    ax.set(ylabel="log volume", title=f"log-volume vs model level (tau={tau}){note}")
    mark_minus_inf(ax, pending)
    ax.legend(title="landscape L", fontsize=7, title_fontsize=8)
    save_figure(fig, out / "logvol_vs_model_level.png")

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    items, pending = list(rec["by_model"].items()), []
    for n, (label, (ls, vs, cut)) in enumerate(items):
        color, inf_x, tr = draw_series(ax, ls, vs, n, len(items), label)
        pending.append((inf_x, tr, color))
        if cut is not None:  # volume 0 (log V = -inf) from here on: mark where it happens
            ax.axvline(cut, color=color, ls=":", lw=1)
    level_axis(ax, [r["landscape"] for r in rows], "landscape level L (extra samples)")
    ax.set(ylabel="log volume", title="log-volume vs landscape (dotted: volume cutoff)")
    mark_minus_inf(ax, pending)
    ax.legend(title="model", fontsize=7, title_fontsize=8)
    save_figure(fig, out / "logvol_vs_landscape.png")

    v, tl, ta, ls = rec["scatter"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, y, name in ((axes[0], tl, "test loss"), (axes[1], ta, "test accuracy")):
        sc = ax.scatter(v, y, c=ls, cmap="viridis", s=25, edgecolors="black", linewidths=0.4)
        ax.set(xlabel="log volume", ylabel=name, title=f"{name} vs log-volume")
    fig.colorbar(sc, ax=axes, label="landscape L")
    if rec["minus_inf"]:
        fig.suptitle(
            f"{len(rec['minus_inf'])} (landscape, model) pairs with log V = -inf "
            "not placeable on this axis",
            fontsize=8,
        )
    save_figure(fig, out / "test_vs_logvol.png")

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    smallest = min(r["landscape"] for r in rows)
    keys = [k for k in radii if k.startswith(f"L{smallest}/")]
    bins = shared_bins([radii[k] for k in keys])
    for key in keys:
        r = radii[key][np.isfinite(radii[key])]
        zero = int((r == 0).sum())
        label = key.split("/", 1)[1] + (f" ({zero} zero)" if zero else "")
        ax.hist(r[r > 0], bins=bins, histtype="step", lw=1.2, label=label)
    ax.set(xlabel="radius r_j", ylabel="directions", title=f"radii in landscape L={smallest}")
    ax.legend(title="model", fontsize=7, title_fontsize=8)
    save_figure(fig, out / "radius_hist.png")

    if histories:
        _training_curves(plt, histories, out / "training_curves.png")
    if centre_losses is not None and labels:
        _cutoff_curves(plt, centre_losses, base, labels, cutoffs, tau, out / "loss_curves.png")


def _training_curves(plt, histories: dict, path: Path) -> None:
    """Per model: train/test loss (log scale, top) and accuracy (bottom) over epochs."""
    n = len(histories)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 1, 5), layout="constrained", squeeze=False)
    for j, (label, h) in enumerate(histories.items()):
        top, bottom = axes[0][j], axes[1][j]
        top.plot(h["epoch"], h["train_loss"], label="train")
        top.plot(h["test_epoch"], h["test_loss"], "--", label="test")
        top.set_yscale("log")
        top.set_title(label, fontsize=9)
        bottom.plot(h["epoch"], h["train_accuracy"], label="train")
        bottom.plot(h["test_epoch"], h["test_accuracy"], "--", label="test")
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_xlabel("epoch")
    axes[0][0].set_ylabel("loss")
    axes[1][0].set_ylabel("accuracy")
    axes[0][0].legend(title="split", fontsize=7, title_fontsize=8)
    save_figure(fig, path)


def _cutoff_curves(plt, centre_losses, base: int, labels, cutoffs, tau: float, path) -> None:
    """The published loss_curves.png: each model's loss over base ++ pool[:L] against L."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for i, label in enumerate(labels):
        ls, mean = running_means(np.asarray(centre_losses[i]), base)
        (line,) = ax.plot(ls, mean, lw=1.2, label=label)
        cut = None if cutoffs is None else cutoffs[i]
        if cut is not None:
            ax.plot([cut], [mean[cut]], "o", ms=MARKER_SIZE, color=line.get_color(), mec="black")
    ax.axhline(tau, color="black", ls="--", lw=1, label=f"tau = {tau}")
    ax.set_yscale("log")
    ax.set(
        xlabel="landscape level L (extra samples)",
        ylabel="training loss at the centre",
        title="volume cutoff: first L whose loss exceeds tau (dots)",
    )
    ax.legend(
        title="model", fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    save_figure(fig, path)
