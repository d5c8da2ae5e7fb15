"""Rendering analysis results: plots and a Markdown report of what :mod:`._analysis` computed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._analysis import CONFIDENCE

if TYPE_CHECKING:
    import pandas as pd


def plot_summary(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per metric: the group means with 95% confidence intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, sub in summary.groupby("metric", sort=False):
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(sub) + 2), 3.5))
        x = range(len(sub))
        err = [sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]]
        ax.errorbar(list(x), sub["mean"], yerr=err, fmt="o", capsize=4)
        ax.set_xticks(list(x))
        ax.set_xticklabels(sub["group"], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: mean and {int(CONFIDENCE * 100)}% CI over seeds")
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{metric.replace('/', '_')}.png"))
    return paths


def markdown_table(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no extra dependency)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else float_format.format(v)
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    title: str,
    df: pd.DataFrame,
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    plots: Sequence[Path],
) -> Path:
    """``report.md``: what ran, the per-group statistics, the comparisons and the plots."""
    from ._io import atomic_write_text
    from ._provenance import git_state

    stages = ", ".join(sorted(set(df["stage"]))) if len(df) else "none"
    parts = [
        f"# {title}",
        "",
        f"{len(df)} finished run(s) of {stages}; groups are configs minus seeds; intervals are "
        f"{int(CONFIDENCE * 100)}% t-intervals over seeds.",
        "",
        "## Mean per group",
        "",
        markdown_table(summary),
    ]
    if not comparison.empty:
        cols = ["metric", "group", "baseline_mean", "mean", "diff", "n", "p_welch_holm",
                "n_pairs", "p_paired_holm"]  # fmt: skip
        parts += [
            "",
            f"## Against the baseline ({comparison['baseline'].iloc[0]})",
            "",
            "Welch's t-test and, over shared seeds, a paired t-test; p-values Holm-corrected "
            "over the groups of each metric.",
            "",
            markdown_table(comparison[cols]),
        ]
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({p.relative_to(out_dir)})" for p in plots]
    git = git_state()
    parts += ["", f"_Analysed at commit {git.get('commit') or 'unknown'}"
              f"{' (dirty)' if git.get('dirty') else ''}._", ""]  # fmt: skip
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
