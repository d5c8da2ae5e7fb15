"""`assay analyze --out DIR` twice into one folder: the second analysis replaces what the first
wrote (its manifest lists it), stale plots included, and leaves the user's own files alone."""

import json
import subprocess
import sys

SUITE = """\
name: {name}
stage: example.fit
config: {{data: {{n_train: 20}}}}
sweep:
  grid: {{degree: [1, 3]}}
  seeds: [0, 1]
"""


def assay(*args):
    return subprocess.run([sys.executable, "-m", "assay", *map(str, args)],
                          capture_output=True, text=True)  # fmt: skip


def test_a_second_analysis_into_one_folder_replaces_the_first(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "analysis"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(SUITE.format(name="first"))
    second.write_text(SUITE.format(name="second").replace("[1, 3]", "[2, 4]"))
    for suite in (first, second):
        assert assay("run", suite, "--root", root, "--quiet").returncode == 0
    proc = assay("analyze", first, "--root", root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (out / "plots").iterdir()} >= {"test_mse.png", "train_mse.png"}
    (out / "notes.txt").write_text("mine")
    manifest = json.loads((out / ".assay-analysis.json").read_text())
    assert manifest["what"] == "first" and "plots/train_mse.png" in manifest["files"]
    assert "notes.txt" not in manifest["files"]

    proc = assay("analyze", second, "--root", root, "--out", out, "--metric", "test_mse")
    assert proc.returncode == 0, proc.stderr
    removed = len(manifest["files"])
    assert f"removed the {removed} file(s) of the previous analysis (first)" in proc.stdout
    assert {p.stem for p in (out / "plots").iterdir()} == {"test_mse"}  # no stale plot
    runs = (out / "runs.csv").read_text()
    assert "config.degree" in runs and ",4," in runs and ",3," not in runs
    assert (out / "notes.txt").read_text() == "mine"
    manifest = json.loads((out / ".assay-analysis.json").read_text())
    assert manifest["what"] == "second" and "plots/train_mse.png" not in manifest["files"]
    assert sorted(manifest["files"]) == sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*")
        if p.is_file() and p.name not in ("notes.txt", ".assay-analysis.json")
    )


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(SUITE.format(name="a"))
    root = tmp_path / "runs"
    assert assay("run", tmp_path / "a.yaml", "--root", root, "--quiet").returncode == 0
    (tmp_path / "afile").write_text("x")
    proc = assay("analyze", tmp_path / "a.yaml", "--root", root, "--out", tmp_path / "afile")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--out" in proc.stderr and "is a file; give a folder" in proc.stderr
