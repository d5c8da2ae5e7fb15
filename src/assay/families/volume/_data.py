"""Datasets and data regimes of the minimum-volume study.

Every dataset is split the same way: a fixed *base* training set, an ordered *pool* of
additional samples (the regime decides what they are: clean, poisoned, noise, imbalanced) and a
test set. The model of level ``k`` trains on ``base ++ pool[:k]``; the loss landscape of level
``L`` is the training loss on ``base ++ pool[:L]``. Because the pool is generated from the seed
alone (never from ``k``), every model of one seed sees the same first ``k`` samples.

Nothing here downloads: MNIST/CIFAR-10 are read through torchvision from ``data_dir`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from assay import ConfigError

from ._registry import DatasetSpec, get_dataset

REGIMES = ("data", "poison", "noise", "imbalance")


@dataclass(frozen=True)
class Split:
    """One seed's data. Labels are class indices (int64) for every task."""

    x_base: torch.Tensor  # (B, *input_shape)
    y_base: torch.Tensor  # (B,)
    x_pool: torch.Tensor  # (P, *input_shape), ordered: level k uses the first k
    y_pool: torch.Tensor  # (P,)
    x_test: torch.Tensor  # (T, *input_shape)
    y_test: torch.Tensor  # (T,)
    n_classes: int

    def train_set(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``base ++ pool[:k]``: the training set of level ``k`` (also landscape ``k``)."""
        check_level(k, len(self.x_pool), what="level")
        return torch.cat([self.x_base, self.x_pool[:k]]), torch.cat([self.y_base, self.y_pool[:k]])


def check_level(k: int, pool: int, what: str) -> None:
    if k < 0 or k > pool:
        raise ConfigError(
            f"{what} {k} is larger than the data: the pool holds {pool} additional samples "
            f"(valid: 0..{pool}). Lower the {what} or raise `pool_size` (the dataset may cap it)."
        )


# ---------------------------------------------------------------------------------------------
# Raw datasets: (x_all, y_all, x_test, y_test, n_classes), nothing regime-specific yet.


def two_spirals(n_per_class: int, noise: float, rotations: float, seed: int):
    """Two interleaved spirals ("swiss roll"): radius grows with angle, class 1 is class 0 x -1."""
    gen = torch.Generator().manual_seed(seed)
    # sqrt makes points uniform in area rather than in angle (as in the paper's generator)
    angle = torch.sqrt(torch.rand(n_per_class, 1, generator=gen)) * rotations * 2 * math.pi
    dx = -1.5 * torch.cos(angle) * angle + torch.randn(n_per_class, 1, generator=gen) * noise
    dy = 1.5 * torch.sin(angle) * angle + torch.randn(n_per_class, 1, generator=gen) * noise
    arm = torch.cat([dx, dy], dim=1)  # (n, 2)
    x = torch.cat([arm, -arm])  # (2n, 2)
    y = torch.cat([torch.zeros(n_per_class), torch.ones(n_per_class)]).long()
    return x, y


def _swiss_roll(cfg, n_train: int | None):
    n_train = n_train or 4 * (resolved_base(cfg) + resolved_pool(cfg))
    seed = cfg.data_seed_value
    x, y = two_spirals(math.ceil(n_train / 2), cfg.noise, cfg.rotations, seed)
    # the test seed is offset so test points never coincide with training points
    xt, yt = two_spirals(math.ceil(resolved_test(cfg) / 2), cfg.noise, cfg.rotations, seed + 1)
    return x, y, xt[: resolved_test(cfg)], yt[: resolved_test(cfg)], 2


def _digits(cfg, n_train: int | None):
    from sklearn.datasets import load_digits

    x_np, y_np = load_digits(return_X_y=True)  # (1797, 64) in 0..16, bundled with sklearn
    x = torch.tensor(x_np, dtype=torch.float32) / 16.0
    if cfg.model == "cnn":
        x = x.reshape(-1, 1, 8, 8)
    y = torch.tensor(y_np, dtype=torch.long)
    return _holdout(x, y, cfg, n_train, n_classes=10)


def _modular(cfg, n_train: int | None):
    p = cfg.modulus
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)  # (p*p,)
    eye = torch.eye(p)
    x = torch.cat([eye[a], eye[b]], dim=1)  # (p*p, 2p): one-hot a ++ one-hot b
    y = (a + b) % p
    return _holdout(x, y, cfg, n_train, n_classes=p)


def _torchvision(cfg, n_train: int | None):
    try:
        import torchvision
    except ImportError as e:
        raise ConfigError(
            f"dataset {cfg.dataset!r} needs torchvision, which is not installed. Install it with "
            "`.venv/bin/python -m pip install -c constraints.txt torchvision` or use one of "
            "'swiss_roll', 'digits', 'modular'."
        ) from e
    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}
    try:
        train = cls[cfg.dataset](cfg.data_dir, train=True, download=False)
        test = cls[cfg.dataset](cfg.data_dir, train=False, download=False)
    except RuntimeError as e:  # torchvision raises RuntimeError("Dataset not found ...")
        raise ConfigError(
            f"dataset {cfg.dataset!r} was not found under data_dir={cfg.data_dir!r} and assay "
            f"never downloads. Put the torchvision copy there (e.g. run torchvision.datasets."
            f"{cls[cfg.dataset].__name__}(root, download=True) once yourself) or set data_dir."
        ) from e

    def tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N, C, H, W)
        if cfg.model == "mlp":
            x = x.flatten(1)
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    x, y = tensors(train)
    xt, yt = tensors(test)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.data_seed_value))
    return (
        x[perm][:n_train],
        y[perm][:n_train],
        xt[: resolved_test(cfg)],
        yt[: resolved_test(cfg)],
        10,
    )


def _holdout(x, y, cfg, n_train: int | None, n_classes: int):
    """Shuffle once by seed; the last ``test_size`` samples are the test set."""
    n_train = n_train or len(x) - resolved_test(cfg)
    if n_train + resolved_test(cfg) > len(x):
        raise ConfigError(
            f"dataset {cfg.dataset!r} has {len(x)} samples but base_size + pool_size + test_size "
            f"= {n_train} + {resolved_test(cfg)} = {n_train + resolved_test(cfg)}. Lower pool_size "
            f"(at most {len(x) - resolved_test(cfg) - resolved_base(cfg)}) or test_size."
        )
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.data_seed_value))
    x, y = x[perm], y[perm]
    test = slice(len(x) - resolved_test(cfg), len(x))
    return x[:n_train], y[:n_train], x[test], y[test], n_classes


# The built-in datasets, found by the plug-in registry under these names. Default sizes follow
# the paper's public runs where they exist (swiss roll: 20 base points, landscapes up to 780 extra
# samples, 1000 spare pool samples for the cutoff, 2 x 2000 test points).
SWISS_ROLL = DatasetSpec("swiss_roll", _swiss_roll, 20, 1780, 4000, loss="bce")
DIGITS = DatasetSpec("digits", _digits, 100, 1097, 600)  # 1797 images in all
MODULAR = DatasetSpec("modular", _modular, 100, 300, 129, loss="mse")  # p=23: 529 pairs
MNIST = DatasetSpec("mnist", _torchvision, 500, 50000, 10000)
CIFAR10 = DatasetSpec("cifar10", _torchvision, 500, 45000, 10000)


def resolved_base(cfg) -> int:
    return cfg.base_size if cfg.base_size is not None else get_dataset(cfg.dataset).base_size


def resolved_test(cfg) -> int:
    return cfg.test_size if cfg.test_size is not None else get_dataset(cfg.dataset).test_size


def resolved_pool(cfg) -> int:
    return cfg.pool_size if cfg.pool_size is not None else get_dataset(cfg.dataset).pool_size


# ---------------------------------------------------------------------------------------------
# Regimes: what the additional pool samples are.


def build_split(cfg) -> Split:
    """The base/pool/test split of ``cfg`` (a TrainConfig); depends on the data seed, never on k."""
    if cfg.sampling == "origin":
        return origin_split(cfg)
    base, pool = resolved_base(cfg), resolved_pool(cfg)
    # imbalance draws from everything the dataset holds (None), the others from what they need
    n_raw = None if cfg.regime == "imbalance" else base + pool
    x, y, xt, yt, n_classes = get_dataset(cfg.dataset).load(cfg, n_raw)
    rng = np.random.default_rng(cfg.data_seed_value)
    order = rng.permutation(len(x))  # (N,) random order of the raw training samples
    if cfg.regime == "imbalance":
        order = _imbalanced_order(order, y.numpy(), cfg, base, pool, rng)
    base_idx, pool_idx = order[:base], order[base : base + pool]
    xb, yb = x[base_idx], y[base_idx]
    xp, yp = x[pool_idx], y[pool_idx]
    gen = torch.Generator().manual_seed(cfg.data_seed_value + 2)  # regime noise: own stream
    if cfg.regime == "poison":
        # a uniformly random *wrong* label: shift by 1..C-1 classes
        yp = (yp + torch.randint(1, n_classes, yp.shape, generator=gen)) % n_classes
    elif cfg.regime == "noise":
        # pure-noise inputs with the base inputs' overall mean/std, and random labels
        mean, std = xb.mean(), xb.std()
        xp = torch.randn(xp.shape, generator=gen) * std + mean
        yp = torch.randint(0, n_classes, yp.shape, generator=gen)
    return Split(xb, yb, xp, yp, xt, yt, n_classes)


def _imbalanced_order(order, y, cfg, base: int, pool: int, rng) -> np.ndarray:
    """Reorder so that base and pool each hold ``imbalance_fraction`` target-class samples."""
    target = np.isin(y[order], np.asarray(cfg.imbalance_classes))
    tgt, rest = list(order[target]), list(order[~target])
    out: list[int] = []
    for size in (base, pool):
        n_t = round(size * cfg.imbalance_fraction)
        n_r = size - n_t
        if n_t > len(tgt) or n_r > len(rest):
            raise ConfigError(
                f"imbalance_fraction={cfg.imbalance_fraction} of classes "
                f"{list(cfg.imbalance_classes)} needs {n_t} target and {n_r} other samples for a "
                f"split of {size}, but {cfg.dataset!r} has {len(tgt)} and {len(rest)} left. "
                "Lower pool_size/base_size or change the fraction."
            )
        chunk = np.array(tgt[:n_t] + rest[:n_r])
        del tgt[:n_t], rest[:n_r]
        out.extend(rng.permutation(chunk).tolist())
    return np.asarray(out)


# ---------------------------------------------------------------------------------------------
# `sampling: origin`: the published generator and split, draw for draw.


def origin_split(cfg) -> Split:
    """The published swiss-roll split (``get_dataset`` + index choice of the paper's notebooks).

    Per arm, base + pool + ``extra_points`` points (20 + 780 + 1000 = 1800: 3600 in all) from one
    generator seeded with the data seed, arm 1 then arm 2 (``two_spirals``); the test set the same
    way from data seed + 1. Base indices are ``np.random.seed(s); choice(N, base)``, the pool is
    ``np.random.seed(s); choice(setdiff1d(arange(N), base), pool)`` (a RandomState of its own
    gives the same draws without touching numpy's global state).
    """
    if cfg.dataset != "swiss_roll" or cfg.regime != "data":
        raise ConfigError(
            f"sampling 'origin' reproduces the published swiss-roll low-data split only; got "
            f"dataset={cfg.dataset!r}, regime={cfg.regime!r}. Use sampling: native (the default) "
            "for other datasets and regimes."
        )
    base, pool, seed = resolved_base(cfg), resolved_pool(cfg), cfg.data_seed_value
    per_arm = base + pool + cfg.extra_points
    x, y = two_spirals(per_arm, cfg.noise, cfg.rotations, seed)  # (2 per_arm, 2)
    n_test = resolved_test(cfg)
    xt, yt = two_spirals(math.ceil(n_test / 2), cfg.noise, cfg.rotations, seed + 1)
    n = len(x)
    base_idx = np.random.RandomState(seed).choice(n, base, replace=False)
    rest = np.setdiff1d(np.arange(n), base_idx)
    pool_idx = np.random.RandomState(seed).choice(rest, pool, replace=False)
    return Split(x[base_idx], y[base_idx], x[pool_idx], y[pool_idx], xt[:n_test], yt[:n_test], 2)
