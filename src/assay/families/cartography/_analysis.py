"""`assay analyze` hook: what each strategy changed, its scores against the baseline, data maps.

    assay analyze suites/cartography/rotten_tomatoes_smoke.yaml --root runs/cart --out out/
    -> out/cartography/strategies.csv   per strategy: kept counts, eps, w, scores (mean, 95% CI),
                                        paired difference from the baseline on matched seeds
       out/cartography/datamap_<dataset>_<run>.png, regions.csv

Groups are the engine's (config minus seed: ``assay.summarize`` / ``assay.compare_groups``); the
baseline is the group whose runs set no strategy. This module adds only the cartography view.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from assay import (
    atomic_path,
    compare_groups,
    get_stage,
    group_columns,
    records_frame,
    run_id,
    summarize,
)

STRATEGY_FIELDS = ("filter", "cluster_filter", "smoothing", "weighting")
CHANGED = (
    "n_train_kept",
    "kept_fraction",
    "epsilon_mean",
    "epsilon_max",
    "weight_mean",
    "weight_min",
    "weight_max",
    "clip_binds_fraction",
)
SCORES = ("eval_accuracy", "eval_macro_f1", "eval_exact_match", "eval_f1")


def strategy_table(df) -> tuple[Any, str | None]:
    """One row per group: what it changed (means over seeds) and its scores with CIs."""
    import pandas as pd

    df = df.copy()
    for col in df.columns:  # a strategy a run does not set is "-", not NaN (labels stay text)
        if col.startswith("config.") and df[col].isna().any():
            df[col] = df[col].astype(object).where(df[col].notna(), "-")
    summary = summarize(df)
    groups = group_columns(df)
    base_rows = df
    for field in STRATEGY_FIELDS:
        col = f"config.{field}"
        for c in [c for c in df.columns if c == col or c.startswith(col + ".")]:
            base_rows = base_rows[base_rows[c].isin(["-", None])]
    baseline = None
    if len(base_rows) and groups:
        base = base_rows.iloc[0]
        baseline = {c: str(base[c]) for c in groups}
    scores = [f"results.{k}" for k in SCORES if f"results.{k}" in df.columns]
    comparison = pd.DataFrame()
    if groups and scores:
        with warnings.catch_warnings():
            # scipy warns when a group's seeds give identical scores; its p is then NaN, shown
            warnings.simplefilter("ignore", RuntimeWarning)
            comparison = compare_groups(df, baseline, scores)
    rows = []
    for label in dict.fromkeys(summary["group"]):
        s = summary[summary["group"] == label].set_index("metric")
        row: dict[str, Any] = {"strategy": short_label(label), "group": label}
        for key in CHANGED:
            if key in s.index:
                row[key] = s.loc[key, "mean"]
        for key in SCORES:
            if key in s.index:
                row[f"{key}_mean"] = s.loc[key, "mean"]
                row[f"{key}_ci_low"] = s.loc[key, "ci_low"]
                row[f"{key}_ci_high"] = s.loc[key, "ci_high"]
                row["n_seeds"] = int(s.loc[key, "n"])
                if not comparison.empty:
                    c = comparison[(comparison["group"] == label) & (comparison["metric"] == key)]
                    if len(c):
                        row[f"{key}_diff"] = float(c["diff"].iloc[0])
                        row[f"{key}_p_paired_holm"] = float(c["p_paired_holm"].iloc[0])
                        row["n_pairs"] = int(c["n_pairs"].iloc[0])
        rows.append(row)
    base_label = comparison["baseline"].iloc[0] if not comparison.empty else None
    return pd.DataFrame(rows), base_label


def short_label(label: str) -> str:
    """A group label without the strategy fields a group leaves unset ("-")."""
    parts = [p for p in str(label).split(", ") if not p.endswith("=-")]
    return ", ".join(parts) or "baseline"


def dynamics_runs(records) -> dict[str, Path]:
    """The upstream dynamics run directories the strategy runs name: id -> dir."""
    from .stages import DynamicsConfig

    version = get_stage("cartography.dynamics").version
    found = {}
    for r in records:
        cfg = (r.config or {}).get("dynamics")
        if r.stage != "cartography.train" or not cfg or r.dir is None:
            continue
        rid = run_id("cartography.dynamics", version, DynamicsConfig.model_validate(cfg))
        path = Path(r.dir).parent / rid
        if (path / "artifacts" / "dynamics.npz").is_file():
            found[rid] = path
    return found


def _print(table, base_label: str | None) -> None:
    cols = [
        c
        for c in ("n_train_kept", "epsilon_mean", "weight_mean", "clip_binds_fraction")
        if c in table.columns
    ]
    score = next((s for s in SCORES if f"{s}_mean" in table.columns), None)
    base = short_label(base_label) if base_label else "none found"
    print(f"\ncartography: what each strategy changed (baseline: {base})")
    head = f"{'strategy':<60} " + " ".join(f"{c[:12]:>12}" for c in cols)
    if score:
        head += f" {score:>16} {'95% CI':>15} {'diff (paired)':>14}"
    print(head)
    for _, row in table.iterrows():
        line = f"{str(row['strategy'])[:60]:<60} " + " ".join(
            f"{row.get(c, math.nan):>12.3f}" for c in cols
        )
        if score:
            lo, hi = row.get(f"{score}_ci_low", math.nan), row.get(f"{score}_ci_high", math.nan)
            line += (
                f" {row[f'{score}_mean']:>16.4f} [{lo:6.3f},{hi:6.3f}]"
                f" {row.get(f'{score}_diff', math.nan):>+14.4f}"
            )
        print(line)


def analyze(records: list[Any], out_dir: Path | None) -> None:
    """The ``Family(analyze=...)`` hook."""
    from ._dynamics import Dynamics
    from ._metrics import compute_metrics, region_counts
    from ._plots import save_datamap

    mine = [r for r in records if r.stage == "cartography.train"]
    if not mine:
        return
    df = records_frame(mine)
    table, base_label = strategy_table(df)
    _print(table, base_label)
    maps = dynamics_runs(mine)
    region_rows = []
    for rid, path in maps.items():
        dyn = Dynamics.load(path / "artifacts" / "dynamics.npz")
        m = compute_metrics(dyn.gold_prob, dyn.correct)
        counts = region_counts(m)
        region_rows += [
            {"dynamics_run": rid, "scheme": scheme, "region": region, "n": n}
            for scheme, c in counts.items()
            for region, n in c.items()
        ]
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            save_datamap(m, out / f"datamap_{rid}.png", f"{rid}: {len(dyn.ids)} examples")
    print(
        f"cartography: {len(maps)} data map(s); median-split regions: "
        + "; ".join(
            f"{r['dynamics_run']}: {r['region']}={r['n']}"
            for r in region_rows
            if r["scheme"] == "median"
        )
    )
    if out_dir is not None:
        import pandas as pd

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "strategies.csv") as tmp:
            table.to_csv(tmp, index=False)
        with atomic_path(out / "regions.csv") as tmp:
            pd.DataFrame(region_rows).to_csv(tmp, index=False)
        print(
            f"cartography: wrote strategies.csv, regions.csv and {len(maps)} data map(s) in {out}"
        )
