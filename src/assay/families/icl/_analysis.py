"""`assay analyze` for icl runs: the per-layer numbers of each experiment, over seeds.

    assay analyze suites/icl/smoke.yaml --root runs/icl --out out/
    -> out/icl/energy_vs_length.{csv,png}, css.{csv,png}, loo_bridge_anchor.{csv,png},
       p_nbr.{csv,png}

Runs are grouped by the config fields that vary across them (``assay.group_columns``: seeds
excluded, so the runs of one group are its seeds). Each cell is the mean over the group's
runs of each run's own number (itself a mean over its contexts), with a 95% interval over
the runs (``assay.mean_interval``: t for unbounded metrics, logit-t inside [0, 1] for the
neighbour probability; no interval from one run). A run whose number is NaN is left out of
its cell's mean, counted in ``n_nonfinite`` and warned about. The numbers come from
``tables`` (pure, tested); ``render`` draws them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assay import (
    RunStatus,
    agg_pyplot,
    atomic_path,
    group_columns,
    mean_interval,
    records_frame,
    save_figure,
)
from assay.core._guard import read_text_in_root, real_in_root

ENERGY_METRICS = ("dirichlet_energy_standardised", "dirichlet_energy_vs_shuffled")
LOO_INFLUENCES = ("ratio", "energy", "dirichlet", "cross_distance", "within_distance")


def _groups(records: Sequence[Any], stage: str) -> list[tuple[str, list[Any]]]:
    """(label, finished runs) per group of ``stage``'s runs; the label names what varies."""
    runs = [r for r in records if r.stage == stage and r.status is RunStatus.DONE and r.dir]
    if not runs:
        return []
    df = records_frame(runs)
    cols = group_columns(df)
    by_id = {r.id: r for r in runs}
    out: dict[str, list[Any]] = {}
    for _, row in df.iterrows():
        label = ", ".join(f"{c.removeprefix('config.')}={row[c]}" for c in cols) or "all runs"
        out.setdefault(label, []).append(by_id[row["id"]])
    return list(out.items())


def _cell(values: list[float], bounds: tuple[float, float] | None = None, **keys) -> dict:
    iv = mean_interval([np.nan if v is None else v for v in values], bounds=bounds)
    return {
        **keys,
        "mean": iv.mean,
        "lo": iv.lo,
        "hi": iv.hi,
        "n_runs": iv.n,
        "interval": iv.method,
        "n_nonfinite": iv.n_nonfinite,
        "no_variation": iv.no_variation,
    }


def _json(run: Any, name: str) -> dict:
    # runs live at <root>/<id>: never read through a link leading out of that root
    return json.loads(read_text_in_root(Path(run.dir).parent, Path(run.dir) / "artifacts" / name))


def geometry_rows(records: Sequence[Any]) -> list[dict]:
    """Park curves: (group, metric, layer, context length) -> mean over runs of the context mean."""
    rows = []
    for label, runs in _groups(records, "icl.geometry"):
        cells: dict[tuple, list] = {}
        for run in runs:
            doc = _json(run, "curves.json")
            for m in ENERGY_METRICS:
                grid = doc["metrics"][m]["mean"]  # [layer][length]
                for i, layer in enumerate(doc["layers"]):
                    for j, length in enumerate(doc["context_lengths"]):
                        cells.setdefault((m, layer, length), []).append(grid[i][j])
        rows += [
            _cell(v, group=label, metric=m, layer=layer, context_length=length)
            for (m, layer, length), v in sorted(cells.items())
        ]
    return rows


