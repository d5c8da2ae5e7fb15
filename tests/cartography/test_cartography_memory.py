"""Training memory: a batch that runs out of memory is redone in micro-batches with the same
gradients; gradient checkpointing changes no number; both are refused where they cannot work."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from assay import ConfigError
from assay.families.cartography._stage_dynamics import DynamicsConfig
from assay.families.cartography._strategies import strategy_loss
from assay.families.cartography._train import TrainOptions, checkpointing, train
from assay.ml import OutOfMemoryError, build_model


class TokenTask:
    """Sequence classification over fixed-length token rows (what train() needs of a task)."""

    def __init__(self, model, ids: torch.Tensor, labels: torch.Tensor) -> None:
        self.model, self.ids, self.labels = model, ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, idx, device):
        return {"input_ids": self.ids[idx].to(device)}, self.labels[idx].to(device)

    def forward(self, inputs):
        return self.model(**inputs).logits  # (B, 2)

    def loss(self, out, target, eps, w):
        return strategy_loss(out, target, eps, w)


def _task(seed: int = 0) -> TokenTask:
    # dropout 0: the comparison is of gradients, not of dropout masks drawn in other shapes
    model = build_model(
        "bert",
        vocab_size=50,
        d_model=16,
        n_layers=2,
        n_heads=2,
        max_positions=16,
        task="sequence-classification",
        num_labels=2,
        seed=seed,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ).double()
    gen = torch.Generator().manual_seed(seed)
    return TokenTask(model, torch.randint(0, 50, (12, 8), generator=gen), torch.arange(12) % 2)


def _train(task, **opts):
    o = TrainOptions(
        epochs=2,
        batch_size=4,
        lr=1e-2,
        weight_decay=0.0,
        seed=0,
        device="cpu",
        record=None,
        **opts,
    )
    return train(task, o, np.zeros(len(task)), np.ones(len(task)))


def test_out_of_memory_accumulates_micro_batches_with_the_same_gradients(caplog):
    want_task, got_task = _task(), _task()
    want = _train(want_task)

    def small_device(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")

    got_task.model.register_forward_pre_hook(small_device, with_kwargs=True)
    with caplog.at_level(logging.WARNING, logger="assay.ml"):
        got = _train(got_task)
    assert want["micro_batch"] == [4, 4] and got["micro_batch"] == [2, 2]
    np.testing.assert_allclose(got["train_loss"], want["train_loss"], rtol=1e-10)
    for a, b in zip(got_task.model.parameters(), want_task.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    logged = [r.getMessage() for r in caplog.records if r.name == "assay.ml"]
    assert logged == [
        "out of memory at 4 examples per forward; 2 fit: continuing with 2 "
        "(batch_size sets the largest tried)"
    ]


def test_out_of_memory_at_one_example_names_what_frees_memory():
    task = _task()

    def no_memory(module, args, kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    task.model.register_forward_pre_hook(no_memory, with_kwargs=True)
    with pytest.raises(OutOfMemoryError, match="one example per forward") as err:
        _train(task)
    assert "gradient_checkpointing: true" in str(err.value)


def test_gradient_checkpointing_changes_no_number():
    plain, ckpt = _task(), _task()
    want = _train(plain)
    got = _train(ckpt, gradient_checkpointing=True)
    assert ckpt.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    np.testing.assert_allclose(got["train_loss"], want["train_loss"], rtol=1e-10)


def test_gradient_checkpointing_needs_a_transformer():
    with pytest.raises(ConfigError, match="needs a transformers model that supports it"):
        checkpointing(copy.deepcopy(torch.nn.Linear(2, 2)))
    with pytest.raises(ValidationError, match="gradient_checkpointing: true needs model.kind: hf"):
        DynamicsConfig(gradient_checkpointing=True)
    assert DynamicsConfig(gradient_checkpointing=True, model={"kind": "hf"}).gradient_checkpointing
