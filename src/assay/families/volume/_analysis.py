"""`assay analyze` hook: log-volumes across seeds, per (landscape, model), with 95% CIs.

The engine's own analysis already gives mean +- CI of every scalar result (``log_volume/L0/k30``
...). This adds the views of the paper: a landscape x model table and the two line plots with
error bars, one set per group of runs that differ only in their seeds.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from assay import atomic_path, is_replicate, save_figure


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _flat(v, key + ".") if isinstance(v, dict) else {key: json.dumps(v)}
    return out


def _groups(records) -> dict[str, list]:
    """Runs that differ only in replicate fields (``seed``, ``data_seed``, ``perturbation_seed``:
    the engine's one rule, :func:`assay.is_replicate`), labelled by what does differ."""
    flats = [
        {k: v for k, v in _flat(r.config).items() if not is_replicate(k.split(".")[-1])}
        for r in records
    ]
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if len({f.get(k) for f in flats}) > 1]
    groups: dict[str, list] = {}
    for r, f in zip(records, flats, strict=True):
        label = ", ".join(f"{k}={f.get(k)}" for k in varying) or "all"
        groups.setdefault(label, []).append(r)
    return groups


def aggregate(tables: list[list[dict]]) -> list[dict]:
    """Per (landscape, model) over seeds: mean and 95% t-CI half-width of log V, mean test loss.

    -inf log-volumes (volume 0, or a model above tau) cannot enter a mean: the mean is over the
    finite seeds and ``n_minus_inf`` says how many were left out (-inf when no seed is finite).

    Args:
        tables: one volume table (rows of table.csv) per seed.
    """
    from assay.ml import mean_interval

    cells: dict[tuple, list[dict]] = {}
    for table in tables:
        for row in table:
            cells.setdefault((int(row["landscape"]), row["model"]), []).append(row)
    out = []
    for (land, model), rows in sorted(
        cells.items(), key=lambda kv: (kv[0][0], int(kv[1][0]["model_level"]), kv[0][1])
    ):
        v = np.array([float(r["log_volume"]) for r in rows])
        iv = mean_interval(v)  # t-interval over the finite values (log V is unbounded)
        n = iv.n
        half = (iv.hi - iv.mean) if n > 1 else math.nan
        cuts = [float(r["cutoff"]) for r in rows if r["cutoff"] not in ("", "None")]
        flagged = sum(str(r.get("centre_above_tau", "False")) == "True" for r in rows)
        out.append(
            {
                "landscape": land,
                "model": model,
                "model_level": int(rows[0]["model_level"]),
                "n_seeds": len(rows),
                "n_minus_inf": int(np.sum(v == -np.inf)),
                "n_nan": int(np.isnan(v).sum()),  # no radius at all: counted, never a number
                "no_variation": bool(iv.no_variation and n > 1),  # every finite seed equal
                "partial": bool(0 < np.isfinite(v).sum() < len(rows)),  # some seeds left out
                "n_above_tau": int(flagged),
                # no finite seed: -inf when some seed is -inf (volume 0), NaN when all are NaN
                "log_volume_mean": iv.mean
                if n
                else (-math.inf if (v == -np.inf).any() else math.nan),
                "log_volume_ci95": float(half),
                "test_loss_mean": float(np.mean([float(r["test_loss"]) for r in rows])),
                "test_accuracy_mean": float(np.mean([float(r["test_accuracy"]) for r in rows])),
                "cutoff_mean": float(np.mean(cuts)) if cuts else math.nan,
            }
        )
    return out


def analyze(records, out_dir: Path | None) -> None:
    vols = [r for r in records if r.stage == "volume.volume" and r.dir is not None]
    aggs: dict[str, list[dict]] = {}
    for label, group in _groups(vols).items():
        tables = []
        for r in group:
            with open(r.artifact("table.csv"), newline="") as f:
                tables.append(list(csv.DictReader(f)))
        agg = aggs[label] = aggregate(tables)
        print(
            f"\nvolume: {label} ({len(group)} seed(s)) - log-volume mean +- 95% CI over the "
            "finite seeds; -inf: seeds with volume 0 left out of the mean"
        )
        print(
            f"{'landscape':>9} {'model':>12} {'log V':>9} {'+-':>7} {'-inf':>7} {'test loss':>9} "
            f"{'test acc':>8} {'cutoff':>7}"
        )
        for a in agg:  # the cutoff mean as computed (2.5 stays 2.5), -inf as "k of n" seeds
            ci = "no var" if a["no_variation"] else f"{a['log_volume_ci95']:.0f}"
            print(
                f"{a['landscape']:>9} {a['model']:>12} {a['log_volume_mean']:>9.0f} "
                f"{ci:>7} {a['n_minus_inf']:>3}/{a['n_seeds']:<3} "
                f"{a['test_loss_mean']:>9.4f} {a['test_accuracy_mean']:>8.3f} "
                f"{a['cutoff_mean']:>7.4g}"
            )
        above = sum(a["n_above_tau"] for a in agg)
        if above:
            print(
                f"WARNING: {above} (seed, landscape, model) entries come from models whose "
                "training loss is above tau (log V -inf, see each run's summary.json)"
            )
        if out_dir is not None:
            _write(agg, Path(out_dir), label)
    if out_dir is not None and len(aggs) > 1:
        _write_groups(aggs, Path(out_dir))


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "=._-" else "_" for c in label)