def css_rows(records: Sequence[Any]) -> list[dict]:
    """CSS per (group, Φ, layer): the mean over positions of CSS_t at the longest length."""
    rows = []
    for label, runs in _groups(records, "icl.geometry"):
        cells: dict[tuple, list] = {}
        for run in runs:
            css = Path(run.dir) / "artifacts" / "css.npz"
            with np.load(real_in_root(Path(run.dir).parent, css, verb="read")) as z:
                layers, lengths = z["layers"].tolist(), z["context_lengths"].tolist()
                for key in (k for k in z.files if k not in ("layers", "context_lengths")):
                    grid = z[key][-1, :, : lengths[-1]]  # (L, T) at the longest length
                    for i, layer in enumerate(layers):
                        row = grid[i][np.isfinite(grid[i])]
                        value = float(row.mean()) if len(row) else np.nan
                        cells.setdefault((key.replace("__", "/"), layer), []).append(value)
        rows += [
            _cell(v, group=label, phi=phi, layer=layer, context_length=lengths[-1])
            for (phi, layer), v in sorted(cells.items())
        ]
    return rows


def loo_rows(records: Sequence[Any]) -> list[dict]:
    """LOO influence per (group, influence, layer, bridge | anchor), over runs."""
    rows = []
    for label, runs in _groups(records, "icl.loo"):
        cells: dict[tuple, list] = {}
        for run in runs:
            doc = _json(run, "loo.json")
            for name in LOO_INFLUENCES:
                for kind in ("bridge", "anchor"):
                    means = doc["influence"][name][kind]["mean"]
                    for i, layer in enumerate(doc["layers"]):
                        cells.setdefault((name, layer, kind), []).append(means[i])
        rows += [
            _cell(v, group=label, influence=name, layer=layer, kind=kind)
            for (name, layer, kind), v in cells.items()
        ]
    return rows


def nbr_rows(records: Sequence[Any]) -> list[dict]:
    """Neighbour probability p_nbr(n) of ``icl.train`` per (group, graph, n words), in [0, 1]."""
    rows = []
    for label, runs in _groups(records, "icl.train"):
        cells: dict[tuple, list] = {}
        for run in runs:
            for key, value in (run.results or {}).items():
                if key.startswith("p_nbr/"):
                    _, graph, n = key.split("/")
                    cells.setdefault((graph, int(n.removeprefix("n"))), []).append(value)
        rows += [
            _cell(v, (0.0, 1.0), group=label, graph=graph, n_words=n)
            for (graph, n), v in sorted(cells.items())
        ]
    return rows


def tables(records: Sequence[Any]) -> dict[str, list[dict]]:
    """Every table of the icl analysis that has runs (name -> rows)."""
    out = {
        "energy_vs_length": geometry_rows(records),
        "css": css_rows(records),
        "loo_bridge_anchor": loo_rows(records),
        "p_nbr": nbr_rows(records),
    }
    return {k: v for k, v in out.items() if v}


def _fmt(row: dict) -> str:
    bad = f" ({row['n_nonfinite']} nan)" if row["n_nonfinite"] else ""
    if not np.isfinite(row["mean"]):
        return "nan" + bad
    if row["no_variation"] and row["n_runs"] > 1:  # identical runs: nothing was estimated
        return f"{row['mean']:.3g} (no variation){bad}"
    if np.isfinite(row["lo"]):
        return f"{row['mean']:.3g} [{row['lo']:.3g}, {row['hi']:.3g}]{bad}"
    return f"{row['mean']:.3g}{bad}"


