"""volume.train: train one model on base ++ the first ``extra_samples`` pool samples.

    assay run suites/volume/swiss_roll_low_data_smoke.yaml   # trains every level as upstream

Saves ``model.pt`` (state_dict), ``history.json`` (train/test loss and accuracy per epoch),
``data.json`` (the resolved sizes, so every choice is on record) and returns the final metrics.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator

from assay import Run, stage
from assay.ml import TorchConfig, setup_torch

from ._data import build_split, resolved_base, resolved_pool, resolved_test
from ._models import build_model, default_loss
from ._registry import dataset_names, model_names


class TrainConfig(TorchConfig):
    """One model of the study. ``seed`` (from TorchConfig) is the *model* seed: initialisation
    and minibatch order; ``data_seed`` the data (None: the same as ``seed``). The published runs
    are named ``model_<seed>_data_<data_seed>``."""

    # --- data -------------------------------------------------------------------------------
    dataset: str = Field(
        "swiss_roll",
        description="a registered dataset (swiss_roll, modular, mnist, ...; plug-ins in _registry.py)",
    )
    data_seed: int | None = Field(
        None, description="seeds the data; null: seed (the published low-data runs use seed + 10)"
    )
    # native: assay's generator and split (one permutation by the data seed); origin: the
    # published generator, np.random.choice split and training recipe, draw for draw
    sampling: Literal["native", "origin"] = Field(
        "native",
        description="native: assay's sampler; origin: the published code's sampling, for reproducing its runs",
    )
    extra_points: int = Field(
        1000, ge=0, description="origin sampling: spare points per arm (the published extra_pts)"
    )
    regime: Literal["data", "poison", "noise", "imbalance"] = Field(
        "data",
        description="what the pool samples are: data (clean), poison (wrong labels), noise (noise inputs, random labels), imbalance",
    )
    extra_samples: int = Field(
        0, ge=0, description="k: train on base plus the first k pool samples"
    )
    base_size: int | None = Field(
        None, ge=1, description="base training samples; null: the dataset's default"
    )
    pool_size: int | None = Field(
        None,
        ge=0,
        description="additional samples available (the volume cutoff's range); null: the dataset's default",
    )
    test_size: int | None = Field(
        None, ge=1, description="test samples; null: the dataset's default"
    )
    noise: float = Field(
        0.3, ge=0, description="swiss roll: std of the Gaussian jitter (paper: 0.3)"
    )
    rotations: float = Field(
        1.7, gt=0, description="swiss roll: turns of each spiral (paper: 1.7)"
    )
    modulus: int = Field(23, ge=2, description="modular addition: p (p x p pairs in all)")
    imbalance_classes: tuple[int, ...] = Field(
        (0,), description="imbalance regime: the over-represented classes"
    )
    imbalance_fraction: float = Field(
        0.9,
        ge=0,
        le=1,
        description="imbalance regime: share of base and pool samples from imbalance_classes",
    )
    data_dir: str = Field(
        "data", description="folder holding MNIST/CIFAR-10 files (never downloaded)"
    )
    # --- model and loss -----------------------------------------------------------------------
    model: str = Field("mlp", description="a registered architecture: mlp, cnn or a plug-in")
    hidden: tuple[int, ...] = Field(
        (32, 32, 32, 32, 32), description="MLP widths, or CNN channels"
    )
    loss: Literal["auto", "bce", "ce", "mse"] = Field(
        "auto", description="auto: bce for swiss roll, mse for modular, else ce"
    )
    # --- optimisation -------------------------------------------------------------------------
    epochs: int = Field(1000, ge=1, description="training epochs")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    # 0: the minimum is shaped by the data alone; decay would also shrink the filter norms the
    # perturbation directions are scaled by
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    batch_size: int | None = Field(
        None, ge=1, description="minibatch size; null: full batch (the paper's default)"
    )
    optimizer: Literal["adamw", "sam"] = Field(
        "adamw", description="adamw, or sam (sharpness-aware minimisation around AdamW)"
    )
    sam_rho: float = Field(
        0.05, gt=0, description="SAM neighbourhood radius (Foret et al.'s default)"
    )
    # ASAM: e = rho |w|^2 g / || |w| g || (Kwon et al. 2021); sampling origin uses the published
    # rho |w| g / || |w| g || (README, deviations)
    sam_adaptive: bool = Field(
        False, description="adaptive SAM (ASAM: the neighbourhood scales with each weight's size)"
    )
    eval_every: int = Field(
        10, ge=1, description="test metrics every this many epochs (and after the last)"
    )
    identity_exclude: ClassVar[frozenset[str]] = frozenset({"device", "num_threads", "data_dir"})

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in dataset_names():
            raise ValueError(f"unknown dataset {v!r}; valid: {', '.join(dataset_names())}")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in model_names():
            raise ValueError(f"unknown model {v!r}; valid: {', '.join(model_names())}")
        return v

    @model_validator(mode="after")
    def _origin_is_swiss_roll(self) -> TrainConfig:
        if self.sampling == "origin" and (self.dataset, self.regime) != ("swiss_roll", "data"):
            raise ValueError(
                f"sampling 'origin' reproduces the published swiss-roll low-data runs only, got "
                f"dataset={self.dataset!r}, regime={self.regime!r}; use sampling: native"
            )
        return self

    @property
    def data_seed_value(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def loss_name(self) -> str:
        return default_loss(self.dataset) if self.loss == "auto" else self.loss


@stage("volume.train", config=TrainConfig, version=1, smoke={"epochs": 30, "pool_size": 100})
def train(config: TrainConfig, run: Run) -> dict:
    """Train one model; see the module docstring."""
    device, dtype = setup_torch(config)
    split = build_split(config)
    x, y = split.train_set(config.extra_samples)
    x, x_test = x.to(dtype), split.x_test.to(dtype)
    loss = config.loss_name
    model = build_model(config, tuple(x.shape[1:]), split.n_classes, loss).to(device, dtype)

    def log(epoch, train_loss, test_loss, test_acc):
        run.log_metrics(
            step=epoch, train_loss=train_loss, test_loss=test_loss, test_accuracy=test_acc
        )

    from ._train import train_model

    with run.progress(config.epochs, "epoch") as bar:
        hist = train_model(
            model,
            x.to(device),
            y.to(device),
            x_test.to(device),
            split.y_test.to(device),
            config,
            loss,
            log=log,
            bar=bar,
        )
    with run.write_artifact("model.pt") as tmp:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    run.save_json("history.json", hist)
    run.save_json(
        "data.json",
        {
            "base_size": resolved_base(config),
            "pool_size": resolved_pool(config),
            "test_size": resolved_test(config),
            "n_train": len(x),
            "n_classes": split.n_classes,
            "input_shape": list(x.shape[1:]),
            "loss": loss,
            "sampling": config.sampling,
            "data_seed": config.data_seed_value,
            "model_seed": config.seed,
        },
    )
    return {
        "train_loss": hist["train_loss"][-1],
        "train_accuracy": hist["train_accuracy"][-1],
        "test_loss": hist["test_loss"][-1],
        "test_accuracy": hist["test_accuracy"][-1],
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_train": len(x),
    }
