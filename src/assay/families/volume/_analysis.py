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

from assay import atomic_path, save_figure


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _flat(v, key + ".") if isinstance(v, dict) else {key: json.dumps(v)}
    return out


def _groups(records) -> dict[str, list]:
    """Runs that differ only in fields named ``seed``, labelled by what does differ."""
    flats = [{k: v for k, v in _flat(r.config).items() if k.split(".")[-1] != "seed"}
             for r in records]  # fmt: skip
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if len({f.get(k) for f in flats}) > 1]
    groups: dict[str, list] = {}
    for r, f in zip(records, flats, strict=True):
        label = ", ".join(f"{k}={f.get(k)}" for k in varying) or "all"
        groups.setdefault(label, []).append(r)
    return groups


def aggregate(tables: list[list[dict]]) -> list[dict]:
    """Per (landscape, model) over seeds: mean and 95% t-CI half-width of log V, mean test loss.

    Args:
        tables: one volume table (rows of table.csv) per seed.
    """
    from scipy import stats

    cells: dict[tuple, list[dict]] = {}
    for table in tables:
        for row in table:
            cells.setdefault((int(row["landscape"]), row["model"]), []).append(row)
    out = []
    for (land, model), rows in sorted(cells.items(), key=lambda kv: (kv[0][0], int(
            kv[1][0]["model_level"]), kv[0][1])):  # fmt: skip
        v = np.array([float(r["log_volume"]) for r in rows])
        finite = v[np.isfinite(v)]
        n = len(finite)
        half = (
            (stats.t.ppf(0.975, n - 1) * finite.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        )
        cuts = [float(r["cutoff"]) for r in rows if r["cutoff"] not in ("", "None")]
        out.append({
            "landscape": land, "model": model, "model_level": int(rows[0]["model_level"]),
            "n_seeds": len(rows), "log_volume_mean": float(finite.mean()) if n else -math.inf,
            "log_volume_ci95": float(half),
            "test_loss_mean": float(np.mean([float(r["test_loss"]) for r in rows])),
            "test_accuracy_mean": float(np.mean([float(r["test_accuracy"]) for r in rows])),
            "cutoff_mean": float(np.mean(cuts)) if cuts else math.nan,
        })  # fmt: skip
    return out


def analyze(records, out_dir: Path | None) -> None:
    vols = [r for r in records if r.stage == "volume.volume" and r.dir is not None]
    for label, group in _groups(vols).items():
        tables = []
        for r in group:
            with open(r.artifact("table.csv"), newline="") as f:
                tables.append(list(csv.DictReader(f)))
        agg = aggregate(tables)
        print(f"\nvolume: {label} ({len(group)} seed(s)) - log-volume mean +- 95% CI")
        print(f"{'landscape':>9} {'model':>12} {'log V':>9} {'+-':>7} {'test loss':>9} "
              f"{'test acc':>8} {'cutoff':>7}")  # fmt: skip
        for a in agg:
            print(f"{a['landscape']:>9} {a['model']:>12} {a['log_volume_mean']:>9.0f} "
                  f"{a['log_volume_ci95']:>7.0f} {a['test_loss_mean']:>9.4f} "
                  f"{a['test_accuracy_mean']:>8.3f} {a['cutoff_mean']:>7.0f}")  # fmt: skip
        if out_dir is not None:
            _write(agg, Path(out_dir), label)


def _write(agg: list[dict], out: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() or c in "=._-" else "_" for c in label)
    with atomic_path(out / f"volume_table_{slug}.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(agg[0]))
        w.writeheader()
        w.writerows(agg)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for L in sorted({a["landscape"] for a in agg}):
        rows = [a for a in agg if a["landscape"] == L]
        axes[0].errorbar([a["model_level"] for a in rows], [a["log_volume_mean"] for a in rows],
                         yerr=[a["log_volume_ci95"] for a in rows], marker="o", capsize=3,
                         label=f"L={L}")  # fmt: skip
    axes[0].set(xlabel="model data level k", ylabel="log volume (mean, 95% CI)",
                title=f"log V vs model level\n{label}")  # fmt: skip
    for model in dict.fromkeys(a["model"] for a in agg):
        rows = [a for a in agg if a["model"] == model]
        axes[1].errorbar([a["landscape"] for a in rows], [a["log_volume_mean"] for a in rows],
                         yerr=[a["log_volume_ci95"] for a in rows], marker="o", capsize=3,
                         label=model)  # fmt: skip
    axes[1].set(xlabel="landscape level L", ylabel="log volume", title="log V vs landscape")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=30)  # levels grow geometrically (0, 30, 80, ..., 780)
        ax.legend(fontsize=7)
    save_figure(fig, out / f"volume_{slug}.png")
