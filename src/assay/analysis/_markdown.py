"""Rendering analysis results: plots, paged tables and a Markdown report of what
:mod:`._frames` computed (the numbers are computed there; nothing is computed here)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._frames import CI_OUTSIDE_UNIT, CONFIDENCE, NO_VARIATION

if TYPE_CHECKING:
    import pandas as pd

MAX_TABLE_ROWS = 40  # rows printed in the terminal; the rest is in the exported CSV
MAX_REPORT_ROWS = 200  # rows of a report.md table (a 10,000-row Markdown table is unreadable)
MAX_LABELLED_GROUPS = 40  # beyond this a plot numbers its groups instead of naming them
TICK_LABEL_CHARS = 28  # a group label is wrapped onto lines of this many characters
MAX_FIGURE_IN = 20.0  # a summary figure widens up to this so that its group names never overlap
TITLE_POINTS = 10
TERMINAL_CELL_CHARS = 60  # a terminal cell longer than this is cut (the files hold all of it)
EDGE = {"-inf": (0.03, "v"), "+inf": (0.97, "^"), "nan": (0.97, "x")}  # axes y, marker


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


def summary_plot_data(metric: str, rows: pd.DataFrame) -> dict[str, Any]:
    """The numbers :func:`summary_figure` draws for one metric (rows: its summary rows).

    Returns ``{"metric", "groups", "mean", "lo", "hi", "flagged", "edges", "partial", "flags",
    "no_variation", "methods"}``: per group its mean and interval (None where no value is
    finite); ``edges``: ``[{"x", "kind", "count"}]``, the non-finite values drawn as marked
    points at the axis edge (``-inf`` at the bottom, ``+inf`` and ``nan`` at the top) so a
    group whose every seed is ``-inf`` is drawn, not left blank; ``partial``: the groups whose
    mean leaves some non-finite values out (ringed); ``flags``: ``{x: text}`` of the flags the
    runs declared (``"_flags"``), written next to the point.
    """

    def num(v: Any) -> float | None:
        return None if v is None or not math.isfinite(float(v)) else float(v)

    records = rows.to_dict("records")
    edges = []
    for i, r in enumerate(records):
        for kind, col in (("-inf", "n_neginf"), ("+inf", "n_posinf"), ("nan", "n_nan")):
            if int(r.get(col, 0) or 0):
                edges.append({"x": i, "kind": kind, "count": int(r[col])})
    return {
        "metric": metric,
        "groups": [str(r["group"]) for r in records],
        "mean": [num(r["mean"]) if r["n"] else None for r in records],
        "lo": [num(r["ci_low"]) for r in records],
        "hi": [num(r["ci_high"]) for r in records],
        "flagged": [CI_OUTSIDE_UNIT in str(r["note"]) for r in records],
        "edges": edges,
        "partial": [i for i, r in enumerate(records) if r["n"] and r["n_nonfinite"]],
        "flags": {i: str(r["flags"]) for i, r in enumerate(records) if r.get("flags")},
        "no_variation": [i for i, r in enumerate(records) if NO_VARIATION in str(r["note"])],
        "methods": sorted({str(r["ci_method"]) for r in records} - {"none"}),
    }


def summary_figure(metric: str, rows: pd.DataFrame) -> Any:
    """The figure of one metric: each group's mean and interval, its non-finite values as
    marked points at the axis edge and its flags as text (:func:`summary_plot_data`). Groups
    are named under the axis up to ``MAX_LABELLED_GROUPS``, numbered in summary order beyond;
    intervals the summary flags are drawn in red."""
    from ..core._io import agg_pyplot

    data = summary_plot_data(metric, rows)
    plt = agg_pyplot()
    n = len(data["groups"])
    width_in = min(14.0, max(5.0, 0.55 * n + 2)) if n <= MAX_LABELLED_GROUPS else 12.0
    fig, ax = plt.subplots(figsize=(width_in, 4.2))
    style = {"fmt": "o", "capsize": 3 if n <= MAX_LABELLED_GROUPS else 0, "ms": 4}
    drawn = [i for i in range(n) if data["mean"][i] is not None]
    for red in (False, True):
        idx = [i for i in drawn if data["flagged"][i] == red]
        if not idx:
            continue
        mean = [data["mean"][i] for i in idx]
        # no interval (one value): a bare point; the mean always lies inside its interval
        lo = [
            0.0 if data["lo"][i] is None else max(0.0, data["mean"][i] - data["lo"][i])
            for i in idx
        ]
        hi = [
            0.0 if data["hi"][i] is None else max(0.0, data["hi"][i] - data["mean"][i])
            for i in idx
        ]
        extra = (
            {"color": "red", "label": "interval flagged: see the note in summary"} if red else {}
        )
        ax.errorbar(idx, mean, yerr=[lo, hi], **style, **extra)
    if data["partial"]:
        ax.scatter(
            data["partial"],
            [data["mean"][i] for i in data["partial"]],
            s=90,
            facecolors="none",
            edgecolors="darkorange",
            zorder=3,
            label="mean of the finite values (some left out)",
        )
    if not drawn:
        ax.set_ylim(0, 1)  # nothing finite: an empty axis whose edges carry the markers
        ax.set_yticks([])
    ax.set_xlim(-0.6, max(n, 1) - 0.4)
    edge_transform = ax.get_xaxis_transform()  # x in data, y in axes: the edges stay put
    for e in data["edges"]:
        y, marker = EDGE[e["kind"]]
        ax.scatter(
            [e["x"]],
            [y],
            marker=marker,
            s=50,
            color="purple",
            transform=edge_transform,
            clip_on=False,
            zorder=4,
        )
        ax.annotate(
            f"{e['count']} {e['kind']}",
            (e["x"], y),
            xycoords=edge_transform,
            xytext=(5, -3),
            textcoords="offset points",
            fontsize=7,
            color="purple",
        )
    for i, text in data["flags"].items():
        y = data["mean"][i] if data["mean"][i] is not None else 0.5
        coords = "data" if data["mean"][i] is not None else edge_transform
        ax.annotate(
            _wrap(text, 24),
            (i, y),
            xycoords=coords,
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=7,
            color="dimgray",
        )
    if any(data["flagged"]) or data["partial"]:
        ax.legend(fontsize=8)
    ax.set_ylabel(_wrap(metric, 30), fontsize=9)
    if n <= MAX_LABELLED_GROUPS:
        width_in = _group_ticks(fig, ax, [str(g) for g in data["groups"]], width_in)
    else:
        ax.set_xlabel(f"group (row order of summary, {n:,} groups)")
    methods = data["methods"]
    title = (
        f"{metric}: mean and {int(CONFIDENCE * 100)}% CI over seeds"
        + (f" ({', '.join(methods)} intervals)" if methods else "")
        + ("; ▼/▲ non-finite values" if data["edges"] else "")
    )
    _fit_title(fig, ax, title, width_in)
    return fig


def _wrap_key(text: str, width: int) -> str:
    """``a.b.c=value`` on lines of at most ``width`` characters, broken after dots where it
    can (``data.overrides.`` / ``negative_emotions.is_proxy=True``), inside a word only
    where a piece alone is longer than a line."""
    lines: list[str] = []
    for piece in text.replace(".", ".\0").split("\0"):
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines += _wrap(piece, width).split("\n")
    return "\n".join(lines)


def _group_ticks(fig: Any, ax: Any, groups: list[str], width_in: float) -> float:
    """Name the groups under the axis so that no two names overlap (measured after drawing,
    as a ``variants:`` sweep's long ``key=value, key=value`` names would): one ``key=value``
    per line, horizontal when they fit, else turned 30 or 90 degrees; when even upright names
    overlap the figure widens, up to ``MAX_FIGURE_IN``. Returns the figure's width."""
    labels = [
        "\n".join(_wrap_key(part, TICK_LABEL_CHARS) for part in g.split(", ")) for g in groups
    ]
    ax.set_xticks(range(len(groups)))
    while True:
        for rotation, ha in ((0, "center"), (30, "right"), (90, "center")):
            ticks = ax.set_xticklabels(labels, rotation=rotation, ha=ha, fontsize=7)
            fig.tight_layout()
            fig.canvas.draw()
            boxes = [t.get_window_extent() for t in ticks]
            if not any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:], strict=False)):
                return width_in
        if width_in >= MAX_FIGURE_IN:
            return width_in  # upright and still touching: 40 groups of 7 pt lines fit in 20 in
        width_in = min(MAX_FIGURE_IN, width_in * 1.3)
        fig.set_size_inches(width_in, fig.get_size_inches()[1])


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
    """One PNG per metric: the group means with their confidence intervals, and beside it
    ``<metric>.json``, the data record it draws (:func:`summary_plot_data`)."""
    from ..core._io import atomic_write_text, dumps, save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, sub in summary.groupby("metric", sort=False):
        name = str(metric).replace("/", "_")
        record = summary_plot_data(str(metric), sub)
        atomic_write_text(out_dir / f"{name}.json", dumps(record, indent=1) + "\n")
        fig = summary_figure(str(metric), sub)
        paths.append(save_figure(fig, out_dir / f"{name}.png"))
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