def summary_lines(tabs: dict[str, list[dict]]) -> list[str]:
    """The key numbers as text: one line per (group, quantity, layer)."""
    lines = []

    def block(name, rows, what, key, col):
        for g in dict.fromkeys(r["group"] for r in rows):
            for q in dict.fromkeys(r[what] for r in rows if r["group"] == g):
                sub = [r for r in rows if r["group"] == g and r[what] == q]
                n = max(r["n_runs"] for r in sub)
                lines.append(f"icl {name} [{g}] {q} (n = {n} run(s)):")
                for k in dict.fromkeys(r[key] for r in sub):
                    cells = "  ".join(
                        f"{r[col]}: {_fmt(r)}" if col != key else _fmt(r)
                        for r in sub
                        if r[key] == k
                    )
                    lines.append(
                        f"  {key} {k}: {cells}" if col == key else f"  {key} {k}  {cells}"
                    )

    if "energy_vs_length" in tabs:
        block(
            "energy vs context length",
            tabs["energy_vs_length"],
            "metric",
            "layer",
            "context_length",
        )
    if "css" in tabs:
        block("CSS (mean over positions, longest context)", tabs["css"], "phi", "layer", "layer")
    if "loo_bridge_anchor" in tabs:
        block("LOO influence", tabs["loo_bridge_anchor"], "influence", "layer", "kind")
    if "p_nbr" in tabs:
        block(
            "neighbour probability vs words of context", tabs["p_nbr"], "graph", "graph", "n_words"
        )
    bad = [r for rows in tabs.values() for r in rows if r["n_nonfinite"]]
    if bad:
        lines.append(
            f"WARNING: {len(bad)} cell(s) left out NaN/inf values of some runs "
            "(column n_nonfinite of the CSV files)"
        )
    return lines


def render(tabs: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    """One CSV and one PNG per table under ``out_dir``."""
    import pandas as pd

    plt = agg_pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tabs.items():
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        written.append(out_dir / f"{name}.csv")
    specs = {  # table -> (panel column, line column, x column, x label, log x)
        "energy_vs_length": ("metric", "layer", "context_length", "words of context", True),
        "css": ("phi", None, "layer", "layer", False),
        "loo_bridge_anchor": ("influence", "kind", "layer", "layer", False),
        "p_nbr": ("graph", None, "n_words", "words of context", True),
    }
    for name, rows in tabs.items():
        panel, line, x, xlabel, logx = specs[name]
        groups = list(dict.fromkeys(r["group"] for r in rows))
        panels = list(dict.fromkeys(r[panel] for r in rows))
        fig, axes = plt.subplots(
            len(groups),
            len(panels),
            squeeze=False,
            figsize=(3.6 * len(panels), 2.8 * len(groups) + 0.4),
        )
        for gi, g in enumerate(groups):
            for pi, p in enumerate(panels):
                ax = axes[gi][pi]
                sub = [r for r in rows if r["group"] == g and r[panel] == p]
                for key in dict.fromkeys(r[line] for r in sub) if line else [None]:
                    pts = [r for r in sub if line is None or r[line] == key]
                    xs = np.array([r[x] for r in pts], float)
                    ys = np.array([r["mean"] for r in pts], float)
                    err = np.array([[r["mean"] - r["lo"], r["hi"] - r["mean"]] for r in pts]).T
                    ax.errorbar(
                        xs,
                        ys,
                        yerr=np.nan_to_num(err),
                        marker="o",
                        ms=3,
                        capsize=2,
                        label=None if key is None else f"{line} {key}",
                    )
                if logx:
                    ax.set_xscale("log", base=2)
                n_bad = sum(r["n_nonfinite"] for r in sub)
                ax.set_title(f"{p}" + (f" ({n_bad} NaN left out)" if n_bad else ""), fontsize=9)
                ax.set_xlabel(xlabel, fontsize=8)
                if line:
                    ax.legend(fontsize=6)
            axes[gi][0].set_ylabel(g, fontsize=7)
        n = max(r["n_runs"] for r in rows)
        fig.suptitle(
            f"icl {name}: mean over runs (seeds), 95% interval when n > 1 (n <= {n})", fontsize=9
        )
        fig.tight_layout()
        written.append(save_figure(fig, out_dir / f"{name}.png"))
    return written


def analyze(records: list[Any], out_dir: Path | None) -> None:
    """The ``Family(analyze=...)`` hook: print the key numbers; write files when ``out_dir``."""
    tabs = tables(records)
    if not tabs:
        return
    for line in summary_lines(tabs):
        print(line)
    if out_dir is not None:
        written = render(tabs, Path(out_dir))
        print(f"icl: wrote {', '.join(p.name for p in written)} in {out_dir}")
