"""volume.train: train one model on base ++ the first ``extra_samples`` pool samples.

    assay run suites/volume/swiss_roll_low_data_smoke.yaml   # trains every level as upstream

Saves ``model.pt`` (state_dict), ``history.json`` (train/test loss and accuracy per epoch),
``data.json`` (the resolved sizes, so every choice is on record) and returns the final metrics.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator

from assay import Run, StageConfig, configure_torch, resolve_device, stage

from ._data import DATASETS, build_split, resolved_base, resolved_pool, resolved_test
from ._models import build_model, default_loss


class TrainConfig(StageConfig):
    # --- data -------------------------------------------------------------------------------
    dataset: str = "swiss_roll"
    regime: Literal["data", "poison", "noise", "imbalance"] = "data"
    extra_samples: int = Field(0, ge=0)  # k: train on base ++ pool[:k]
    base_size: int | None = Field(None, ge=1)  # None: the dataset's default (_data.DEFAULTS)
    pool_size: int | None = Field(None, ge=0)  # additional samples available (cutoff range)
    test_size: int | None = Field(None, ge=1)
    noise: float = Field(0.3, ge=0)  # swiss roll: std of the Gaussian jitter (paper: 0.3)
    rotations: float = Field(1.7, gt=0)  # swiss roll: turns of each spiral (paper: 1.7)
    modulus: int = Field(23, ge=2)  # modular addition: p (p*p pairs in all)
    imbalance_classes: tuple[int, ...] = (0,)  # imbalance regime: the over-represented classes
    imbalance_fraction: float = Field(0.9, ge=0, le=1)
    data_dir: str = "data"  # MNIST/CIFAR-10 only; never downloaded
    # --- model and loss -----------------------------------------------------------------------
    model: Literal["mlp", "cnn"] = "mlp"
    hidden: tuple[int, ...] = (32, 32, 32, 32, 32)  # MLP widths, or CNN channels
    loss: Literal["auto", "bce", "ce", "mse"] = "auto"  # auto: bce swiss, mse modular, else ce
    # --- optimisation -------------------------------------------------------------------------
    epochs: int = Field(1000, ge=1)
    lr: float = Field(1e-3, gt=0)
    # 0: the minimum is shaped by the data alone; decay would also shrink the filter norms the
    # perturbation directions are scaled by
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int | None = Field(None, ge=1)  # None: full batch (the paper's default)
    optimizer: Literal["adamw", "sam"] = "adamw"  # sam: SAM around AdamW
    sam_rho: float = Field(0.05, gt=0)  # SAM neighbourhood radius (Foret et al. default)
    sam_adaptive: bool = False  # ASAM: scale the ascent step by |w|
    eval_every: int = Field(10, ge=1)  # test metrics every this many epochs (and the last)
    seed: int = 0  # data, initialisation and minibatch order
    device: str = "cpu"
    num_threads: int = 0  # 0: $ASSAY_NUM_THREADS or torch's default
    identity_exclude: ClassVar[frozenset[str]] = frozenset({"device", "num_threads", "data_dir"})

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; valid: {', '.join(DATASETS)}")
        return v

    @property
    def loss_name(self) -> str:
        return default_loss(self.dataset) if self.loss == "auto" else self.loss


@stage("volume.train", config=TrainConfig, version=1, smoke={"epochs": 30, "pool_size": 100})
def train(config: TrainConfig, run: Run) -> dict:
    """Train one model; see the module docstring."""
    configure_torch(config.num_threads)
    device = resolve_device(config.device)
    split = build_split(config)
    x, y = split.train_set(config.extra_samples)
    loss = config.loss_name
    model = build_model(config, tuple(x.shape[1:]), split.n_classes, loss).to(device)

    def log(epoch, train_loss, test_loss, test_acc):
        run.log_metrics(
            step=epoch, train_loss=train_loss, test_loss=test_loss, test_accuracy=test_acc
        )

    from ._train import train_model

    hist = train_model(model, x.to(device), y.to(device), split.x_test.to(device),
                       split.y_test.to(device), config, loss, log=log)  # fmt: skip
    with run.write_artifact("model.pt") as tmp:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    run.save_json("history.json", hist)
    run.save_json("data.json", {
        "base_size": resolved_base(config), "pool_size": resolved_pool(config),
        "test_size": resolved_test(config), "n_train": len(x), "n_classes": split.n_classes,
        "input_shape": list(x.shape[1:]), "loss": loss,
    })  # fmt: skip
    return {
        "train_loss": hist["train_loss"][-1],
        "train_accuracy": hist["train_accuracy"][-1],
        "test_loss": hist["test_loss"][-1],
        "test_accuracy": hist["test_accuracy"][-1],
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_train": len(x),
    }
