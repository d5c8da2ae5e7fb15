"""The CLI through a subprocess, as a researcher calls it."""

import json
import os
import subprocess
import sys

import pytest

SUITE = """\
stage: example.fit
config: {data: {n_train: 20}}
sweep:
  grid: {degree: [1, 3]}
  seeds: [0, 1, 2]
"""


def assay(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "assay", *map(str, args)], capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"assay {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "poly.yaml"
    path.write_text(SUITE)
    return path


def test_dry_run_then_run_then_status(suite, root):
    out = assay("run", suite, "--root", root, "--dry-run").stdout
    assert "6 run(s) of example.fit" in out and "degree=3, seed=2" in out
    assert "nothing executed" in out and "6 pending" in out
    assert not root.exists()  # a dry run writes nothing
    out = assay("run", suite, "--root", root).stdout
    assert "6 done" in out
    out = assay("run", suite, "--root", root, "--dry-run").stdout
    assert "runs: 6 done; upstream: 3 done" in out
    assert "6/6 done" in assay("status", suite, "--root", root).stdout
    out = assay("run", suite, "--root", root, "degree=5", "--dry-run").stdout
    assert "3 pending" in out


def test_ls_show_reindex(suite, root):
    assay("run", suite, "--root", root, "--quiet")
    listing = assay("ls", "--root", root, "--stage", "example.fit").stdout
    assert "6 run(s)" in listing
    run_id = next(p.name for p in root.iterdir() if p.name.startswith("example_fit_"))
    shown = json.loads(assay("show", run_id[:16], "--root", root).stdout)
    assert shown["id"] == run_id and shown["status"] == "done"
    assert "results.json" in shown["files"] and shown["provenance"]["python"]
    (root / "assay.db").unlink()
    out = assay("reindex", "--root", root).stdout
    assert "indexed 9 run(s): 9 done" in out  # 6 fits + 3 data runs
    assert "6 skipped" in assay("run", suite, "--root", root, "--quiet").stdout


def test_analyze_writes_tables_and_plots(suite, root, tmp_path):
    assay("run", suite, "--root", root, "--quiet")
    out_dir = tmp_path / "analysis"
    out = assay(
        "analyze",
        suite,
        "--root",
        root,
        "--out",
        out_dir,
        "--baseline",
        "degree=1",
        "--format",
        "json",
    ).stdout
    assert "degree=3" in out and "p_welch_holm" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    rows = [r for r in summary if r["metric"] == "test_mse"]
    assert [r["n"] for r in rows] == [3, 3]
    assert (out_dir / "plots" / "test_mse.png").stat().st_size > 1000
    report = (out_dir / "report.md").read_text()
    assert "| degree=3 | test_mse | 3 |" in report and "![test_mse](plots/test_mse.png)" in report
    out = assay(
        "analyze", "--stage", "example.fit", "--root", root, "--metric", "train_mse"
    ).stdout
    assert "train_mse" in out and "test_mse" not in out


