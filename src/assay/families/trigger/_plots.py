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


SPLIT_STYLE = {"ID": "-", "OOD": "--"}  # in-distribution triggers solid, held-out dashed


def file_label(name: str) -> tuple[str, str]:
    """``test_<category>_<ID|OOD>.jsonl`` -> ``(category, split)``; any other file name is its
    own category with split ``""``."""
    stem = name.removesuffix(".jsonl")
    for split in SPLIT_STYLE:
        if stem.endswith(f"_{split}"):
            return stem.removesuffix(f"_{split}").removeprefix("test_"), split
    return stem, ""


def _legend_name(name: str) -> str:
    category, split = file_label(name)
    return f"{category} ({split})" if split else category


def plot_curves(history: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """Train loss per epoch; eval loss and accuracy per test file over epochs. One colour per
    category, solid for its ID triggers and dashed for its OOD ones; ``title`` names the run."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    epochs = [e for e in history["epochs"] if e["train_loss"] is not None]
    axes[0].plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o")
    axes[0].set(
        xlabel="epoch", ylabel="train loss (answer tokens)", yscale="log", title="training"
    )
    evald = [e for e in history["epochs"] if "eval" in e]
    names = sorted({n for e in evald for n, r in e["eval"].items() if r["n"]}, key=file_label)
    categories = list(dict.fromkeys(file_label(n)[0] for n in names))
    colors = plt.get_cmap("tab10")
    for name in names:
        category, split = file_label(name)
        style = {
            "color": colors(categories.index(category) % 10),
            "marker": ".",
            "ls": SPLIT_STYLE.get(split, ":"),
            "label": _legend_name(name),
        }
        xs = [e["epoch"] for e in evald if name in e["eval"]]
        axes[1].plot(xs, [e["eval"][name]["loss"] for e in evald if name in e["eval"]], **style)
        axes[2].plot(
            xs, [e["eval"][name]["accuracy"] for e in evald if name in e["eval"]], **style
        )
    axes[1].set(xlabel="epoch", ylabel="eval loss (answer tokens)", title="evaluation: loss")
    axes[2].set(
        xlabel="epoch", ylabel="logit accuracy", ylim=(-0.02, 1.02), title="evaluation: accuracy"
    )
    if names:
        fig.legend(
            *axes[2].get_legend_handles_labels(),
            loc="outside right upper",
            fontsize=8,
            title="test file: category (triggers)",
            title_fontsize=8,
        )
    fig.suptitle(title or "trigger training curves", fontsize=11)
    return save_figure(fig, path)


BINS = 10  # accuracy bins 0.1 wide


def per_trigger_counts(final: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What :func:`plot_per_trigger` draws: per split (ID, OOD) and category, how many triggers
    fall in each accuracy bin (``edges``; the last bin holds 1.0), and the empty files."""
    edges = [i / BINS for i in range(BINS + 1)]
    order = sorted(final, key=file_label)
    out: dict[str, Any] = {"edges": edges, "splits": {}}
    for split in ("ID", "OOD"):
        counts, empty = {}, []
        for name in order:
            category, s = file_label(name)
            if s != split:
                continue
            if not final[name]["n"]:
                empty.append(category)
                continue
            bins = [0] * BINS
            for acc in final[name]["per_trigger"].values():
                bins[min(int(acc * BINS), BINS - 1)] += 1
            counts[category] = bins
        out["splits"][split] = {"counts": counts, "empty": empty}
    return out


def plot_per_trigger(final: Mapping[str, Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """How many triggers reach each accuracy, one bar per category side by side in each bin:
    in-distribution triggers above OOD ones. Counts are whole triggers (an integer axis);
    empty files are left out and named in the panel's title."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    data = per_trigger_counts(final)
    categories = list(dict.fromkeys(c for d in data["splits"].values() for c in d["counts"]))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, layout="constrained")
    width = 1 / BINS / max(1, len(categories)) * 0.9
    for ax, (split, d) in zip(axes, data["splits"].items(), strict=True):
        for category, bins in d["counts"].items():
            k = categories.index(category)
            x = [data["edges"][i] + (k + 0.5) * width + 0.005 for i in range(BINS)]
            ax.bar(x, bins, width=width, color=colors(k % 10), label=f"{category} ({sum(bins)})")
        if d["counts"]:
            ax.legend(fontsize=8, title="category (triggers)", title_fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of triggers: whole
        total = sum(sum(b) for b in d["counts"].values())
        note = f"; empty, left out: {', '.join(d['empty'])}" if d["empty"] else ""
        ax.set(ylabel="triggers", title=f"{split} triggers: {total}{note}")
    axes[1].set(xlabel="accuracy per trigger", xlim=(0, 1), xticks=data["edges"])
    fig.suptitle(title or "per-trigger accuracy", fontsize=11)
    return save_figure(fig, path)


def plot_patching(grids: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One heatmap per pair group: layer x position, normalised logit-difference restored."""
    plt = _plt()
    fig, axes = plt.subplots(
        len(grids),
        1,
        figsize=(12, 2.2 + 1.2 * len(grids) * 1.3),
        layout="constrained",
        squeeze=False,
    )
    for ax, g in zip(axes[:, 0], grids, strict=True):
        im = ax.imshow(g["score"], aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_yticks(range(len(g["layers"])), g["layers"], fontsize=7)
        ax.set_xticks(range(len(g["tokens"])), g["tokens"], fontsize=6, rotation=90)
        marks = [i for i, t in enumerate(g["is_trigger"]) if t]
        for i in marks:
            ax.axvline(i, color="k", lw=0.6, ls=":")
        ax.set_title(f"{g['label']}  ({g['n_pairs']} pairs; dotted: trigger position)", fontsize=8)
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="restored / gap")
    return save_figure(fig, path)
