"""Engine overhead and run loading, against the common ways of doing the same.

    python bench/bench_engine.py            # 1,000 trivial runs; 10,000 runs loaded
    python bench/bench_engine.py --quick    # 200 runs; 2,000 loaded

Prints, measured in this one process run:
1. framework time per run of a 1,000-run sweep executed inline by assay, beside a plain Python
   loop that writes one JSON file per run and a hydra-core multirun of the same function (if
   hydra-core is installed: `pip install -c constraints.txt 'assay[bench]'`);
2. loading 10,000 recorded runs into a DataFrame, beside reading the 10,000 results.json files.
Single process, no torch involved; the stage is trivial so the times are the engine's own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import assay


class TrivialConfig(assay.StageConfig):
    x: int = 0
    seed: int = 0


def trivial_fn(x: int) -> dict:
    return {"y": x * x + 1, "ok": True}


@assay.stage("bench.trivial", config=TrivialConfig)
def trivial(config: TrivialConfig, run: assay.Run) -> dict:
    return trivial_fn(config.x)


def time_assay(root: Path, n: int) -> tuple[float, float]:
    suite = assay.Suite(name="bench", stage="bench.trivial", config={},
                        sweep={"grid": {"x": list(range(n))}})  # fmt: skip
    t0 = time.perf_counter()
    result = assay.run_suite(suite, root=root)
    total = time.perf_counter() - t0
    assert result.counts == {"done": n}, result.counts
    fn_time = sum(o.duration_s for o in result.outcomes)  # includes the per-run engine work
    return total, fn_time


def time_plain_loop(root: Path, n: int) -> float:
    t0 = time.perf_counter()
    for x in range(n):
        out = root / f"run_{x}"
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({"x": x, **trivial_fn(x)}))
    return time.perf_counter() - t0


HYDRA_APP = """
import json, hydra
from omegaconf import DictConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg: DictConfig) -> None:
    x = int(cfg.x)
    with open("results.json", "w") as f:
        json.dump({"y": x * x + 1, "ok": True}, f)

if __name__ == "__main__":
    main()
"""


def time_hydra(work: Path, n: int) -> float | None:
    try:
        import hydra  # noqa: F401
    except ImportError:
        return None
    app = work / "hydra_app.py"
    app.write_text(textwrap.dedent(HYDRA_APP))
    cmd = [sys.executable, str(app), "-m", f"+x=range(0,{n})",
           f"hydra.sweep.dir={work / 'multirun'}", "hydra/job_logging=disabled",
           "hydra/hydra_logging=disabled"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=work)
    return time.perf_counter() - t0


def time_loading(root: Path) -> tuple[float, float, int]:
    import pandas as pd  # imported before either timing: both methods build a DataFrame

    t0 = time.perf_counter()
    df = assay.load_runs(root, stage="bench.trivial")
    t_assay = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = []
    for path in root.glob("bench_trivial_*/results.json"):
        with open(path) as f:
            rows.append(json.load(f))
    files = pd.DataFrame.from_records(rows)
    t_files = time.perf_counter() - t0
    assert len(files) == len(df)
    return t_assay, t_files, len(df)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_runs, n_load = (200, 2_000) if args.quick else (1_000, 10_000)
    work = Path(tempfile.mkdtemp(prefix="assay-bench-"))
    try:
        total, in_runs = time_assay(work / "assay", n_runs)
        plain = time_plain_loop(work / "plain", n_runs)
        hydra_s = time_hydra(work, n_runs)
        print(f"# engine overhead: {n_runs} trivial runs, inline, 1 process (no torch)")
        print(f"{'method':<34}{'total s':>10}{'ms/run':>10}{'vs plain loop':>15}")
        rows = [("plain loop, one JSON per run", plain),
                ("assay run_suite (inline, SQLite)", total)]  # fmt: skip
        if hydra_s is not None:
            rows.append(("hydra-core multirun (subprocess)", hydra_s))
        for name, t in rows:
            print(f"{name:<34}{t:>10.3f}{1000 * t / n_runs:>10.3f}{t / plain:>14.1f}x")
        if hydra_s is None:
            print("hydra-core not installed: pip install -c constraints.txt 'assay[bench]'")
        else:
            print(f"assay is {hydra_s / total:.1f}x faster than hydra multirun on this sweep")
        framework = 1000 * (total - 0) / n_runs
        print(f"framework time per run: {framework:.2f} ms (target <= 5 ms); "
              f"{1000 * in_runs / n_runs:.2f} ms of it inside Runner.execute")  # fmt: skip

        # grow the same store to n_load runs, then time loading them
        assay.run_suite(assay.Suite(name="b", stage="bench.trivial", config={},
                                    sweep={"grid": {"x": list(range(n_runs, n_load))}}),
                        root=work / "assay")  # fmt: skip
        t_assay, t_files, n = time_loading(work / "assay")
        print(f"\n# loading {n} recorded runs into a DataFrame")
        print(f"{'method':<34}{'total s':>10}{'vs files':>12}")
        print(f"{'read every results.json':<34}{t_files:>10.3f}{1.0:>11.1f}x")
        print(f"{'assay.load_runs (store)':<34}{t_assay:>10.3f}{t_assay / t_files:>11.2f}x")
        print(
            f"assay.load_runs: {t_assay:.3f} s for {n} runs (target <= 1 s), with config columns"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
