"""Datasets and architectures from a user's package: registry and entry points."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

import assay
from assay.families.volume import _registry
from assay.families.volume._data import build_split
from assay.families.volume._models import build_model
from assay.families.volume._registry import DatasetSpec, ModelSpec
from assay.families.volume.stages import TrainConfig


def _line(cfg, n_train):
    """y = 1 where x > 0: a toy 1-D task, ordered by the data seed."""
    gen = torch.Generator().manual_seed(cfg.data_seed_value)
    x = torch.randn(n_train or 100, 1, generator=gen)
    xt = torch.randn(50, 1, generator=gen)
    return x, (x[:, 0] > 0).long(), xt, (xt[:, 0] > 0).long(), 2


def _tiny(cfg, input_shape, out):
    return nn.Sequential(nn.Linear(input_shape[0], 4), nn.Tanh(), nn.Linear(4, out))


@pytest.fixture
def user_package(monkeypatch):
    """A user module exposing specs, published through the two entry-point groups."""
    mod = types.ModuleType("my_volume_plugins")
    mod.LINE = DatasetSpec("line", _line, base_size=10, pool_size=40, test_size=50, loss="bce")
    mod.TINY = ModelSpec("tiny", _tiny)
    monkeypatch.setitem(sys.modules, "my_volume_plugins", mod)
    eps = {
        _registry.DATASET_GROUP: [
            EntryPoint("line", "my_volume_plugins:LINE", _registry.DATASET_GROUP)
        ],
        _registry.MODEL_GROUP: [
            EntryPoint("tiny", "my_volume_plugins:TINY", _registry.MODEL_GROUP),
            EntryPoint("broken", "my_volume_plugins:MISSING", _registry.MODEL_GROUP),
        ],
    }
    monkeypatch.setattr(_registry, "entry_points", lambda group: eps.get(group, []))
    return mod


def test_entry_point_dataset_and_model_train_without_editing_assay(user_package, tmp_path):
    cfg = TrainConfig(dataset="line", model="tiny", epochs=20, extra_samples=20, eval_every=20)
    split = build_split(cfg)
    assert len(split.x_base) == 10 and len(split.x_pool) == 40  # the spec's default sizes
    assert cfg.loss_name == "bce"  # the dataset's declared loss
    model = build_model(cfg, (1,), 2, "bce")
    assert isinstance(model[1], nn.Tanh)
    rec = assay.run_config(cfg, root=tmp_path)
    assert rec.status is assay.RunStatus.DONE
    assert rec.results["n_params"] == (1 * 4 + 4) + (4 * 1 + 1)


def test_unknown_and_broken_plugins_fail_loudly(user_package):
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; valid: swiss_roll.*line"):
        TrainConfig(dataset="nope")
    with pytest.raises(ValueError, match=r"unknown model 'nope'; valid: mlp, cnn, tiny"):
        TrainConfig(model="nope")
    cfg = TrainConfig(model="broken")  # listed, so the name validates; loading it fails clearly
    with pytest.raises(assay.ConfigError, match="model 'broken' could not be loaded from"):
        build_model(cfg, (2,), 2, "bce")


def test_register_in_python(monkeypatch):
    monkeypatch.setattr(
        _registry, "_REGISTERED", {_registry.DATASET_GROUP: {}, _registry.MODEL_GROUP: {}}
    )
    _registry.register_model(ModelSpec("tiny2", _tiny))
    assert "tiny2" in _registry.model_names()
    assert TrainConfig(model="tiny2").model == "tiny2"
    with pytest.raises(assay.ConfigError, match="expected a ModelSpec"):
        _registry.register_model(DatasetSpec("x", _line, 1, 1, 1))
