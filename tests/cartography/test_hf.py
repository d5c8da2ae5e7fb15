"""The Trainer callback records what a manual loop computes, and the id column survives pruning."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

from assay.families.cartography._dynamics import DynamicsError  # noqa: E402
from assay.families.cartography._hf import DynamicsCallback  # noqa: E402
from assay.ml import build_model  # noqa: E402

N, T, EPOCHS, LR = 24, 6, 3, 0.5


def _setup(tmp_path):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (N, T), generator=g)
    labels = torch.randint(0, 3, (N,), generator=g)
    model = build_model(
        "bert",
        vocab_size=50,
        d_model=16,
        n_layers=1,
        n_heads=2,
        max_positions=T,
        task="sequence-classification",
        num_labels=3,
        seed=0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    ds = datasets.Dataset.from_dict(
        {
            "input_ids": ids.tolist(),
            "attention_mask": torch.ones(N, T, dtype=torch.long).tolist(),
            "labels": labels.tolist(),
            "example_idx": list(range(N)),
            "text": [f"row {i}" for i in range(N)],  # a string column the Trainer must prune
        }
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=N,
        num_train_epochs=EPOCHS,
        learning_rate=LR,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    return model, ds, args, ids, labels


def _trainer(model, ds, args):
    opt = torch.optim.SGD(model.parameters(), lr=LR)  # full batch + SGD: a loop we can replay
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return transformers.Trainer(model=model, args=args, train_dataset=ds, optimizers=(opt, sched))


def test_callback_matches_a_manual_loop_and_keeps_the_id_column(tmp_path):
    model, ds, args, ids, labels = _setup(tmp_path)
    manual = copy.deepcopy(model)
    cb = DynamicsCallback([f"ex{i}" for i in range(N)])
    trainer = _trainer(model, ds, args)
    cb.attach(trainer)
    trainer.train()
    dyn = cb.dynamics
    assert dyn.ids[0] == "ex0" and dyn.gold_prob.shape == (EPOCHS, N)

    manual.train()
    opt = torch.optim.SGD(manual.parameters(), lr=LR)
    expect = []
    for _ in range(EPOCHS):
        out = manual(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        expect.append(torch.softmax(out.logits, -1)[torch.arange(N), labels].detach().numpy())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    np.testing.assert_allclose(dyn.gold_prob, np.stack(expect), rtol=1e-4, atol=1e-6)
    assert dyn.gold.tolist() == labels.tolist()


def test_without_attach_the_pruned_id_column_is_an_error(tmp_path):
    model, ds, args, *_ = _setup(tmp_path)
    trainer = _trainer(model, ds, args)
    trainer.add_callback(DynamicsCallback([f"ex{i}" for i in range(N)]))
    with pytest.raises(DynamicsError, match="pruned it"):
        trainer.train()


def test_eval_pass_mode_records_without_dropout(tmp_path):
    model, ds, args, ids, labels = _setup(tmp_path)
    cb = DynamicsCallback([f"ex{i}" for i in range(N)], mode="eval_pass")
    trainer = _trainer(model, ds, args)
    cb.attach(trainer)
    trainer.train()
    model.eval()
    with torch.no_grad():
        last = torch.softmax(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, -1)
    np.testing.assert_allclose(
        cb.dynamics.gold_prob[-1], last[torch.arange(N), labels].numpy(), rtol=1e-4
    )
