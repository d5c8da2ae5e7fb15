"""patching: bad files and indices are refused at plan time (exit 2, nothing recorded)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import assaycli
import numpy as np
import pytest

DEFS = [{"q_net.q_net.0": [i]} for i in range(3)]


def dry_run(tmp_path: Path, config: dict, *args: object) -> subprocess.CompletedProcess:
    suite = tmp_path / "s.yaml"
    suite.write_text(json.dumps({"stage": "patching.run", "config": config}))  # JSON is YAML
    root = tmp_path / "runs"
    proc = assaycli.dry_run(suite, *args, root=root)
    assert not root.exists()
    return proc


def refused(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "stage 'patching.run' refuses its config" in proc.stderr
    for text in expected:
        assert text in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def files(tmp_path, dqn_zip, cartpole_pairs_npz):
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps(DEFS))
    return {"model": str(dqn_zip), "inputs": [str(cartpole_pairs_npz)], "definitions": str(defs)}


def test_good_files_plan(tmp_path, files):
    proc = dry_run(tmp_path, files)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"end_index": 10}, "end_index 10 is past the end: the definitions file"),
        ({"start_index": 3}, "start_index 3 is past the end"),
        ({"logit_diff": [1, 1]}, "logit_diff compares output 1 with itself"),
        ({"logit_diff": [0, 5]}, "logit_diff output(s) [5] out of range: the model has 2 outputs"),
    ],
)
def test_indices_past_the_files(tmp_path, files, change, expected):
    refused(dry_run(tmp_path, {**files, **change}), expected)


def test_empty_definitions(tmp_path, files):
    (tmp_path / "empty.json").write_text("[]")
    proc = dry_run(tmp_path, {**files, "definitions": str(tmp_path / "empty.json")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "definitions" in proc.stderr


def test_nan_inputs(tmp_path, files, cartpole_obs):
    clean = cartpole_obs.copy()
    clean[3, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, clean=clean, corrupted=cartpole_obs)
    refused(
        dry_run(tmp_path, {**files, "inputs": [str(path)]}),
        f"input file {path} holds 1 NaN or infinite value(s)",
    )


def test_a_zip_that_is_not_an_agent(tmp_path, files):
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    refused(
        dry_run(tmp_path, {**files, "model": str(path)}),
        "is not a stable-baselines3 agent: it has no data and no policy.pth entry",
    )


@pytest.mark.parametrize("n_files", [0, 2])
def test_agent_folders_need_exactly_one_model_file(tmp_path, files, dqn_zip, n_files):
    folder = tmp_path / "agent"
    folder.mkdir()
    for i in range(n_files):
        shutil.copy(dqn_zip, folder / f"agent{i}.zip")
    proc = dry_run(tmp_path, {**files, "model": str(folder)})
    refused(proc, f"holds {'no' if n_files == 0 else n_files} model files")


def test_readout_position_outside_the_tokens(tmp_path, gpt2_dir, token_pairs):
    clean, corrupted = token_pairs  # (6, 7) token ids
    path = tmp_path / "tokens.npz"
    np.savez(path, clean=clean.numpy(), corrupted=corrupted.numpy())
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps([{"transformer.h.0.mlp": [0]}]))
    config = {"model": str(gpt2_dir), "inputs": [str(path)], "definitions": str(defs)}
    assert dry_run(tmp_path, config).returncode == 0
    refused(
        dry_run(tmp_path, {**config, "readout_position": 7}),
        "readout_position 7 is outside the token sequences (the shortest has 7 tokens)",
    )
    refused(dry_run(tmp_path, {**config, "logit_diff": [0, 50]}), "the model has 50 outputs")


def test_end_index_past_a_finished_prepared_run(tmp_path):
    prepared = {"train_steps": 600, "hidden": [16, 16], "n_pairs": 16}
    root = tmp_path / "runs"
    suite = tmp_path / "prep.yaml"
    suite.write_text(json.dumps({"stage": "patching.cartpole_dqn", "config": prepared}))
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "run", str(suite), "--root", str(root), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = tmp_path / "run.yaml"
    config = {"prepared": prepared, "end_index": 1000, "num_threads": 1}
    suite.write_text(json.dumps({"stage": "patching.run", "config": config}))
    before = sorted(p.name for p in root.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "run", str(suite), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused(
        proc,
        "end_index 1000 is past the end: the prepared run patching_cartpole_dqn_",
        "holds 34 definitions",
    )
    assert sorted(p.name for p in root.iterdir()) == before
