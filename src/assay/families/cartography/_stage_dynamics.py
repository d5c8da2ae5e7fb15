"""cartography.dynamics: train once while recording, then map the training set.

    assay run suites/cartography/rotten_tomatoes_smoke.yaml    # runs it as an upstream stage

Artifacts: ``dynamics.npz`` (ids, gold, gold_prob (E, N), correct (E, N), logits (E, N, L)),
``training_dynamics/dynamics_epoch_{e}.jsonl`` (allenai/cartography's format), ``metrics.csv``
(one row per example), ``regions.json`` (counts under both schemes), ``datamap.png`` and, for
the cluster stage, ``embeddings.npy`` (the trained model's pooled representation per example).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from assay import Run, stage
from assay.ml import TorchConfig, setup_torch

from ._data import DataConfig
from ._metrics import compute_metrics, metrics_table, region_counts
from ._models import ModelConfig
from ._pipeline import fit
from ._plots import save_datamap


class TrainingConfig(TorchConfig):
    """What every training run of the family shares: data, model and optimisation."""

    data: DataConfig = Field(
        DataConfig(), description="the dataset trained on (task, size limits, splits)"
    )
    model: ModelConfig = Field(
        ModelConfig(),
        description="the classifier: bag of words, a small transformer from scratch, or a local HF model",
    )
    epochs: int = Field(
        5,
        ge=1,
        description="training epochs; the paper maps with the fine-tuning run's epochs (about 5)",
    )
    batch_size: int = Field(32, ge=1, description="examples per optimizer step")
    lr: float | None = Field(
        None,
        gt=0,
        description="learning rate; null: 5e-3 bag of words, 5e-5 pretrained HF, 1e-3 from scratch",
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    qa_stride_tokens: int = Field(
        24,
        ge=0,
        description="QA: overlap of consecutive context windows, in tokens (the SQuAD recipe's doc stride)",
    )
    max_answer_tokens: int = Field(
        8,
        ge=1,
        description="QA: longest answer span predicted, in tokens (the generated answers have at most 3 words)",
    )
    # recomputes activations in the backward pass instead of keeping them (about a third more
    # compute); torch's checkpoint replays the dropout RNG, so no number changes: not in the id
    gradient_checkpointing: bool = Field(
        False,
        description="hf models: recompute activations in the backward pass to save memory (about 1/3 more compute); changes no number",
    )
    identity_exclude: ClassVar[frozenset[str]] = TorchConfig.identity_exclude | {
        "gradient_checkpointing"
    }

    @model_validator(mode="after")
    def _checkpointing(self) -> TrainingConfig:
        if self.gradient_checkpointing and self.model.kind != "hf":
            raise ValueError(
                f"gradient_checkpointing: true needs model.kind: hf (a transformer), got "
                f"{self.model.kind!r}; the bag of words keeps no activations worth recomputing. "
                "Set gradient_checkpointing: false or model.kind: hf"
            )
        return self

    @model_validator(mode="after")
    def _qa_model(self) -> TrainingConfig:
        if self.data.task == "qa" and self.model.kind != "hf":
            raise ValueError(
                "extractive QA needs model.kind: hf (a BERT QA head); the bag of "
                "words has no token positions to point at"
            )
        return self


class DynamicsConfig(TrainingConfig):
    record: Literal["train_pass", "eval_pass"] = Field(
        "train_pass",
        description="train_pass: probabilities from the training forward (the reference); eval_pass: an extra pass with dropout off",
    )
    burn_out: int | None = Field(
        None, ge=1, description="compute the map from the first k epochs only; null: every epoch"
    )
    include_ci: bool = Field(
        False,
        description="variability with the reference's active-bias (confidence interval) correction",
    )
    write_reference: bool = Field(
        True,
        description="also write training_dynamics/*.jsonl in the reference implementation's format",
    )


@stage(
    "cartography.dynamics",
    config=DynamicsConfig,
    version=2,  # 2: gold probability and correctness computed in float64
    smoke={"data": {"max_train_examples": 600}, "epochs": 3},
)
def dynamics(config: DynamicsConfig, run: Run) -> dict:
    """Train once, recording per-example dynamics; write the data map."""
    device, _ = setup_torch(config)
    with run.progress(config.epochs, "epoch") as bar:
        out = fit(
            config,
            device,
            record=config.record,
            embeddings=config.data.task != "qa",
            log=lambda e, h: run.log_metrics(step=e, **h),
            bar=bar,
        )
    dyn = out.dynamics
    assert dyn is not None  # fit records dynamics whenever `record` is set, as it is here
    dyn.save(run.artifacts_dir / "dynamics.npz")
    if config.write_reference and dyn.logits is not None:
        dyn.to_reference(run.artifacts_dir)
    if out.embeddings is not None:
        with run.write_artifact("embeddings.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, out.embeddings.astype(np.float32))
    m = compute_metrics(
        dyn.gold_prob, dyn.correct, burn_out=config.burn_out, include_ci=config.include_ci
    )
    with run.write_artifact("metrics.csv") as tmp:
        metrics_table(dyn.ids, m).to_csv(tmp, index=False)
    counts = region_counts(m)
    run.save_json("regions.json", counts)
    if config.data.task == "qa":  # always written for QA: strategies read it (may be [])
        run.save_json("excluded.json", out.excluded)
    if out.excluded:
        run.log(
            f"WARNING: {len(out.excluded)} QA examples have no window holding the answer and "
            f"are not mapped (excluded.json; strategies: `unmapped`): {out.excluded[:5]}"
        )
    save_datamap(
        m,
        run.artifacts_dir / "datamap.png",
        f"{config.data.dataset}: {len(dyn.ids)} examples, {dyn.n_epochs} epochs ({config.record})",
    )
    n_never = int(m["never_learned"].sum())
    return {
        **out.results,
        "n_mapped": len(dyn.ids),
        "n_unmapped": len(out.excluded),
        "n_never_learned": n_never,
        "mean_confidence": float(m["confidence"].mean()),
        "mean_variability": float(m["variability"].mean()),
        **{f"n_{k}": v for k, v in counts["median"].items()},
    }
