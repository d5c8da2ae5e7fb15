"""bench/gpu_check.py: its dry run plans every smoke suite and runs every benchmark at a tiny
shape on the CPU; without CUDA it says so and exits 0 (so `make gpu-check` is safe anywhere)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "ASSAY_NUM_THREADS": "1", **env},
        timeout=600,
    )


def test_dry_run_plans_the_suites_and_runs_every_benchmark_at_a_tiny_shape(tmp_path):
    out = tmp_path / "report.json"
    proc = _run("--device", "cpu", "--dry", "--root", str(tmp_path / "runs"), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for family in ("volume", "patching", "icl", "trigger", "cartography"):
        for dtype in ("float32", "bfloat16"):
            assert f"plan {family:<11} {dtype:<8}" in text, (family, dtype)
    assert "1 runs (icl.loo) from suites/icl/loo_smoke.yaml" in text
    for bench in (
        "icl LOO, 8 words x 3 layers",
        "trigger evaluation, 8 prompts",
        "volume grid, 2 models x 8 directions",
    ):
        assert bench in text, bench
    assert "patching, 128 neurons x 4 pairs" in text or "patching: skipped" in text
    assert "max |ratio influence diff| on those layers 0.0e+00" in text  # float32: identical
    assert "gpu-check done" in text and "all checks passed" in text
    assert '"dry": true' in out.read_text()
    assert not list((tmp_path / "runs").rglob("*.db"))  # planned, nothing recorded


def test_without_cuda_it_says_so_and_exits_0():
    proc = _run(CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gpu-check: no CUDA device here")
    assert "--device cpu --dry" in proc.stdout and not proc.stderr


def test_smoke_runs_compare_with_recorded_cpu_numbers(tmp_path):
    """The non-dry smoke path on the CPU: record the patching suite's numbers, rerun it as the
    device would (a fresh root), and every compared number agrees; a changed one is caught."""
    import json

    ref = tmp_path / "ref.json"
    rec = _run(
        "--record-reference",
        "--families",
        "patching",
        "--reference",
        str(ref),
        "--root",
        str(tmp_path / "a"),
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    recorded = json.loads(ref.read_text())["patching"]
    assert {r["stage"] for r in recorded.values()} == {"patching.run"}
    assert all(r["status"] == "done" and r["numbers"] for r in recorded.values())
    args = (
        "--device",
        "cpu",
        "--only",
        "smoke",
        "--families",
        "patching",
        "--dtypes",
        "float32",
        "--reference",
        str(ref),
    )
    proc = _run(*args, "--root", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "patching    float32  2 runs" in proc.stdout and ": ok" in proc.stdout
    first = next(iter(recorded.values()))
    key = next(iter(first["numbers"]))
    first["numbers"][key] = first["numbers"][key] * 2 + 1.0  # a number the device "got wrong"
    ref.write_text(json.dumps({"patching": recorded}))
    proc = _run(*args, "--root", str(tmp_path / "c"))
    assert proc.returncode == 1 and "1 PROBLEM(S)" in proc.stdout and key in proc.stdout