def terminal_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the terminal shows it: the columns a reader scans (the counts by kind,
    bounds and flags only when some row has them), long cells cut; the files hold all."""
    cols = ["group", "metric", "n", "mean", "ci_low", "ci_high"]
    if "n_nonfinite" in summary and summary["n_nonfinite"].any():
        cols.append("n_nonfinite")
    if "flags" in summary and summary["flags"].astype(bool).any():
        cols.append("flags")
    cols.append("note")
    return _cut(summary[[c for c in cols if c in summary]])


# The comparison's columns as tables show them (the terminal, report.md), in this order.
COMPARISON_COLUMNS = (
    "metric",
    "group",
    "baseline_mean",
    "mean",
    "diff",
    "n",
    "p_welch_holm",
    "n_pairs",
    "p_paired_holm",
)


def terminal_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison as the terminal shows it (the baseline as a column only when it differs
    between rows: one baseline per variant)."""
    cols = list(COMPARISON_COLUMNS)
    if comparison["baseline"].nunique() > 1:
        cols.insert(2, "baseline")
    if "note" in comparison and comparison["note"].astype(bool).any():
        cols.append("note")
    return _cut(comparison[cols])


def _cut(frame: pd.DataFrame) -> pd.DataFrame:
    def cut(v: Any) -> Any:
        if isinstance(v, str) and len(v) > TERMINAL_CELL_CHARS:
            return v[: TERMINAL_CELL_CHARS - 1] + "…"
        return v

    return frame.apply(lambda col: col.map(cut) if col.dtype == object else col)


