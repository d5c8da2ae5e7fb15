"""A stage with curves, failures and non-finite results, for the report tests (--import)."""

from __future__ import annotations

import math
import time

import numpy as np
from pydantic import Field

import assay


class TrainConfig(assay.SeededConfig):
    lr: float = Field(0.1, gt=0)
    n_steps: int = Field(12, ge=1)
    seed: int = 0
    sleep_s: float = Field(0.0, ge=0)  # spread over the steps (the live-refresh test)
    nan_result: bool = False
    identity_exclude = frozenset({"sleep_s"})


@assay.stage("rpt.train", config=TrainConfig, version=1)
def train(config: TrainConfig, run: assay.Run) -> dict:
    """Decay a loss at rate lr with seeded noise; fail when lr >= 0.9 (diverges)."""
    rng = np.random.default_rng(config.seed)
    loss = 1.0
    with run.progress(config.n_steps, "steps") as bar:
        for step in range(config.n_steps):
            loss = loss * (1 - config.lr) + 0.05 * float(rng.random())
            run.log_metrics(step=step, loss=loss, acc=1 - loss)
            time.sleep(config.sleep_s / config.n_steps)
            bar.update()
            if config.lr >= 0.9 and step == 2:
                raise RuntimeError(f"diverged at lr={config.lr}: loss {loss:.3f}")
    score = math.nan if config.nan_result else 10 * (1 - loss)
    return {"final_loss": loss, "acc": 1 - loss, "score": score, "label": f"lr{config.lr}"}


class EvalConfig(assay.StageConfig):
    train: TrainConfig = TrainConfig()  # upstream: the training run whose curves it shows
    scale: float = 1.0


@assay.stage("rpt.eval", config=EvalConfig, version=1)
def evaluate(config: EvalConfig, run: assay.Run) -> dict:
    """Score an upstream training run; logs no metrics of its own (the upstream runs do)."""
    return {"score": config.scale * run.upstream["train"].results["acc"]}
