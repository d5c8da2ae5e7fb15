"""One script that checks assay on a GPU: every family's smoke suite and the benchmarks.

    make gpu-check                                    # = .venv/bin/python bench/gpu_check.py
    .venv/bin/python bench/gpu_check.py --only smoke  # or icl, trigger, patching, volume
    .venv/bin/python bench/gpu_check.py --device cpu --dry   # the plan, tiny shapes, seconds

On a machine with CUDA it

1. runs each family's smoke suite (``SUITES``, first seed) on ``cuda`` in float32 and again in
   bfloat16, and compares every numeric result with the CPU run's (``bench/
   gpu_check_reference.json`` when it is there, otherwise the CPU runs happen first in this
   invocation): |gpu - cpu| <= ATOL + RTOL |cpu|, RTOL/ATOL 0.05/0.02 in float32 and 0.15/0.05
   in bfloat16. The tolerance is loose on purpose: training on another device sums in another
   order, and a few hundred optimiser steps turn rounding into a few percent of accuracy;
   a broken device path is off by far more (or fails);
2. runs the benchmarks with their baselines in the same process (``gpu_benches.py``): icl
   all-layer LOO vs the published loop on a Llama-3-8B-shaped model (32 layers, d_model 4096,
   random weights built on the device, bfloat16), trigger batched logit accuracy vs one
   ``generate()`` per prompt on a Llama-2-7B-shaped model, patching vs TransformerLens at 128
   pairs, and volume's exact grid vs its per-point loop;
3. prints each ratio beside the issue's target and the achieved TFLOP/s beside the device's
   peak, and writes everything to ``--out`` (JSON). The exit status is 1 when a run failed, a
   number fell outside the tolerance or a target was missed.

Without a CUDA device it says so and exits 0. ``--device cpu --dry`` plans every smoke suite
(the configs the GPU will run, nothing executed) and runs every benchmark at a tiny shape on
the CPU, so the code paths are exercised by the test suite (tests/ml/test_gpu_check.py).
``--record-reference`` runs the smoke suites on the CPU and writes the reference file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "bench" / "gpu_check_reference.json"
# family -> (smoke suite, seeds kept): one seed keeps the whole check under 8 minutes
SUITES = {
    "volume": ("suites/volume/swiss_roll_low_data_smoke.yaml", [0]),
    "patching": ("suites/patching/cartpole_dqn_smoke.yaml", None),
    "icl": ("suites/icl/loo_smoke.yaml", None),
    "trigger": ("suites/trigger/smoke.yaml", None),
    "cartography": ("suites/cartography/qa_smoke.yaml", [0]),
}
TOLERANCE = {"float32": (0.05, 0.02), "bfloat16": (0.15, 0.05)}  # (rtol, atol)
# result keys that say how a run executed, not what it computed: never compared
NOT_COMPARED = re.compile(
    r"(seconds|_s$|_s/|time|threads|device|_used|halvings|forwards|rss|_mb|per_s|n_params|"
    r"base_model_dir|files|content_sha256)"
)
# Dense peak TFLOP/s (no sparsity) by device name: (bfloat16/float16 tensor cores, float32).
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100 PCIe": (756.0, 51.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
}
PARTS = ("smoke", "icl", "trigger", "patching", "volume")


def peak_tflops(device: str, dtype: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, (half, single) in PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return half if dtype in ("bfloat16", "float16") else single
    return None


# ------------------------------------------------------------------------------ smoke suites
def on_device(config, device: str, dtype: str | None):
    """``config`` with every torch (sub-)config, upstreams included, on ``device`` in
    ``dtype`` (None: as configured)."""
    from pydantic import BaseModel

    from assay.ml import TorchConfig

    updates = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            moved = on_device(value, device, dtype)
            if moved is not value:
                updates[name] = moved
    if isinstance(config, TorchConfig):
        updates["device"] = device
        if dtype is not None:
            updates["dtype"] = dtype
    return config.model_copy(update=updates) if updates else config


def planned(family: str, device: str, dtype: str | None) -> list:
    """The (suite index, stage, config) triples of a family's smoke suite on ``device``."""
    import assay

    suite, seeds = SUITES[family]
    runs = assay.plan_suite(ROOT / suite, seeds=seeds)
    return [(r.index, r.stage, on_device(r.config, device, dtype)) for r in runs]


