"""The stages, shards, content identity, `assay analyze` hook and the CLI (through a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import assay
import assay.ml
from assay.families.patching._analysis import analyze, records_of
from assay.families.patching.stages import PatchingRunConfig
from assay.testing import check_stage


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def dqn_defs(tmp_path_factory, dqn_zip):
    path = tmp_path_factory.mktemp("defs") / "defs.json"
    out = _cli(
        "define",
        "--type",
        "single_neuron",
        "--model",
        str(dqn_zip),
        "--kinds",
        "activation",
        "-o",
        str(path),
    )
    assert out.returncode == 0, out.stderr
    return path


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSAY_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "assay", "patching", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_conformance_of_both_stages(store_root):
    check_stage("patching.cartpole_dqn", store_root)
    record = check_stage("patching.run", store_root)  # reuses the prepared upstream run
    assert record.results["n_definitions"] == 16 + 16 + 2  # every Linear layer of a 16x16 DQN
    assert (record.dir / "artifacts" / "records.parquet").exists()


def test_shards_merge_to_the_full_run(store_root, dqn_zip, cartpole_pairs_npz, dqn_defs):
    base = {
        "model": str(dqn_zip),
        "inputs": [str(cartpole_pairs_npz)],
        "definitions": str(dqn_defs),
        "direction": "both",
        "num_threads": 1,
    }
    full = assay.run_config(PatchingRunConfig.model_validate(base), root=store_root)
    shards = [
        assay.run_config(
            PatchingRunConfig.model_validate({**base, "start_index": a, "end_index": b}),
            root=store_root,
        )
        for a, b in [(0, 20), (20, 40), (40, None)]
    ]
    assert all(s.status is assay.RunStatus.DONE for s in [full, *shards]), [
        s.error for s in shards
    ]
    merged = records_of(shards)
    whole = records_of([full])
    assert len(merged) == len(whole) == 2 * 64
    for a, b in zip(merged, whole, strict=True):
        assert (a["index"], a["direction"], a["label"]) == (b["index"], b["direction"], b["label"])
        assert a["metrics"]["l2"]["mean"] == pytest.approx(b["metrics"]["l2"]["mean"], abs=1e-6)
    # the model's content hash is part of the config (and so of the run id)
    config = json.loads((full.dir / "config.json").read_text())
    assert config["model"] == {"path": str(dqn_zip), "sha256": assay.ml.sha256_file(dqn_zip)}
    assert full.results["content_sha256"][str(dqn_zip)] == config["model"]["sha256"]


def test_changed_file_content_changes_identity(tmp_path, dqn_zip, cartpole_pairs_npz, dqn_defs):
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps([{"q_net.q_net.1": [0]}]))
    data = {"model": str(dqn_zip), "inputs": [str(cartpole_pairs_npz)], "definitions": str(defs)}
    before = PatchingRunConfig.model_validate(data)
    defs.write_text(json.dumps([{"q_net.q_net.1": [1]}]))
    after = PatchingRunConfig.model_validate(data)
    assert assay.run_id("patching.run", 1, before) != assay.run_id("patching.run", 1, after)
    record = assay.run_config(before, root=tmp_path / "runs")  # configured before the edit
    assert (
        record.status is assay.RunStatus.FAILED
        and "changed after this run was configured" in record.error
    )
    with pytest.raises(Exception, match="does not exist"):
        PatchingRunConfig.model_validate({**data, "definitions": str(tmp_path / "missing.json")})
    with pytest.raises(Exception, match="end_index"):
        PatchingRunConfig.model_validate({**data, "start_index": 5, "end_index": 5})


def test_analyze_hook_ranks_and_plots(store_root, tmp_path, capsys):
    with assay.resolve_store(None, store_root) as store:
        runs = store.query(stage="patching.run")
    analyze(runs, tmp_path / "out")
    printed = capsys.readouterr().out
    assert "top units by mean" in printed
    for name in ("ranking.csv", "heatmap_denoising.png", "top_units_denoising.png"):
        assert (tmp_path / "out" / name).exists(), name


def _main(*args: str) -> int:
    from assay._cli import main  # the console script's entry point, in-process (fast)

    return main(["patching", *args])


def test_cli_define_and_run_through_a_subprocess(tmp_path, dqn_zip, cartpole_pairs_npz):
    out = _cli(
        "define",
        "--type",
        "neuron_groups",
        "--group-size",
        "16",
        "--model",
        str(dqn_zip),
        "--layers",
        "q_net.q_net.1,q_net.q_net.3",
        "-o",
        str(tmp_path / "groups.json"),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "groups.json").read_text())[1] == {
        "q_net.q_net.1": list(range(16, 32))
    }
    out = _cli(
        "run",
        "--model",
        str(dqn_zip),
        "--inputs",
        str(cartpole_pairs_npz),
        "--definitions",
        str(tmp_path / "groups.json"),
        "--root",
        str(tmp_path / "runs"),
        "--threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    assert "4 definitions x 24 pairs" in out.stdout and "q_net.q_net.1[16..31(16)]" in out.stdout


def test_cli_structure_rank_and_errors(tmp_path, dqn_zip, cartpole_pairs_npz, dqn_defs, capsys):
    assert _main("structure", "--model", str(dqn_zip)) == 0
    out = capsys.readouterr().out
    assert "q_net.q_net.2" in out and "QNetwork" in out
    assert (
        _main(
            "run",
            "--model",
            str(dqn_zip),
            "--inputs",
            str(cartpole_pairs_npz),
            "--definitions",
            str(dqn_defs),
            "--root",
            str(tmp_path / "runs"),
            "--direction",
            "noising",
        )
        == 0
    )
    assert (
        _main(
            "rank",
            str(tmp_path / "runs"),
            "--metric",
            "kl_base_patched",
            "--out",
            str(tmp_path / "plots"),
        )
        == 0
    )
    assert (tmp_path / "plots" / "ranking.csv").exists() and (
        tmp_path / "plots" / "heatmap.png"
    ).exists()
    capsys.readouterr()

    assert (
        _main(
            "define",
            "--type",
            "custom",
            "--model",
            str(dqn_zip),
            "--custom",
            '[{"q_net.q_net.7": [0]}]',
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "does not exist" in err and "q_net.q_net.3 [32]" in err
    assert _main("define", "--type", "layer", "--model", str(dqn_zip), "--kinds", "dense") == 2
    assert "valid kinds" in capsys.readouterr().err
    np.save(tmp_path / "three.npy", np.zeros((2, 3), np.float32))
    assert (
        _main(
            "run",
            "--model",
            str(dqn_zip),
            "--inputs",
            str(tmp_path / "three.npy"),
            str(tmp_path / "three.npy"),
            "--definitions",
            str(dqn_defs),
            "--root",
            str(tmp_path / "runs"),
        )
        == 1
    )
    assert "expects (4,)" in capsys.readouterr().err
    assert _main("rank", str(tmp_path / "runs"), "--metric", "bogus") == 2
    assert "unknown metric 'bogus'" in capsys.readouterr().err


def test_suites_shard_one_training_run():
    from pathlib import Path

    suites = Path(__file__).resolve().parents[2] / "suites" / "patching"
    for name, n in (("cartpole_dqn_sharded.yaml", 4), ("cartpole_dqn_smoke.yaml", 2)):
        runs = assay.plan_suite(suites / name)
        assert len(runs) == n
        assert (
            len({r.upstream[0].run.id for r in runs}) == 1
        )  # every shard reuses one trained agent
        assert runs[-1].config.end_index is None


def test_family_import_is_light():
    code = "import sys, assay.families.patching as p; assert 'torch' not in sys.modules; p.BatchedPatcher"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_hf_dir_with_tokenizer_runs_texts_and_token_logit_diff(tmp_path, gpt2_dir):
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "the", "cat", "dog", "sat", "ran", "on", "mat", "rug"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    model_dir = tmp_path / "model"
    shutil.copytree(gpt2_dir, model_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(model_dir)
    lines = [
        {"id": "a", "clean": "the cat sat on the mat", "corrupted": "the dog sat on the mat"},
        {"id": "b", "clean": "the cat ran on the rug", "corrupted": "the dog ran on the rug"},
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "defs.json").write_text(
        json.dumps(
            [
                {"transformer.drop": {"units": "all", "positions": [1]}},
                {"transformer.h.1.mlp.act": [0]},
            ]
        )
    )
    config = PatchingRunConfig.model_validate(
        {
            "model": str(model_dir),
            "inputs": [str(tmp_path / "pairs.jsonl")],
            "definitions": str(tmp_path / "defs.json"),
            "logit_diff": ["cat", "dog"],
            "metrics": ["l2", "logit_diff"],
        }
    )
    record = assay.run_config(config, root=tmp_path / "runs")
    assert record.status is assay.RunStatus.DONE, record.error
    rows = records_of([record])
    assert set(rows[0]["metrics"]) == {"l2", "logit_diff", "restored", "gap", "normalised"}
    # patching the embeddings at the only differing position restores everything downstream
    assert rows[0]["normalised_score"] == pytest.approx(1.0, abs=1e-4)
    bad = PatchingRunConfig.model_validate(
        {**config.model_dump(), "logit_diff": ["cat", "zebra dog"]}
    )
    failed = assay.run_config(bad, root=tmp_path / "runs")
    assert "not a single token" in failed.error
    with pytest.raises(Exception, match="unknown metric"):
        PatchingRunConfig.model_validate({**config.model_dump(), "metrics": ["l3"]})
