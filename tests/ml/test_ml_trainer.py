"""Trainer inside a run: metrics to metrics.jsonl, resume after a kill equals an unbroken run."""

from __future__ import annotations

import pytest
import torch

import assay.ml as ml

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

MAX_STEPS = 8


class _Run:
    """The two things the helpers use of a run handle: checkpoint_dir and log_metrics."""

    def __init__(self, path) -> None:
        self.dir, self.metrics = path, []

    @property
    def checkpoint_dir(self):
        path = self.dir / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_metrics(self, step: int, **values: float) -> None:
        self.metrics.append({"step": step, **values})


class _Data(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.ids = torch.randint(0, 40, (32, 8), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class _KillAt(transformers.TrainerCallback):
    """Stands in for a kill: training stops after ``step`` (after that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def _train(run, kill_at: int | None = None) -> transformers.Trainer:
    model = ml.build_model(
        "gpt2", vocab_size=40, d_model=16, n_layers=1, n_heads=2, max_positions=16, seed=0
    )
    args = transformers.TrainingArguments(
        output_dir=str(ml.trainer_output_dir(run)),
        max_steps=MAX_STEPS,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        save_steps=2,
        save_total_limit=2,
        seed=0,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    callbacks = [ml.MetricsCallback(run)] + ([_KillAt(kill_at)] if kill_at else [])
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=_Data(), callbacks=callbacks
    )
    trainer.train(resume_from_checkpoint=ml.last_checkpoint(run))
    return trainer


def _final_loss(trainer: transformers.Trainer) -> float:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h][-1]


def test_resume_after_a_kill_ends_where_an_unbroken_run_ends(tmp_path, monkeypatch):
    whole = _train(_Run(tmp_path / "whole"))
    run = _Run(tmp_path / "killed")
    assert ml.last_checkpoint(run) is None  # first attempt: nothing to resume
    killed = _train(run, kill_at=4)
    assert killed.state.global_step == 4
    assert ml.last_checkpoint(run).endswith("checkpoint-4")
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    resumed = _train(run)  # the rerun after the kill: picks up checkpoint-4
    monkeypatch.undo()
    # optimizer, scheduler and RNG state: every torch.load of the resume is weights-only
    assert len(loads) >= 3 and all(w is True for w in loads), loads
    assert resumed.state.global_step == whole.state.global_step == MAX_STEPS
    assert _final_loss(resumed) == pytest.approx(_final_loss(whole), rel=1e-5)
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # retention: save_total_limit=2 keeps the last two checkpoints
    names = [p.name for p in ml.complete_checkpoints(ml.trainer_output_dir(run))]
    assert names == ["checkpoint-6", "checkpoint-8"]
    # the metrics went to the run: one line per logged step, loss and learning rate
    lines = run.metrics
    steps = [x["step"] for x in lines if "loss" in x]
    assert steps == list(range(1, MAX_STEPS + 1))
    assert all("learning_rate" in x for x in lines if "loss" in x)


def test_a_checkpoint_half_written_at_a_kill_is_skipped(tmp_path):
    run = _Run(tmp_path / "run")
    out = ml.trainer_output_dir(run)
    assert out == run.checkpoint_dir / "trainer"
    (out / "checkpoint-2").mkdir()
    (out / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (out / "checkpoint-10").mkdir()  # killed while saving: no trainer_state.json yet
    (out / "checkpoint-10" / "model.safetensors").write_bytes(b"partial")
    (out / "runs").mkdir()  # not a checkpoint
    assert ml.last_checkpoint(run) == str(out / "checkpoint-2")
    assert ml.adapter_dir(run) == run.checkpoint_dir / "adapter"