PANELS = (("model_level", "landscape", "landscape L"), ("landscape", "model", "model"))


def series_records(agg: list[dict]) -> list[list[dict]]:
    """What ``_draw`` shows, per panel (log V vs model level, vs landscape) and series.

    Each series: its legend label, x, mean log V (-inf where every seed is -inf), CI half-width,
    ``minus_inf_x`` (drawn as triangles on the axis edge), ``partial`` (a mean over the finite
    seeds while others are -inf: drawn hollow) and, per x, how many of its seeds are -inf. The
    label counts seeds per point ("k200 (2 of 2 seeds -inf)"), never summed over points.
    """
    panels = []
    for key, series, _ in PANELS:
        out = []
        for g in dict.fromkeys(a[series] for a in agg):
            rows = [a for a in agg if a[series] == g]
            ys = [a["log_volume_mean"] for a in rows]
            counts = [(a["n_minus_inf"], a["n_seeds"]) for a in rows]
            out.append(
                {
                    "label": _series_label(g, [a[key] for a in rows], counts, key),
                    "x": [a[key] for a in rows],
                    "y": ys,
                    "yerr": [a["log_volume_ci95"] for a in rows],
                    "minus_inf_x": [
                        a[key] for a, y in zip(rows, ys, strict=True) if y == -math.inf
                    ],
                    "partial": [0 < a["n_minus_inf"] < a["n_seeds"] for a in rows],
                    "n_minus_inf": [c[0] for c in counts],
                    "n_seeds": [c[1] for c in counts],
                }
            )
        panels.append(out)
    return panels


def _series_label(name, xs: list, counts: list[tuple[int, int]], key: str) -> str:
    hit = [(x, c) for x, c in zip(xs, counts, strict=True) if c[0]]
    if not hit:
        return f"{name}"
    if len({c for _, c in hit}) == 1 and len(hit) == len(xs):  # the same at every point
        k, n = hit[0][1]
        return f"{name} ({k} of {n} seeds -inf)"
    at = "L" if key == "landscape" else "k"
    return f"{name} (seeds -inf: " + ", ".join(f"{at}{x} {k}/{n}" for x, (k, n) in hit) + ")"


def _draw(axes, agg: list[dict], label: str) -> None:
    """log V vs model level (axes[0]) and vs landscape (axes[1]), error bars offset."""
    from ._plots import draw_series, level_axis, mark_minus_inf

    for ax, (key, _, name), series in zip(axes, PANELS, series_records(agg), strict=True):
        pending = []
        for n, s in enumerate(series):
            color, inf_x, tr = draw_series(
                ax,
                s["x"],
                s["y"],
                n,
                len(series),
                s["label"],
                yerr=s["yerr"],
                partial=s["partial"],
            )
            pending.append((inf_x, tr, color))
        level_axis(
            ax,
            [a[key] for a in agg],
            "model data level k" if key == "model_level" else "landscape level L",
        )
        mark_minus_inf(ax, pending, partial=any(any(s["partial"]) for s in series))
        ax.legend(title=name, fontsize=7, title_fontsize=8)
    axes[0].set(ylabel="log volume (mean, 95% CI)", title=f"log V vs model level\n{label}")
    axes[1].set(ylabel="log volume", title="log V vs landscape")


def _write(agg: list[dict], out: Path, label: str) -> None:
    from assay.ml import agg_pyplot

    plt = agg_pyplot()
    out.mkdir(parents=True, exist_ok=True)
    slug = _slug(label)
    with atomic_path(out / f"volume_table_{slug}.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(agg[0]))
        w.writeheader()
        w.writerows(agg)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    _draw(axes, agg, label)
    save_figure(fig, out / f"volume_{slug}.png")


def _write_groups(aggs: dict[str, list[dict]], out: Path) -> None:
    """Every group side by side in one figure, shared y (e.g. SAM beside AdamW)."""
    from assay.ml import agg_pyplot

    plt = agg_pyplot()
    fig, axes = plt.subplots(
        2,
        len(aggs),
        figsize=(5.5 * len(aggs), 8),
        layout="constrained",
        sharey="row",
        squeeze=False,
    )
    for j, (label, agg) in enumerate(aggs.items()):
        _draw([axes[0][j], axes[1][j]], agg, label)
    save_figure(fig, out / "volume_groups.png")
