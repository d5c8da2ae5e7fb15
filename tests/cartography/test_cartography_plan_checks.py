"""cartography: dynamics and model paths are checked at plan time (exit 2, nothing recorded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORDS = ["good", "bad", "fine", "awful", "great", "poor", "nice", "dull"]


def assay_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assay", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A suite folder with a small local CSV (80 labelled snippets) beside the suite files."""
    rows = ["text,label"]
    for i in range(80):
        w = WORDS[i % len(WORDS)]
        rows.append(f"{w} movie number {i},{'pos' if WORDS.index(w) % 2 == 0 else 'neg'}")
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def suite(folder: Path, config: str, name: str = "s.yaml") -> Path:
    path = folder / name
    path.write_text(f"stage: cartography.train\nconfig:\n{config}")
    return path


DATA = "  data: &data {dataset: local, path: reviews.csv}\n"


def test_a_missing_dynamics_dir_is_refused(folder):
    s = suite(
        folder,
        DATA + "  dynamics_dir: no_such_folder\n"
        "  filter: {kind: cartography, top_fraction: 0.5}\n",
    )
    proc = assay_cli("run", s, "--dry-run", "--root", folder / "runs")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no_such_folder" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and not (folder / "runs").exists()


def test_dynamics_over_other_examples_are_refused(folder):
    ref = folder / "dyn" / "training_dynamics"
    ref.mkdir(parents=True)
    lines = [
        json.dumps({"guid": f"other-{i}", "logits_epoch_0": [0.1, 0.2], "gold": 0})
        for i in range(50)
    ]
    (ref / "dynamics_epoch_0.jsonl").write_text("\n".join(lines) + "\n")
    s = suite(
        folder, DATA + "  dynamics_dir: dyn\n  filter: {kind: cartography, top_fraction: 0.5}\n"
    )
    proc = assay_cli("run", s, "--root", folder / "runs")  # a real run: refused before it starts
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "dynamics_dir" in proc.stderr and "covers other examples than `data`" in proc.stderr
    assert "training ids have no dynamics (e.g. ['reviews-" in proc.stderr
    assert not (folder / "runs").exists()


def test_dynamics_upstream_over_other_data_is_refused(folder):
    s = suite(
        folder,
        DATA + "  dynamics: {data: {dataset: local, path: reviews.csv, "
        "max_train_examples: 10}}\n"
        "  filter: {kind: cartography, top_fraction: 0.5}\n",
    )
    proc = assay_cli("run", s, "--dry-run", "--root", folder / "runs")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "dynamics.data maps other examples than `data` trains on" in proc.stderr


def test_a_finished_dynamics_run_without_its_file_is_refused(folder):
    s = suite(
        folder,
        DATA + "  epochs: 1\n  dynamics: {data: *data, epochs: 1}\n"
        "  filter: {kind: cartography, top_fraction: 0.5}\n",
    )
    root = folder / "runs"
    dyn_suite = folder / "dyn.yaml"  # the same dynamics config, run on its own first
    dyn_suite.write_text(
        "stage: cartography.dynamics\n"
        "config: {data: {dataset: local, path: reviews.csv}, epochs: 1}\n"
    )
    proc = assay_cli("run", dyn_suite, "--root", root, "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (dyn,) = root.glob("cartography_dynamics_*")
    assert "upstream: 1 done" in assay_cli("run", s, "--root", root, "--dry-run").stdout
    (dyn / "artifacts" / "dynamics.npz").unlink()
    before = sorted(p.name for p in root.iterdir())
    proc = assay_cli("run", s, "--root", root)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"the finished cartography.dynamics run {dyn.name} has no dynamics.npz" in proc.stderr
    assert "assay reindex" in proc.stderr
    assert sorted(p.name for p in root.iterdir()) == before


def test_model_path_is_a_content_reference_beside_the_suite(folder):
    s = suite(folder, DATA + "  model: {kind: hf, path: no_model_here}\n")
    proc = assay_cli("run", s, "--dry-run", "--root", folder / "runs")
    assert proc.returncode == 2
    assert f"no model directory at {str(folder / 'no_model_here')!r}" in proc.stderr
    model = folder / "no_model_here"
    model.mkdir()
    (model / "config.json").write_text("{}")
    proc = assay_cli("run", s, "--dry-run", "--root", folder / "runs")
    assert proc.returncode == 0, proc.stderr
    from assay.engine._suite import expand, load_suite

    (run,) = expand(load_suite(s))
    assert run.config.model.path.path == str(model) and len(run.config.model.path.sha256) == 64
