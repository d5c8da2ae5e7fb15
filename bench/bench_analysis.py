"""`assay analyze` on 10,000 recorded runs, at 10 groups and at 10,000 groups.

    python bench/bench_analysis.py            # 10,000 runs (the old per-group baseline: ~2 min)
    python bench/bench_analysis.py --quick    # 2,000 runs

Writes two run stores (10 groups x 1,000 seeds; 10,000 one-seed groups) straight through the
engine's SQL store, then times, in this one process run:
1. ``load_runs`` (store -> DataFrame);
2. ``summarize`` and ``compare_groups`` beside the per-group implementation they replaced
   (re-implemented below: one boolean scan of every run per group), with the ratio;
3. printing the summary table whole (rich) beside the paged table (``table_page``);
4. the whole ``assay analyze --stage example.fit`` command line, in a subprocess.
The target: analysis and the command line stay under 3 s whatever the number of groups.
"""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

import assay
from assay.analysis import compare_groups, load_runs, summarize
from assay.analysis._markdown import table_page
from assay.core._io import dumps
from assay.store import resolve_store
from assay.store._sql import runs_table

METRICS = ["results.test_mse", "results.test_accuracy"]  # both implementations get the same
# The old compare at 10,000 groups takes ~20 minutes (every group scans every run, and costs a
# merge): it is timed on this many groups, each still scanning all runs, and scaled up.
OLD_GROUPS_TIMED = 300


def write_runs(root: Path, n_groups: int, n_seeds: int) -> None:
    """``n_groups * n_seeds`` finished example.fit runs, inserted in one transaction."""
    rng = np.random.default_rng(0)
    now = time.time()
    rows = []
    for g in range(n_groups):
        for seed in range(n_seeds):
            config = {
                "degree": 3,
                "l2": 1e-6 * (g + 1),
                "seed": seed,
                "data": {"n_train": 30, "seed": seed},
            }
            results = {
                "test_mse": float(rng.normal(1 + g % 7, 0.1)),
                "test_accuracy": float(rng.uniform(0.5, 1.0)),
                "load_s": 0.01,
                "threads": 1,
            }
            rows.append(
                {
                    "id": f"example_fit_{g:06d}{seed:06d}",
                    "stage": "example.fit",
                    "status": "done",
                    "config": dumps(config),
                    "results": dumps(results),
                    "error": None,
                    "attempts": 1,
                    "owner": None,
                    "heartbeat": None,
                    "created": now,
                    "started": now,
                    "ended": now + 0.01,
                    "dir": f"example_fit_{g:06d}{seed:06d}",
                }
            )
    store = resolve_store(None, root)
    with store.engine.begin() as conn:  # one transaction: 10,000 commits would take minutes
        conn.execute(sa.insert(runs_table), rows)
    store.close()


# -- the per-group implementation that summarize / compare_groups replaced -------------------


def old_labels(df: pd.DataFrame) -> pd.Series:
    groups = [
        c
        for c in df.columns
        if c.startswith("config.")
        and c.rsplit(".", 1)[-1] != "seed"
        and df[c].astype(str).nunique(dropna=False) > 1
    ]
    parts = [df[c].astype(str).radd(c.removeprefix("config.") + "=") for c in groups]
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label


def old_summarize(df: pd.DataFrame, metrics: list[str], limit: int | None = None) -> pd.DataFrame:
    labels = old_labels(df)
    rows = []
    for label in list(dict.fromkeys(labels))[:limit]:
        sub = df[labels == label]  # the scan of every run, once per group
        for metric in metrics:
            values = pd.to_numeric(sub[metric], errors="coerce").dropna().to_numpy(float)
            values = values[np.isfinite(values)]
            n = len(values)
            mean = float(values.mean())
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
            rows.append(
                {
                    "group": label,
                    "metric": metric,
                    "n": n,
                    "mean": mean,
                    "std": std,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                }
            )
    return pd.DataFrame(rows)


def old_compare(df: pd.DataFrame, metrics: list[str], limit: int | None = None) -> pd.DataFrame:
    labels = old_labels(df)
    order = list(dict.fromkeys(labels))
    rows = []
    for metric in metrics:
        base = df[labels == order[0]]
        for label in order[1 : None if limit is None else limit + 1]:
            other = df[labels == label]
            a = pd.to_numeric(base[metric], errors="coerce").to_numpy(float)
            b = pd.to_numeric(other[metric], errors="coerce").to_numpy(float)
            p_welch = (
                float(stats.ttest_ind(b, a, equal_var=False).pvalue)
                if len(a) > 1 and len(b) > 1
                else math.nan
            )
            joined = pd.merge(
                base[["config.seed", metric]],
                other[["config.seed", metric]],
                on="config.seed",
                suffixes=("_a", "_b"),
            ).dropna()
            p_paired = (
                float(stats.ttest_rel(joined[f"{metric}_b"], joined[f"{metric}_a"]).pvalue)
                if len(joined) > 1
                else math.nan
            )
            rows.append(
                {"metric": metric, "group": label, "p_welch": p_welch, "p_paired": p_paired}
            )
    return pd.DataFrame(rows)


# -- timing ---------------------------------------------------------------------------------


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def print_table(frame: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="summary")
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    Console(file=io.StringIO(), width=160).print(table)


