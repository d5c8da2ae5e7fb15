"""Models and per-sample losses of the minimum-volume study.

Losses are always computed per sample (``reduction="none"``): the perturbation evaluator sums
them over prefixes of the training set to get every nested landscape from one forward pass.
Every loss function here accepts logits with any leading batch dims, e.g. ``(Q, N, out)`` for Q
perturbed copies of the model, and labels ``(N,)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, get_dataset, get_model

LOSSES = ("bce", "ce", "mse")


def default_loss(dataset: str) -> str:
    # each dataset declares it: swiss roll is binary with one logit (as in the paper), modular
    # arithmetic uses MSE to the one-hot target as in the paper, image datasets cross-entropy
    return get_dataset(dataset).loss


def build_model(cfg, input_shape: tuple[int, ...], n_classes: int, loss: str) -> nn.Module:
    """A freshly initialised model; initialisation depends only on ``cfg.seed`` (model seed).

    ``torch.manual_seed(model_seed)`` right before construction, as the published ``get_model``
    does, so the same seed gives the published initial weights for the same architecture.
    """
    out = 1 if loss == "bce" else n_classes
    spec = get_model(cfg.model)
    with torch.random.fork_rng(devices=[]):  # leave the global stream alone
        torch.manual_seed(cfg.seed)
        return spec.build(cfg, tuple(input_shape), out)


def _build_mlp(cfg, input_shape: tuple[int, ...], out: int) -> nn.Sequential:
    return mlp(int(torch.tensor(input_shape).prod()), list(cfg.hidden), out)


def _build_cnn(cfg, input_shape: tuple[int, ...], out: int) -> nn.Sequential:
    return cnn(input_shape[0], list(cfg.hidden), out)


def mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    """in -> [hidden]... -> out with ReLU between layers (swiss roll: 2 -> [32]x5 -> 1)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def cnn(in_channels: int, channels: list[int], out_dim: int) -> nn.Sequential:
    """Small CNN: 3x3 convs (+ReLU) with the given channel counts, pooled to 4x4, then linear.

    Pooling to a fixed 4x4 makes the same code serve 8x8 digits, 28x28 MNIST and 32x32 CIFAR.
    """
    layers: list[nn.Module] = []
    prev = in_channels
    for c in channels:
        layers += [nn.Conv2d(prev, c, kernel_size=3, padding=1), nn.ReLU()]
        prev = c
    layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(prev * 16, out_dim)]
    return nn.Sequential(*layers)


MLP = ModelSpec("mlp", _build_mlp)
CNN = ModelSpec("cnn", _build_cnn)


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(..., N, out) logits, (N,) labels -> (..., N) losses."""
    if loss == "bce":
        z = logits.squeeze(-1)  # (..., N)
        return F.binary_cross_entropy_with_logits(z, y.to(z.dtype).expand_as(z), reduction="none")
    if loss == "ce":
        # logsumexp - logit of the true class: F.cross_entropy's value, without flattening the
        # batch dims (1.4x faster on (Q, N, C) logits, the evaluator's hot path)
        picked = logits.gather(-1, y[:, None].expand(*logits.shape[:-1], 1)).squeeze(-1)
        return torch.logsumexp(logits, dim=-1) - picked
    if loss == "mse":
        target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)  # (N, C)
        return ((logits - target) ** 2).mean(-1)
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def per_sample_correct(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(..., N, out) logits -> (..., N) float 1.0 where the prediction is right."""
    pred = (logits.squeeze(-1) > 0).long() if loss == "bce" else logits.argmax(-1)
    return (pred == y).to(logits.dtype)
