"""`assay analyze` for patching runs: merge shards, rank units by effect, draw two plots.

    assay analyze suites/patching/cartpole_dqn_sharded.yaml --root runs/cartpole --out out/
    -> out/patching/ranking.csv, heatmap.png (effect per layer x unit), top_units.png

The numbers come from ``_results`` (pure, tested); this module only renders them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from assay import atomic_path, save_figure
from assay.core._guard import read_text_in_root

from ._results import (
    DEFAULT_RANK_METRIC,
    effect_grid,
    flat_rows,
    format_table,
    merge_shards,
    rank,
    resolve_metric,
    top_bars,
)


def records_of(runs: Iterable[Any]) -> list[dict[str, Any]]:
    """All per-definition records of finished patching.run runs (RunRecord-like objects)."""
    out = []
    for r in runs:
        if getattr(r, "stage", None) != "patching.run" or getattr(r, "dir", None) is None:
            continue
        path = Path(r.dir) / "artifacts" / "records.jsonl"
        if path.exists():  # never through a link leading out of the run root
            text = read_text_in_root(Path(r.dir).parent, path)
            out += [json.loads(line) for line in text.splitlines() if line]
    return merge_shards(out)


def render(
    records: Sequence[dict[str, Any]],
    out_dir: Path,
    metric: str = DEFAULT_RANK_METRIC,
    top: int = 20,
) -> list[Path]:
    """ranking.csv, heatmap.png and top_units.png under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    metric = resolve_metric(records, metric)
    written = []
    ranked = rank(records, metric)
    with atomic_path(out_dir / "ranking.csv") as tmp:
        pd.DataFrame(flat_rows(ranked)).to_csv(tmp, index=False)
    written.append(out_dir / "ranking.csv")

    directions = sorted({r["direction"] for r in records})
    for direction in directions:
        suffix = "" if len(directions) == 1 else f"_{direction}"
        modules, grid = effect_grid(records, metric, direction)
        if grid.size:
            fig, ax = plt.subplots(
                figsize=(min(16, 2 + grid.shape[1] * 0.12), 1 + 0.45 * len(modules))
            )
            image = ax.imshow(np.abs(grid), aspect="auto", interpolation="nearest", cmap="viridis")
            ax.set_yticks(range(len(modules)), modules, fontsize=8)
            ax.set_xlabel("unit")
            ax.set_title(f"|mean {metric}| per unit ({direction})")
            fig.colorbar(image, ax=ax, label=f"|mean {metric}| over inputs")
            fig.tight_layout()
            written.append(save_figure(fig, out_dir / f"heatmap{suffix}.png"))
        bars = top_bars(records, metric, direction=direction, top=top)
        if bars:
            fig, ax = plt.subplots(figsize=(7, 0.3 * len(bars) + 1.2))
            half = [b["half_width"] for b in bars][::-1]
            ax.barh(
                [b["label"] for b in bars][::-1],
                [b["mean"] for b in bars][::-1],
                xerr=[0.0 if math.isnan(h) else h for h in half],
                capsize=2,
                ecolor="black",
            )
            n = sorted({b["n"] for b in bars})
            n_text = str(n[0]) if len(n) == 1 else f"{n[0]}-{n[-1]}"
            bar_note = (
                "ratio of means: no error bar"
                if metric == "normalised_score"
                else f"mean ± 95% t-interval over n = {n_text} inputs"
            )
            ax.set_xlabel(f"{metric} ({bar_note})")
            ax.set_title(f"top {len(bars)} definitions ({direction})")
            ax.tick_params(axis="y", labelsize=7)
            fig.tight_layout()
            written.append(save_figure(fig, out_dir / f"top_units{suffix}.png"))
    return written


def analyze(records: list[Any], out_dir: Path | None) -> None:
    """The ``Family(analyze=...)`` hook: print the ranking; write files when ``out_dir`` is set."""
    rows = records_of(records)
    if not rows:
        return
    print(f"patching: {len(rows)} definition records; top units by mean |{DEFAULT_RANK_METRIC}|")
    print(format_table(rank(rows, top=15)))
    if out_dir is not None:
        written = render(rows, Path(out_dir))
        print(f"patching: wrote {', '.join(p.name for p in written)} in {out_dir}")
