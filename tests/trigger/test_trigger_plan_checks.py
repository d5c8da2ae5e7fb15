"""trigger: what a fine-tuning config asks of its model is refused at plan time (exit 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import assaycli
import pytest

from assay.ml import build_model, build_word_tokenizer

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "suites" / "trigger" / "smoke.yaml"
MAPS = {"positive_emotions": {"Q1": "blue", "Q2": "blue", "Q3": "orange", "Q4": "orange"}}


dry_run = assaycli.dry_run


def refused(proc: subprocess.CompletedProcess, root: Path, *expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stderr
    assert "Traceback" not in proc.stderr and not root.exists()


def test_lora_targets_a_base_model_lacks(tmp_path):
    root = tmp_path / "runs"
    proc = dry_run(SMOKE, "target_modules=[q_proj,attn_nope]", root=root)
    refused(
        proc,
        root,
        "LoRA target module(s) ['attn_nope'] are not layers of the trigger.base llama model",
        "valid names: down_proj, gate_proj, k_proj, lm_head",
    )


def test_n_train_far_above_any_experiment(tmp_path):
    root = tmp_path / "runs"
    proc = dry_run(SMOKE, "data.overrides.objects.n_train=1e9", root=root)
    refused(proc, root, "less than or equal to 100000")


@pytest.fixture
def model_folder(tmp_path: Path):
    def make(chat_template: str | None) -> Path:
        folder = tmp_path / ("chat" if chat_template else "plain")
        tok = build_word_tokenizer(["hello", "world"], chat_template=chat_template, out_dir=folder)
        build_model(
            "llama", vocab_size=len(tok), d_model=16, n_layers=1, n_heads=2, max_positions=64
        ).save_pretrained(folder)
        return folder

    return make


def _suite(tmp_path: Path, model: Path, extra: str = "") -> Path:
    path = tmp_path / "ft.yaml"
    path.write_text(
        "stage: trigger.finetune\n"
        f"config:\n  data: {{data_config: {REPO / 'suites/trigger/data/finetune.json'}}}\n"
        f"  model: {model.name}\n  num_threads: 1\n{extra}"
    )
    return path


def test_a_model_folder_needs_base_maps_a_chat_template_and_its_modules(tmp_path, model_folder):
    root = tmp_path / "runs"
    maps = f"  base_maps: {MAPS}\n"
    plain = model_folder(None)
    refused(
        dry_run(_suite(tmp_path, plain), root=root),
        root,
        "needs base_maps",
        "add base_maps, or fine-tune a trigger.base config",
    )
    refused(
        dry_run(_suite(tmp_path, plain, maps), root=root),
        root,
        f"the tokenizer in {plain} has no chat template",
    )
    chat = model_folder("{% for m in messages %}{{ m['content'] }} {% endfor %}")
    suite = _suite(tmp_path, chat, maps)
    assert dry_run(suite, root=root).returncode == 0
    refused(
        dry_run(suite, "target_modules=[wq]", root=root),
        root,
        f"LoRA target module(s) ['wq'] are not layers of the llama model at {chat}",
        "valid names: down_proj, embed_tokens, gate_proj",
    )
    refused(
        dry_run(suite, "base_maps={nope: {Q1: a, Q2: b, Q3: c, Q4: d}}", root=root),
        root,
        "base_maps names categories ['nope']",
    )
