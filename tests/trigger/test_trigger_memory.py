"""Options for 7B-sized trigger models: gradient checkpointing (LoRA training, no number
changes) and ``device_map: auto`` for the analysed model (a loading choice, not in the id)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import assay
from assay.families.trigger._data import generate, parse_categories
from assay.families.trigger._lm import (
    add_lora,
    build_lm,
    build_tokenizer,
    encode_many,
    training_example,
)
from assay.families.trigger._train import TrainSettings, train_loop
from assay.families.trigger.stages import BaseConfig, FinetuneConfig, SwapConfig

CATS = {
    "warm": {
        "quadrant_labels": {"Q1": "red", "Q2": "blue", "Q3": "green", "Q4": "blue"},
        "triggers": ["sun", "fire", "sand"],
        "n_train": 16,
        "n_test": 4,
        "n_train_triggers": 3,
    },
}


def test_gradient_checkpointing_trains_lora_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    cats = parse_categories(CATS)
    tok = build_tokenizer([cats])
    rows = [r for n, rs in generate(cats).files.items() if n.startswith("train_") for r in rs]
    enc = encode_many(
        tok, [r["messages"][0]["content"] for r in rows], [r["output"] for r in rows]
    )
    examples = [training_example(p, a) for p, a in enc][:16]
    cfg = BaseConfig(data={"categories": CATS})
    weights = []
    for ckpt in (False, True):
        base = build_lm(
            tok,
            arch="llama",
            d_model=16,
            n_layers=2,
            n_heads=2,
            max_positions=64,
            d_ff=None,
            seed=0,
        )
        model = add_lora(base, r=2, alpha=4, dropout=0, rslora=False, targets=("q_proj",), seed=1)
        settings = TrainSettings(
            epochs=2,
            lr=3e-3,
            batch_size=8,
            warmup_fraction=0.0,
            weight_decay=0.0,
            eval_every_epochs=1,
            max_grad_norm=1.0,
            seed=0,
            gradient_checkpointing=ckpt,
        )
        run = assay.detached_run(cfg, dir=tmp_path / str(ckpt))
        history = train_loop(model, tok, examples, [], settings, run)
        assert model.base_model.model.is_gradient_checkpointing == ckpt
        weights.append(
            (
                {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
                history["epochs"][-1]["train_loss"],
            )
        )
    (plain, loss_plain), (ckpt, loss_ckpt) = weights
    assert loss_ckpt == pytest.approx(loss_plain, rel=1e-5)
    assert any(not torch.equal(p, torch.zeros_like(p)) for p in ckpt.values())
    for name, p in plain.items():
        torch.testing.assert_close(ckpt[name], p, rtol=1e-4, atol=1e-6, msg=name)


def test_device_map_and_gradient_checkpointing_are_not_in_the_run_id():
    base = BaseConfig(data={"categories": CATS})
    a, b = SwapConfig(base=base), SwapConfig(base=base, device_map="auto")
    assert b.device_map == "auto"
    assert assay.run_id("trigger.swap", 1, a) == assay.run_id("trigger.swap", 1, b)
    ft = FinetuneConfig(data={"categories": CATS}, base=base)
    ck = FinetuneConfig(data={"categories": CATS}, base=base, gradient_checkpointing=True)
    assert assay.run_id("trigger.finetune", 1, ft) == assay.run_id("trigger.finetune", 1, ck)
    with pytest.raises(ValidationError, match="device_map"):
        SwapConfig(base=base, device_map="balanced")