def bench(root: Path, n_groups: int, n_seeds: int) -> dict[str, float]:
    write_runs(root, n_groups, n_seeds)
    df, t_load = timed(load_runs, root, stage="example.fit")
    assert len(df) == n_groups * n_seeds
    summary, t_sum = timed(summarize, df, METRICS)
    cmp, t_cmp = timed(compare_groups, df, None, METRICS)
    limit = OLD_GROUPS_TIMED if n_groups > OLD_GROUPS_TIMED else None
    old_sum, t_sum_old = timed(old_summarize, df, METRICS, limit)
    old_cmp, t_cmp_old = timed(old_compare, df, METRICS, limit)
    if limit:  # every group costs the same scan: scale the timed groups up to all of them
        t_sum_old *= n_groups / limit
        t_cmp_old *= (n_groups - 1) / limit
    # the same numbers as the implementation they replaced (on the groups it was run on)
    new_sum = summary.head(len(old_sum))
    np.testing.assert_allclose(new_sum["mean"], old_sum["mean"], rtol=1e-12)
    np.testing.assert_allclose(new_sum["ci_high"], old_sum["ci_high"], rtol=1e-12)
    new_cmp = cmp.set_index(["metric", "group"]).loc[
        list(zip(old_cmp["metric"].str.removeprefix("results."), old_cmp["group"], strict=True))
    ]
    for col in ("p_welch", "p_paired"):
        np.testing.assert_allclose(new_cmp[col], old_cmp[col], rtol=1e-9, equal_nan=True)
    _, t_table = timed(print_table, summary)
    _, t_page = timed(lambda: print_table(table_page(summary, "summary", None)[0]))
    cmd = [
        sys.executable,
        "-m",
        "assay",
        "analyze",
        "--stage",
        "example.fit",
        "--root",
        str(root),
        "--metric",
        "test_mse,test_accuracy",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    t_cli = time.perf_counter() - t0
    if proc.returncode != 0:  # an older CLI without comma lists: repeat the flag
        cmd = cmd[:-2] + ["--metric", "test_mse", "--metric", "test_accuracy"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        t_cli = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import assay.analysis._frames, pandas, scipy.stats"], check=True
    )
    t_imports = time.perf_counter() - t0
    return {
        "load_runs": t_load,
        "summarize": t_sum,
        "summarize_old": t_sum_old,
        "compare": t_cmp,
        "compare_old": t_cmp_old,
        "table_full": t_table,
        "table_paged": t_page,
        "cli": t_cli,
        "cli_imports": t_imports,
        "cli_lines": proc.stdout.count("\n"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 runs instead of 10,000")
    args = parser.parse_args()
    n = 2_000 if args.quick else 10_000
    shapes = [(10, n // 10), (n, 1)]
    print(f"assay {assay.__version__}: analysis of {n:,} recorded runs")
    with tempfile.TemporaryDirectory() as tmp:
        write_runs(Path(tmp) / "warm", 2, 2)  # import SQLAlchemy, pandas, scipy once, untimed
        summarize(load_runs(Path(tmp) / "warm", stage="example.fit"))
        res = {g: bench(Path(tmp) / f"g{g}", g, s) for g, s in shapes}
    print(f"{'':34}" + "".join(f"{f'{g:,} groups':>16}" for g, _ in shapes))

    def line(name: str, fmt: str, key) -> None:
        print(f"{name:34}" + "".join(f"{fmt.format(key(res[g])):>16}" for g, _ in shapes))

    line("load_runs (s)", "{:.3f}", lambda r: r["load_runs"])
    line("summarize (s)", "{:.3f}", lambda r: r["summarize"])
    line("  old per-group summarize (s)*", "{:.3f}", lambda r: r["summarize_old"])
    line("  speed-up", "{:.0f}x", lambda r: r["summarize_old"] / r["summarize"])
    line("compare_groups (s)", "{:.3f}", lambda r: r["compare"])
    line("  old per-group compare (s)*", "{:.3f}", lambda r: r["compare_old"])
    line("  speed-up", "{:.0f}x", lambda r: r["compare_old"] / r["compare"])
    line("summary table, every row (s)", "{:.3f}", lambda r: r["table_full"])
    line("summary table, paged (s)", "{:.3f}", lambda r: r["table_paged"])
    line("assay analyze, whole CLI (s)", "{:.2f}", lambda r: r["cli"])
    line("  of which python+imports (s)", "{:.2f}", lambda r: r["cli_imports"])
    line("  lines printed", "{:,}", lambda r: r["cli_lines"])
    print(
        f"* above {OLD_GROUPS_TIMED} groups: timed on {OLD_GROUPS_TIMED} groups (each scanning "
        "every run) and scaled to all groups"
    )
    small, big = (res[g] for g, _ in shapes)
    print(
        f"CLI at {shapes[1][0]:,} groups / at 10 groups: {big['cli'] / small['cli']:.2f}x; "
        f"old summarize+compare at {shapes[1][0]:,} groups / new whole CLI: "
        f"{(big['summarize_old'] + big['compare_old']) / big['cli']:.1f}x"
    )


if __name__ == "__main__":
    main()
