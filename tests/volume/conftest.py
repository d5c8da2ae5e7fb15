from __future__ import annotations

import pytest
import torch

from assay.families.volume._data import build_split
from assay.families.volume._models import build_model
from assay.families.volume._train import train_model
from assay.families.volume.stages import TrainConfig


@pytest.fixture(scope="session")
def trained_swiss():
    """A small swiss-roll model trained on base + 60 extra points (about 1 s)."""
    torch.set_num_threads(1)
    cfg = TrainConfig(extra_samples=60, epochs=300, pool_size=100, test_size=200, eval_every=300)
    split = build_split(cfg)
    x, y = split.train_set(cfg.extra_samples)
    model = build_model(cfg, (2,), split.n_classes, "bce")
    train_model(model, x, y, split.x_test, split.y_test, cfg, "bce")
    return model, x, y