def nonfinite_lines(summary: pd.DataFrame) -> list[str]:
    """One line per (group, metric) with non-finite values or flags: what the means leave out."""
    lines = []
    for r in summary.to_dict("records"):
        kinds = [
            f"{r[c]} {k}"
            for c, k in (("n_neginf", "-inf"), ("n_posinf", "+inf"), ("n_nan", "nan"))
            if r.get(c)
        ]
        if kinds or r.get("flags"):
            what = f"{', '.join(kinds)} of {r['n'] + r['n_nonfinite']} run(s)" if kinds else ""
            flags = f"flags: {r['flags']}" if r.get("flags") else ""
            lines.append(
                f"- {r['metric']} / {r['group']}: " + "; ".join(t for t in (what, flags) if t)
            )
    return lines


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
    from ..core._io import atomic_write_text
    from ..core._provenance import git_state

    stages = ", ".join(sorted(set(df["stage"]))) if len(df) else "none"
    methods = set(summary["ci_method"]) if "ci_method" in summary else {"t"}
    shown = [c for c in summary.columns if c not in ("n_nan", "n_posinf", "n_neginf")]
    parts = [
        f"# {title}",
        "",
        f"{len(df)} finished run(s) of {stages}; groups are configs minus seeds; intervals are "
        f"{int(CONFIDENCE * 100)}% t-intervals over seeds"
        + (
            ", on the logit scale for metrics bounded on both sides (column `bounds`)"
            if "logit-t" in methods
            else ""
        )
        + ". Rows with a note say what their numbers cannot tell; groups whose values do not "
        f'vary say "{NO_VARIATION}" (a zero-width interval, no test).',
        "",
        "## Mean per group",
        "",
        *_paged_table(summary[shown], "summary", f"summary.{fmt}"),
    ]
    left_out = nonfinite_lines(summary)
    if left_out:
        parts += [
            "",
            "## Non-finite values and flags",
            "",
            "Left out of the means above (counted in `n_nonfinite`; drawn as marked "
            "points at the plots' edges), and the flags the runs declared:",
            "",
            *left_out[:MAX_REPORT_ROWS],
        ]
        if len(left_out) > MAX_REPORT_ROWS:
            parts.append(f"- ... {len(left_out) - MAX_REPORT_ROWS} more in `summary.{fmt}`")
    if not comparison.empty:
        cols = [*COMPARISON_COLUMNS, "note"]
        baselines = list(dict.fromkeys(comparison["baseline"]))
        if len(baselines) > 1:
            cols.insert(2, "baseline")
        heading = (
            f"## Against the baseline ({baselines[0]})"
            if len(baselines) == 1
            else f"## Against the baseline of each variant ({len(baselines)} baselines)"
        )
        parts += [
            "",
            heading,
            "",
            "Welch's t-test and, over shared seeds, a paired t-test; p-values Holm-corrected "
            f"over the groups of each metric; empty where there is nothing to test "
            f'("{NO_VARIATION}" in the note, or fewer than 2 runs per group).',
            "",
            *_paged_table(
                comparison[[c for c in cols if c in comparison]], "comparison", f"comparison.{fmt}"
            ),
        ]
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in plots]
    for name, pngs in (family or {}).items():
        parts += ["", f"## {name} (the family's own analysis)", ""]
        parts += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in pngs]
    git = git_state()
    parts += [
        "",
        f"_Analysed at commit {git.get('commit') or 'unknown'}"
        f"{' (dirty)' if git.get('dirty') else ''}._",
        "",
    ]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
