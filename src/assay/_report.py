"""Rendering analysis results: plots, paged tables and a Markdown report of what
:mod:`._analysis` computed (the numbers are computed there; nothing is computed here)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._analysis import CI_OUTSIDE_UNIT, CONFIDENCE

if TYPE_CHECKING:
    import pandas as pd

MAX_TABLE_ROWS = 40  # rows printed in the terminal; the rest is in the exported CSV
MAX_REPORT_ROWS = 200  # rows of a report.md table (a 10,000-row Markdown table is unreadable)
MAX_LABELLED_GROUPS = 40  # beyond this a plot numbers its groups instead of naming them
TICK_LABEL_CHARS = 28  # a group label is wrapped onto lines of this many characters
TITLE_POINTS = 10


def table_page(
    frame: pd.DataFrame, what: str, full: Path | None, max_rows: int = MAX_TABLE_ROWS
) -> tuple[pd.DataFrame, str | None]:
    """The first ``max_rows`` rows of ``frame`` and, when rows were held back, the line that
    says how many and where all of them are (``full``, or how to write them)."""
    if len(frame) <= max_rows:
        return frame, None
    where = f"all of them are in {full}" if full else "pass --out DIR to write all of them"
    return frame.head(max_rows), (
        f"... {len(frame) - max_rows:,} more {what} row(s) not shown ({len(frame):,} in all); "
        f"{where}"
    )


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def summary_figure(metric: str, rows: pd.DataFrame) -> Any:
    """The figure of one metric: each group's mean and interval (rows: summary rows with
    ``n > 0``). Groups are named under the axis up to ``MAX_LABELLED_GROUPS``, numbered in
    summary order beyond; intervals the summary flags are drawn in red."""
    from ._engine._io import agg_pyplot

    plt = agg_pyplot()
    n = len(rows)
    width_in = min(14.0, max(5.0, 0.55 * n + 2)) if n <= MAX_LABELLED_GROUPS else 12.0
    fig, ax = plt.subplots(figsize=(width_in, 4.2))
    x = list(range(n))
    mean = rows["mean"].to_numpy(float)
    lo = (rows["mean"] - rows["ci_low"]).to_numpy(float)
    hi = (rows["ci_high"] - rows["mean"]).to_numpy(float)
    flagged = rows["note"].str.contains(CI_OUTSIDE_UNIT, regex=False).to_numpy() if n else []
    style = {"fmt": "o", "capsize": 3 if n <= MAX_LABELLED_GROUPS else 0, "ms": 4}
    ax.errorbar(x, mean, yerr=[lo, hi], **style)
    if any(flagged):
        ax.errorbar([i for i in x if flagged[i]], mean[flagged], yerr=[lo[flagged], hi[flagged]],
                    color="red", label="interval flagged: see the note in summary",
                    **style)  # fmt: skip
        ax.legend(fontsize=8)
    if n <= MAX_LABELLED_GROUPS:
        ax.set_xticks(x)
        ax.set_xticklabels([_wrap(str(g), TICK_LABEL_CHARS) for g in rows["group"]],
                           rotation=30, ha="right", fontsize=7)  # fmt: skip
    else:
        ax.set_xlabel(f"group (row order of summary, {n:,} groups)")
    ax.set_ylabel(_wrap(metric, 30), fontsize=9)
    methods = sorted(set(rows["ci_method"]) - {"none"}) if n else []
    title = (f"{metric}: mean and {int(CONFIDENCE * 100)}% CI over seeds"
             + (f" ({', '.join(methods)} intervals)" if methods else ""))  # fmt: skip
    _fit_title(fig, ax, title, width_in)
    return fig


def _fit_title(fig: Any, ax: Any, title: str, width_in: float) -> None:
    """Set ``title`` wrapped so that it lies inside the figure (measured, not guessed)."""
    chars = max(16, int(width_in * 72 / (TITLE_POINTS * 0.6)))  # ~0.6 em per character
    for _ in range(6):
        ax.set_title(_wrap(title, chars), fontsize=TITLE_POINTS)
        fig.tight_layout()
        fig.canvas.draw()
        box, got = fig.bbox, ax.title.get_window_extent()
        if box.x0 <= got.x0 and got.x1 <= box.x1 and got.y1 <= box.y1:
            return
        chars = max(8, int(chars * 0.8))


def plot_summary(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per metric: the group means with their confidence intervals."""
    from ._engine._io import save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, sub in summary.groupby("metric", sort=False):
        fig = summary_figure(str(metric), sub[sub["n"] > 0])
        paths.append(save_figure(fig, out_dir / f"{str(metric).replace('/', '_')}.png"))
    return paths


def family_plots(out_dir: Path, names: Sequence[str]) -> dict[str, list[Path]]:
    """The PNGs each family's analyze hook wrote under ``<out_dir>/<family>/``, by family."""
    found = {}
    for name in names:
        pngs = sorted((out_dir / name).rglob("*.png")) if (out_dir / name).is_dir() else []
        if pngs:
            found[name] = pngs
    return found


def markdown_table(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no extra dependency)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else float_format.format(v)
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _paged_table(frame: pd.DataFrame, what: str, full: str) -> list[str]:
    shown, more = table_page(frame, what, None, MAX_REPORT_ROWS)
    out = [markdown_table(shown)]
    if more:
        out += ["", f"_{len(frame) - len(shown):,} more {what} row(s) are in `{full}`._"]
    return out


def write_report(
    out_dir: Path,
    title: str,
    df: pd.DataFrame,
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    plots: Sequence[Path],
    family: Mapping[str, Sequence[Path]] | None = None,
    fmt: str = "csv",
) -> Path:
    """``report.md``: what ran, the per-group statistics, the comparisons, the plots and the
    plots of the families' own analyses (``family``: :func:`family_plots`)."""
    from ._engine._io import atomic_write_text
    from ._engine._provenance import git_state

    stages = ", ".join(sorted(set(df["stage"]))) if len(df) else "none"
    methods = set(summary["ci_method"]) if "ci_method" in summary else {"t"}
    bounded = sorted(methods - {"t", "none"})
    parts = [
        f"# {title}",
        "",
        f"{len(df)} finished run(s) of {stages}; groups are configs minus seeds; intervals are "
        f"{int(CONFIDENCE * 100)}% t-intervals over seeds"
        + (f", or {' / '.join(bounded)} intervals where a bounded metric's t-interval would "
           "leave its range" if bounded else "")
        + ". Rows with a note say what their numbers cannot tell.",
        "",
        "## Mean per group",
        "",
        *_paged_table(summary, "summary", f"summary.{fmt}"),
    ]  # fmt: skip
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
            *_paged_table(comparison[cols], "comparison", f"comparison.{fmt}"),
        ]
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in plots]
    for name, pngs in (family or {}).items():
        parts += ["", f"## {name} (the family's own analysis)", ""]
        parts += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in pngs]
    git = git_state()
    parts += ["", f"_Analysed at commit {git.get('commit') or 'unknown'}"
              f"{' (dirty)' if git.get('dirty') else ''}._", ""]  # fmt: skip
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
