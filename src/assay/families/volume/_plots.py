"""Plots of one volume run. ``plot_records`` computes what is drawn (tested); ``render_all``
draws it with matplotlib (Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from assay import save_figure


def plot_records(rows: list[dict]) -> dict:
    """The numbers behind every plot, from the volume table rows.

    Returns:
        by_landscape: {L: (model levels, log-volumes)}   log V vs model level, per landscape
        by_model: {label: (landscape levels, log-volumes, cutoff)}   log V vs landscape
        scatter: (log-volumes, test losses, test accuracies, landscapes)  finite log V only
    """
    by_land: dict[int, tuple[list, list]] = {}
    by_model: dict[str, tuple[list, list, int | None]] = {}
    scatter: tuple[list, list, list, list] = ([], [], [], [])
    for r in rows:
        v = r["log_volume"]
        by_land.setdefault(r["landscape"], ([], []))
        by_model.setdefault(r["model"], ([], [], r["cutoff"]))
        by_land[r["landscape"]][0].append(r["model_level"])
        by_land[r["landscape"]][1].append(v)
        by_model[r["model"]][0].append(r["landscape"])
        by_model[r["model"]][1].append(v)
        if v is not None and math.isfinite(v):
            for lst, val in zip(scatter, (v, r["test_loss"], r["test_accuracy"], r["landscape"]),
                                strict=True):  # fmt: skip
                lst.append(val)
    return {"by_landscape": by_land, "by_model": by_model, "scatter": scatter}


def render_all(rows: list[dict], radii: dict[str, np.ndarray], out: Path, tau: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = plot_records(rows)
    out = Path(out)

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for L, (ks, vs) in sorted(rec["by_landscape"].items()):
        ax.plot(ks, _finite(vs), "o-", label=f"landscape L={L}")
    ax.set_xscale("symlog", linthresh=30)  # levels grow geometrically
    ax.set(xlabel="model data level k (extra samples)", ylabel="log volume",
           title=f"log-volume vs model level (tau={tau})")  # fmt: skip
    ax.legend(fontsize=7)
    _save(fig, out / "logvol_vs_model_level.png")

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for label, (ls, vs, cut) in rec["by_model"].items():
        (line,) = ax.plot(ls, _finite(vs), "o-", label=label)
        if cut is not None:  # volume 0 (log V = -inf) from here on: mark where it happens
            ax.axvline(cut, color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=30)
    ax.set(xlabel="landscape level L (extra samples)", ylabel="log volume",
           title="log-volume vs landscape (dotted: volume cutoff)")  # fmt: skip
    ax.legend(fontsize=7)
    _save(fig, out / "logvol_vs_landscape.png")

    v, tl, ta, ls = rec["scatter"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, y, name in ((axes[0], tl, "test loss"), (axes[1], ta, "test accuracy")):
        sc = ax.scatter(v, y, c=ls, cmap="viridis")
        ax.set(xlabel="log volume", ylabel=name, title=f"{name} vs log-volume")
    fig.colorbar(sc, ax=axes, label="landscape L")
    _save(fig, out / "test_vs_logvol.png")

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    smallest = min(r["landscape"] for r in rows)
    for key, r in radii.items():
        if key.startswith(f"L{smallest}/"):
            r = r[~np.isnan(r)]
            ax.hist(r[r > 0], bins=30, histtype="step", label=key.split("/", 1)[1])
    ax.set(xlabel="radius r_j", ylabel="directions", title=f"radii in landscape L={smallest}")
    ax.legend(fontsize=7)
    _save(fig, out / "radius_hist.png")


def _finite(vs: list) -> list:
    return [v if v is not None and math.isfinite(v) else np.nan for v in vs]


def _save(fig, path: Path) -> None:
    save_figure(fig, path)
