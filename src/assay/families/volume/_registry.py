"""Datasets and architectures as plug-ins: a user package adds one without editing assay.

    # in your package's pyproject.toml
    [project.entry-points."assay.volume.datasets"]
    two_moons = "my_pkg.volume:TWO_MOONS"       # a DatasetSpec
    [project.entry-points."assay.volume.models"]
    resmlp = "my_pkg.volume:RESMLP"             # a ModelSpec

then ``train: {dataset: two_moons, model: resmlp}`` in a suite. In a notebook or test,
``register_dataset(spec)`` / ``register_model(spec)`` do the same without packaging.

Names are stored in run configs, so they must stay stable. Listing skips a broken plug-in with a
log line; looking a name up fails loudly with the available names. The built-ins are found the
same way, by "module:attribute" strings, so this module imports neither torch nor the builtins.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from assay import ConfigError

logger = logging.getLogger("assay.volume")

DATASET_GROUP = "assay.volume.datasets"
MODEL_GROUP = "assay.volume.models"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the minimum-volume study.

    ``load(cfg, n_train)`` returns ``(x, y, x_test, y_test, n_classes)``: ``x`` (N, *input)
    float tensors with N >= n_train training candidates in a seed-determined order (``n_train``
    None: everything), ``y`` (N,) int64 class labels, the same for the test set. ``cfg`` is the
    TrainConfig (read ``cfg.data_seed_value``, sizes, ``cfg.options``). The family turns this
    into base / pool / test and applies the regime (poison, noise, imbalance).
    """

    name: str
    load: Callable[[Any, int | None], tuple]
    base_size: int  # defaults used when a TrainConfig leaves a size at None
    pool_size: int
    test_size: int
    loss: str = "ce"  # "auto" resolves to this: "bce" (one logit), "ce" or "mse"


@dataclass(frozen=True)
class ModelSpec:
    """An architecture: ``build(cfg, input_shape, n_out) -> nn.Module``, freshly initialised.

    The family seeds torch with ``cfg.seed`` (the model seed) right before calling ``build``.
    """

    name: str
    build: Callable[[Any, tuple[int, ...], int], Any]


_BUILTIN_DATASETS = {
    name: f"assay.families.volume._data:{name.upper()}"
    for name in ("swiss_roll", "digits", "modular", "mnist", "cifar10")
}
_BUILTIN_MODELS = {
    name: f"assay.families.volume._models:{name.upper()}" for name in ("mlp", "cnn")
}
_REGISTERED: dict[str, dict[str, Any]] = {DATASET_GROUP: {}, MODEL_GROUP: {}}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset by hand (notebooks, tests); entry points are the packaged route."""
    return _register(DATASET_GROUP, spec, DatasetSpec)


def register_model(spec: ModelSpec) -> ModelSpec:
    return _register(MODEL_GROUP, spec, ModelSpec)


def _register(group: str, spec, cls):
    if not isinstance(spec, cls):
        raise ConfigError(f"{group}: expected a {cls.__name__}, got {type(spec).__name__}")
    _REGISTERED[group][spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    return _names(DATASET_GROUP, _BUILTIN_DATASETS)


def model_names() -> list[str]:
    return _names(MODEL_GROUP, _BUILTIN_MODELS)


def get_dataset(name: str) -> DatasetSpec:
    return _get(DATASET_GROUP, _BUILTIN_DATASETS, name, DatasetSpec, "dataset")


def get_model(name: str) -> ModelSpec:
    return _get(MODEL_GROUP, _BUILTIN_MODELS, name, ModelSpec, "model")


def _sources(group: str, builtins: dict[str, str]) -> dict[str, Any]:
    """name -> spec or "module:attr" / EntryPoint still to load; later sources win."""
    found: dict[str, Any] = dict(builtins)
    for ep in entry_points(group=group):
        found[ep.name] = ep
    found.update(_REGISTERED[group])
    return found


def _names(group: str, builtins: dict[str, str]) -> list[str]:
    return list(_sources(group, builtins))


def _get(group: str, builtins: dict[str, str], name: str, cls, what: str):
    sources = _sources(group, builtins)
    if name not in sources:
        raise ConfigError(
            f"unknown {what} {name!r}; valid: {', '.join(sources)}. A package adds one through "
            f"the {group!r} entry point group (or register_{what}() in Python)."
        )
    src = sources[name]
    if isinstance(src, cls):
        return src
    try:
        spec = _load(src)
    except Exception as exc:  # a broken plug-in names itself, never a bare traceback
        logger.warning("cannot load %s %r from %s: %s", what, name, src, exc)
        raise ConfigError(f"{what} {name!r} could not be loaded from {src}: {exc}") from exc
    if not isinstance(spec, cls):
        raise ConfigError(
            f"{what} {name!r} from {src} is a {type(spec).__name__}, not a {cls.__name__}"
        )
    return spec


def _load(src) -> Any:
    if isinstance(src, str):
        module, _, attr = src.partition(":")
        return getattr(importlib.import_module(module), attr)
    return src.load()  # an importlib.metadata.EntryPoint