def numbers(results: dict, prefix: str = "") -> dict[str, float]:
    """The numeric results worth comparing, flattened to ``a/b/c`` keys."""
    out: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if key.startswith("_") or NOT_COMPARED.search(name) or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif value is None:
            out[name] = math.nan
        elif isinstance(value, dict):
            out |= numbers(value, f"{name}/")
        elif (
            isinstance(value, list)
            and 0 < len(value) <= 16
            and all(isinstance(v, dict) for v in value)
        ):  # e.g. patching's top units: their metric means
            for i, v in enumerate(value):
                out |= numbers(v, f"{name}[{i}]/")
        elif (
            isinstance(value, list)
            and 0 < len(value) <= 64
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            out |= {f"{name}[{i}]": float(v) for i, v in enumerate(value)}
    return out


def run_family(family: str, device: str, dtype: str | None, root: Path) -> dict:
    """Run a family's smoke suite: {suite index: {"stage", "status", "numbers", "seconds"}}."""
    import assay

    out = {}
    for index, stage, config in planned(family, device, dtype):
        t0 = time.perf_counter()
        try:
            record = assay.run_config(config, root=root)
        except assay.AssayError as exc:  # a check before the run: recorded as a failure
            out[str(index)] = {"stage": stage, "status": "failed", "error": str(exc)}
            continue
        ok = record.status is assay.RunStatus.DONE
        out[str(index)] = {
            "stage": stage,
            "status": "done" if ok else "failed",
            "error": None if ok else str(record.error)[-400:],
            "numbers": numbers(record.results or {}),
            "seconds": time.perf_counter() - t0,
        }
    return out


def compare(gpu: dict, cpu: dict, dtype: str) -> tuple[int, list[str]]:
    """(numbers compared, problems): failed runs and numbers outside the tolerance."""
    rtol, atol = TOLERANCE[dtype]
    n, problems = 0, []
    for index, run in gpu.items():
        if run["status"] != "done":
            problems.append(f"run {index} ({run['stage']}) failed: {run['error']}")
            continue
        ref = cpu.get(index, {}).get("numbers", {})
        for key, value in run["numbers"].items():
            if key not in ref:
                continue
            n += 1
            want = ref[key]
            same = value == want or (math.isnan(want) and math.isnan(value))  # inf == inf
            if not same and not abs(value - want) <= atol + rtol * abs(want):
                problems.append(
                    f"run {index} ({run['stage']}) {key}: {value:.6g} on the GPU, "
                    f"{want:.6g} on the CPU"
                )
    return n, problems


def smoke(args, root: Path, report: dict) -> int:
    """Each family on the device in float32 and bfloat16, compared with the CPU's numbers."""
    families = args.families or list(SUITES)
    if args.dry:
        for family in families:
            for dtype in args.dtypes:
                runs = planned(family, args.device, dtype)
                stages = sorted({stage for _, stage, _ in runs})
                print(
                    f"  plan {family:<11} {dtype:<8} {len(runs)} runs ({', '.join(stages)}) "
                    f"from {SUITES[family][0]}"
                )
        return 0
    reference = json.loads(args.reference.read_text()) if args.reference.is_file() else {}
    failures = 0
    for family in families:
        if family not in reference:
            print(f"  {family}: no recorded CPU numbers in {args.reference}; running on the CPU")
            reference[family] = run_family(family, "cpu", None, root / f"{family}-cpu")
        for dtype in args.dtypes:
            t0 = time.perf_counter()
            try:
                gpu = run_family(family, args.device, dtype, root / f"{family}-{dtype}")
            except Exception as exc:  # e.g. a store problem: report it, check the rest
                print(f"  {family:<11} {dtype:<8} FAILED: {type(exc).__name__}: {exc}")
                report["smoke"][f"{family}/{dtype}"] = {"error": f"{type(exc).__name__}: {exc}"}
                failures += 1
                continue
            n, problems = compare(gpu, reference[family], dtype)
            rtol, atol = TOLERANCE[dtype]
            verdict = "ok" if not problems else f"{len(problems)} PROBLEM(S)"
            print(
                f"  {family:<11} {dtype:<8} {len(gpu)} runs in {time.perf_counter() - t0:5.1f}"
                f" s; {n} numbers vs the CPU within {rtol:g} rel + {atol:g} abs: {verdict}"
            )
            for line in problems[:10]:
                print(f"      {line}")
            report["smoke"][f"{family}/{dtype}"] = {
                "runs": gpu,
                "compared": n,
                "problems": problems,
            }
            failures += bool(problems)
    return failures


# -------------------------------------------------------------------------------- benchmarks
def benchmarks(args, report: dict) -> int:
    import gpu_benches as gb
    import torch

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    dname = str(dtype).removeprefix("torch.")
    tiny = args.dry
    jobs = {
        "icl": lambda: gb.icl_loo(
            gb.TINY if tiny else gb.LLAMA3_8B,
            args.device,
            dtype,
            n_words=8 if tiny else 64,
            published_layers=1 if tiny else args.published_layers,
        ),
        "trigger": lambda: gb.trigger_eval(
            gb.TINY if tiny else gb.LLAMA2_7B,
            args.device,
            dtype,
            n_prompts=8 if tiny else 512,
            n_generate=2 if tiny else 64,
        ),
        "patching": lambda: gb.patching_vs_transformerlens(
            args.device, n_pairs=4 if tiny else 128, d_model=16 if tiny else 256
        ),
        "volume": lambda: gb.volume_grid(
            args.device,
            epochs=5 if tiny else 1000,
            levels=(0, 30) if tiny else (0, 30, 80, 180, 380, 780),
            n_dirs=8 if tiny else 1000,
            n_base=2 if tiny else 20,
        ),
    }
    failures = 0
    for name, job in jobs.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            res = job()
        except ImportError as exc:  # TransformerLens is an optional extra
            print(f"  {name}: skipped ({exc})")
            continue
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            where = traceback.extract_tb(exc.__traceback__)[-1]
            print(
                f"  {name}: FAILED with {type(exc).__name__}: {str(exc)[:300]} "
                f"({Path(where.filename).name}:{where.lineno})"
            )
            report["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            failures += 1
            continue
        peak = peak_tflops(args.device, dname if name != "volume" else "float32")
        achieved = res.flops / res.assay_s / 1e12
        of_peak = f" of {peak:.0f} peak ({100 * achieved / peak:.0f}%)" if peak else ""
        if res.target is None:
            target = ""
        elif args.dry:  # tiny shapes: per-call overhead dominates, the targets do not apply
            target = f" (target >= {res.target:g}x applies at full size on a GPU)"
        else:
            target = f" (target >= {res.target:g}x: " + (
                "met)" if res.ratio >= res.target else "MISSED)"
            )
        failures += res.target is not None and res.ratio < res.target and not args.dry
        print(
            f"  {res.name}: assay {res.assay_s:.3f} s, baseline {res.baseline_s:.3f} s, "
            f"{res.ratio:.1f}x{target}; {achieved:.2f} TFLOP/s{of_peak} "
            f"[{time.perf_counter() - t0:.0f} s]\n      {res.note}"
        )
        report["benchmarks"][name] = {
            **gb.dataclasses.asdict(res),
            "ratio": res.ratio,
            "tflops": achieved,
            "peak_tflops": peak,
        }
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument(
        "--dry",
        action="store_true",
        help="plan the smoke suites, run the benchmarks at tiny shapes",
    )
    ap.add_argument("--only", nargs="+", choices=PARTS, help="parts to run (default all)")
    ap.add_argument("--families", nargs="+", choices=list(SUITES), help="smoke suites to run")
    ap.add_argument(
        "--published-layers",
        type=int,
        default=2,
        help="icl: layers the published loop is timed on (scaled to all)",
    )
    ap.add_argument(
        "--dtypes",
        nargs="+",
        choices=list(TOLERANCE),
        default=list(TOLERANCE),
        help="smoke suites: the dtypes run on the device (default both)",
    )
    ap.add_argument(
        "--reference",
        type=Path,
        default=REFERENCE,
        help="the CPU numbers (default bench/gpu_check_reference.json)",
    )
    ap.add_argument(
        "--record-reference",
        action="store_true",
        help="run the smoke suites on the CPU and write --reference",
    )
    ap.add_argument("--root", default=None, help="where the runs go (default: a temp folder)")
    ap.add_argument("--out", default=None, help="write the report (JSON) here")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_benches, bench_volume
    root = Path(args.root or tempfile.mkdtemp(prefix="gpu-check-"))
    if args.record_reference:
        # the families asked for are (re)recorded; the file's others are kept
        ref = json.loads(args.reference.read_text()) if args.reference.is_file() else {}
        for family in args.families or SUITES:
            ref[family] = run_family(family, "cpu", None, root / f"{family}-cpu")
        args.reference.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.reference} ({sum(len(r) for r in ref.values())} runs)")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA device here (torch {torch.__version__}: "
            "torch.cuda.is_available() is False), so there is nothing to check; run it on a "
            "machine with a GPU. `bench/gpu_check.py --device cpu --dry` plans and builds "
            "everything here."
        )
        return 0
    os.environ.setdefault("ASSAY_NUM_THREADS", "4")  # CPU-side work in the smoke runs
    name = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else "CPU"
    )
    mode = "dry run: plans and tiny shapes" if args.dry else "full"
    print(
        f"gpu-check on {args.device} ({name}), torch {torch.__version__}, {mode}; runs in {root}"
    )
    report: dict = {
        "device": name,
        "torch": torch.__version__,
        "dry": args.dry,
        "smoke": {},
        "benchmarks": {},
    }
    t0 = time.perf_counter()
    failures = 0
    if not args.only or "smoke" in args.only:
        print("smoke suites (float32 and bfloat16 vs the CPU):")
        failures += smoke(args, root, report)
    if not args.only or set(args.only) - {"smoke"}:
        print("benchmarks (baselines in the same run):")
        failures += benchmarks(args, report)
    report["seconds"] = time.perf_counter() - t0
    print(
        f"gpu-check done in {report['seconds']:.0f} s: "
        f"{'all checks passed' if not failures else f'{failures} check(s) FAILED'}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