def test_families_and_stages():
    assert "example" in assay("families").stdout
    out = assay("stages").stdout
    assert "example.fit" in out and "degree" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--shard", "3/2"], "shard '3/2' is out of range"),
        (["lr=0.1"], "'lr' is not a field"),
        (["degree=99"], "less than or equal to 30"),
        (["--store", "mongodb://x/y"], "unknown store URL scheme 'mongodb'"),
        (["--start-index", "5", "--end-index", "2"], "index range"),
    ],
)
def test_bad_input_is_one_clear_error_and_touches_nothing(suite, root, args, message):
    assay("run", suite, "--root", root, "--quiet")
    before = {p.name: p.stat().st_mtime_ns for p in root.rglob("*") if p.suffix == ".json"}
    proc = assay("run", suite, "--root", root, *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    after = {p.name: p.stat().st_mtime_ns for p in root.rglob("*") if p.suffix == ".json"}
    assert after == before


def test_bad_suite_files(tmp_path, root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: example.fit\nconfig: {degree: 3\n")
    proc = assay("run", bad, "--root", root, check=False)
    assert proc.returncode == 2 and f"{bad}:" in proc.stderr and "Traceback" not in proc.stderr
    bad.write_text("stage: volume.nope\n")
    proc = assay("run", bad, "--root", root, check=False)
    assert proc.returncode == 2 and "unknown stage 'volume.nope'; available stages:" in proc.stderr
    bad.write_text("stage: example.fit\nconfig: {degre: 3}\n")
    proc = assay("run", bad, "--root", root, check=False)
    assert "unknown key 'degre'; valid keys here: data, degree, l2, seed" in proc.stderr
    proc = assay("run", tmp_path / "missing.yaml", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_failed_runs_give_exit_code_1(tmp_path, root):
    flag = tmp_path / "flag"
    flag.write_text("")
    suite = tmp_path / "fail.yaml"
    suite.write_text(
        f"stage: t.count\nimports: [teststages]\nconfig: {{fail_if_exists: {flag}}}\n"
    )
    proc = assay("run", suite, "--root", root, "--import", "teststages", check=False)
    assert proc.returncode == 1 and "--retry-failed" in proc.stdout
    flag.unlink()
    assert (
        "1 done"
        in assay("run", suite, "--root", root, "--retry-failed", "--import", "teststages").stdout
    )


def test_progress_inside_runs_shows_on_a_terminal(tmp_path, root):
    import shutil

    if shutil.which("script") is None:
        pytest.skip("needs util-linux `script` for a pseudo-terminal")
    suite = tmp_path / "p.yaml"
    suite.write_text("stage: t.slowsteps\nsweep: {grid: {n: [4, 5]}}\n")
    cmd = f"{sys.executable} -m assay run {suite} --root {root} --import teststages"
    proc = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import re

    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", proc.stdout)
    assert "t.slowsteps n=5 steps " in screen and "t.slowsteps n=4 steps " in screen
    assert not list(root.glob("*/progress.json"))  # removed when the run ends


def test_a_recorded_config_json_reruns_as_it_was(suite, root):
    assay("run", suite, "--root", root, "--quiet")
    run_dir = next(p for p in root.iterdir() if p.name.startswith("example_fit_"))
    out = assay("run", run_dir / "config.json", "--root", root).stdout
    assert "1 skipped" in out  # the very same run: finished, not run twice
    out = assay("run", run_dir / "config.json", "--root", root, "l2=0.5").stdout
    assert "1 done" in out  # a variation of it, reusing its data run
    assert (
        "upstream: 1 done"
        in assay("run", run_dir / "config.json", "--root", root, "l2=0.5", "--dry-run").stdout
    )


def test_stages_shows_one_stages_keys_defaults_and_help():
    out = assay("stages", "example.fit").stdout
    assert "stage example.fit" in out and "degree" in out and "upstream stage" in out
    proc = assay("stages", "example.nope", check=False)
    assert proc.returncode == 2 and "example.fit" in proc.stderr


def test_seeds_as_researchers_type_them(suite, root):
    out = assay(
        "run", suite, "--root", root, "--dry-run", "--seeds", "42", "43", "degree=5"
    ).stdout
    assert "2 run(s) of example.fit" in out and "seed=43" in out and "seed=0" not in out
    proc = assay("run", suite, "--root", root, "--seeds", "4x", check=False)
    assert proc.returncode == 2 and "--seeds takes integers" in proc.stderr


def test_status_and_analyze_on_an_empty_root_say_where_they_looked(suite, tmp_path):
    empty = tmp_path / "nothing"
    out = assay("status", suite, "--root", empty).stdout
    assert "no store at" in out and str(empty.resolve()) in out
    proc = assay("analyze", suite, "--root", empty, check=False)
    assert proc.returncode == 2 and "no runs recorded" in proc.stderr
    proc = assay("analyze", "--stage", "example.nope", "--root", empty, check=False)
    assert proc.returncode == 2 and "unknown stage 'example.nope'" in proc.stderr
    assert not empty.exists()
