"""Stages for tests/engine/test_progress.py: an upstream that trains slowly, reporting progress."""

from __future__ import annotations

import time

import assay


class SlowTrainConfig(assay.StageConfig):
    epochs: int = 3
    batches: int = 4
    step_s: float = 0.05


@assay.stage("p.train", config=SlowTrainConfig, version=1)
def slow_train(config: SlowTrainConfig, run: assay.Run) -> dict:
    """Epochs of batches, one bar: ``epoch 2/3, batch 1/4``; resumes from its checkpoint."""
    state = run.load_checkpoint() or {"epoch": 0}
    with run.progress(config.epochs, "epoch", start=state["epoch"]) as bar:
        for epoch in range(state["epoch"], config.epochs):
            batches = bar.inner(config.batches, "batch")
            for _ in range(config.batches):
                time.sleep(config.step_s)
                batches.update()
            run.save_checkpoint({"epoch": epoch + 1})
            bar.update()
    return {"epochs": config.epochs}


class UseConfig(assay.StageConfig):
    train: SlowTrainConfig = SlowTrainConfig()


@assay.stage("p.use", config=UseConfig, version=1)
def use(config: UseConfig, run: assay.Run) -> dict:
    """Reads its upstream's result."""
    return {"epochs": run.upstream["train"].results["epochs"]}
