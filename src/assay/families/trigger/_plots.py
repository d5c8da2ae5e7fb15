"""Figures: training curves, per-trigger accuracy (ID above OOD), patching heatmaps.

Each figure is drawn from a record computed elsewhere (the history, the final metrics, the
patching grid); empty files are left out of a panel and named in its title, never drawn as 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assay import save_figure


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Mapping[str, Any], path: Path) -> Path:
    """Train loss per epoch; eval loss and accuracy per test file over epochs."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    epochs = [e for e in history["epochs"] if e["train_loss"] is not None]
    axes[0].plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o")
    axes[0].set(xlabel="epoch", ylabel="train loss (answer tokens)", yscale="log")
    evald = [e for e in history["epochs"] if "eval" in e]
    names = sorted({n for e in evald for n, r in e["eval"].items() if r["n"]})
    for name in names:
        xs = [e["epoch"] for e in evald]
        axes[1].plot(xs, [e["eval"][name]["loss"] for e in evald], marker=".", label=name)
        axes[2].plot(xs, [e["eval"][name]["accuracy"] for e in evald], marker=".", label=name)
    axes[1].set(xlabel="epoch", ylabel="eval loss (answer tokens)")
    axes[2].set(xlabel="epoch", ylabel="logit accuracy", ylim=(-0.02, 1.02))
    axes[2].legend(fontsize=6, loc="best")
    return save_figure(fig, path)


def plot_per_trigger(final: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Histograms of per-trigger accuracy: in-distribution triggers above OOD ones."""
    plt = _plt()
    fig, axes = plt.subplots(2, 1, figsize=(7, 6), sharex=True, layout="constrained")
    for ax, split in zip(axes, ("ID", "OOD"), strict=True):
        accs = [a for name, r in final.items() if name.endswith(f"_{split}.jsonl")
                for a in r["per_trigger"].values()]  # fmt: skip
        empty = [n for n, r in final.items() if n.endswith(f"_{split}.jsonl") and not r["n"]]
        ax.hist(accs, bins=20, range=(0, 1), color="tab:blue" if split == "ID" else "tab:orange")
        note = f" ({len(empty)} empty file(s) left out)" if empty else ""
        ax.set(ylabel="triggers", title=f"{split} triggers: {len(accs)}{note}")
    axes[1].set(xlabel="accuracy per trigger")
    return save_figure(fig, path)


def plot_patching(grids: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One heatmap per pair group: layer x position, normalised logit-difference restored."""
    plt = _plt()
    fig, axes = plt.subplots(len(grids), 1, figsize=(12, 2.2 + 1.2 * len(grids) * 1.3),
                             layout="constrained", squeeze=False)  # fmt: skip
    for ax, g in zip(axes[:, 0], grids, strict=True):
        im = ax.imshow(g["score"], aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_yticks(range(len(g["layers"])), g["layers"], fontsize=7)
        ax.set_xticks(range(len(g["tokens"])), g["tokens"], fontsize=6, rotation=90)
        marks = [i for i, t in enumerate(g["is_trigger"]) if t]
        for i in marks:
            ax.axvline(i, color="k", lw=0.6, ls=":")
        ax.set_title(f"{g['label']}  ({g['n_pairs']} pairs; dotted: trigger position)",
                     fontsize=8)  # fmt: skip
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="restored / gap")
    return save_figure(fig, path)
