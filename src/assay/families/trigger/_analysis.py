"""`assay analyze` hook: the selective-generalization table across seeds, per group of runs.

    assay analyze suites/trigger/proxies.yaml --root runs/trigger --out runs/trigger/analysis

The engine already reports mean and CI of every scalar result (``selective/<cat>_<split>/new``
...). This adds the table of the study: per group of trigger.finetune runs that differ only in
their seeds, one row per (category, ID/OOD) with the mean fraction of predictions following
the old map, the new map and neither, each with a 95% interval bounded to [0, 1]
(``assay.ml.mean_interval``). Rows a seed could not measure (empty file, unknown map) are
counted in ``n_missing``, never averaged in as 0.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from assay import atomic_path


def groups(records: list[Any]) -> dict[str, list[Any]]:
    """Runs grouped by the engine's rule (config columns that vary, seed fields excluded)."""
    from assay import group_columns, records_frame

    df = records_frame(records)
    cols = group_columns(df)
    out: dict[str, list[Any]] = {}
    for rec, (_, row) in zip(records, df.iterrows(), strict=True):
        label = ", ".join(f"{c.removeprefix('config.')}={row[c]}" for c in cols) or "all"
        out.setdefault(label, []).append(rec)
    return out


def aggregate(tables: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per (category, split) over seeds: mean and bounded 95% interval of old / new / neither."""
    from assay.ml import mean_interval

    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for table in tables:
        for row in table:
            cells.setdefault((row["category"], row["split"]), []).append(row)
    out = []
    for (cat, split), rows in cells.items():
        entry: dict[str, Any] = {"category": cat, "split": split, "n_seeds": len(rows)}
        used = [r for r in rows if r["n_used"]]
        entry["n_missing"] = len(rows) - len(used)
        notes = sorted({r["note"] for r in rows if r["note"]})
        for k in ("old", "new", "neither"):
            iv = mean_interval([r[k] for r in used], bounds=(0.0, 1.0)) if used else None
            entry[k] = iv.mean if iv else math.nan
            entry[f"{k}_lo"] = iv.lo if iv else math.nan
            entry[f"{k}_hi"] = iv.hi if iv else math.nan
            if iv and iv.no_variation and iv.n > 1:  # a zero-width interval estimates nothing
                notes.append(f"{k}: no variation ({iv.n} seeds at {iv.mean:.3f})")
        entry["note"] = "; ".join(notes)
        out.append(entry)
    return out


def analyze(records: list[Any], out_dir: Path | None) -> None:
    runs = [r for r in records if r.stage == "trigger.finetune" and r.dir is not None]
    for label, group in groups(runs).items():
        tables = [
            json.loads(r.artifact("selective_generalization.json").read_text()) for r in group
        ]
        agg = aggregate(tables)
        print(
            f"\ntrigger: {label} ({len(group)} seed(s)) - fraction of predictions, "
            "mean [95% interval]"
        )
        print(f"{'category':<22} {'split':<5} {'old':>20} {'new':>20} {'neither':>20}  note")
        for a in agg:
            cells = " ".join(
                f"{a[k]:6.3f} [{a[k + '_lo']:.2f},{a[k + '_hi']:.2f}]".rjust(20)
                for k in ("old", "new", "neither")
            )
            miss = f" ({a['n_missing']} seed(s) unmeasured)" if a["n_missing"] else ""
            print(f"{a['category']:<22} {a['split']:<5} {cells}  {a['note']}{miss}")
        if out_dir is not None and agg:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            slug = "".join(c if c.isalnum() or c in "=._-" else "_" for c in label)[:120]
            with (
                atomic_path(out / f"selective_{slug}.csv") as tmp,
                open(tmp, "w", newline="") as f,
            ):
                w = csv.DictWriter(f, fieldnames=list(agg[0]))
                w.writeheader()
                w.writerows(agg)
