"""`sampling: origin` against an independent re-implementation of the published code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from assay.core._config import run_id
from assay.families.volume._data import build_split
from assay.families.volume._models import build_model
from assay.families.volume._train import sam_step, train_model
from assay.families.volume.stages import PerturbConfig, TrainConfig

ORIGIN = dict(sampling="origin", base_size=20, pool_size=780, test_size=4000, data_seed=10)


def published_two_spirals(n_points, noise, seed):
    """The published generator (minima_volume/models/swiss_model_data.py), restated."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    n = torch.sqrt(torch.rand(n_points, 1, generator=gen)) * 1.7 * (2 * np.pi)
    n1 = torch.randn(n_points, 1, generator=gen) * noise
    n2 = torch.randn(n_points, 1, generator=gen) * noise
    d1x = -1.5 * torch.cos(n) * n + n1
    d1y = 1.5 * torch.sin(n) * n + n2
    pts = torch.cat((torch.cat((d1x, d1y), dim=1), torch.cat((-d1x, -d1y), dim=1)), dim=0)
    return pts, torch.cat((torch.zeros(n_points), torch.ones(n_points)), dim=0)


def published_split(data_seed, base=20, levels=(0, 30, 80, 180, 380, 780), extra=1000):
    x, y = published_two_spirals(base + max(levels) + extra, 0.3, data_seed)
    xt, yt = published_two_spirals(2000, 0.3, data_seed + 1)
    np.random.seed(data_seed)
    base_idx = np.random.choice(len(x), base, replace=False)
    np.random.seed(data_seed)
    rest = np.setdiff1d(np.arange(len(x)), base_idx)
    pool_idx = np.random.choice(rest, max(levels), replace=False)
    return x[base_idx], y[base_idx], x[pool_idx], y[pool_idx], xt, yt


def test_origin_split_is_the_published_split_draw_for_draw():
    split = build_split(TrainConfig(**ORIGIN))
    xb, yb, xp, yp, xt, yt = published_split(10)
    assert len(xb) == 20 and len(xp) == 780 and len(xt) == 4000
    for ours, ref in ((split.x_base, xb), (split.x_pool, xp), (split.x_test, xt)):
        assert torch.equal(ours, ref)
    for ours, ref in ((split.y_base, yb), (split.y_pool, yp), (split.y_test, yt)):
        assert torch.equal(ours.float(), ref)
    # numpy's global stream is left alone (a RandomState of our own draws the same indices)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    build_split(TrainConfig(**ORIGIN))
    assert np.array_equal(np.random.get_state()[1], state)


def test_data_seed_and_model_seed_are_independent():
    a = TrainConfig(**ORIGIN, seed=0)
    b = TrainConfig(**{**ORIGIN, "data_seed": 11}, seed=0)
    c = TrainConfig(**ORIGIN, seed=1)
    assert torch.equal(build_split(a).x_base, build_split(c).x_base)  # data from data_seed only
    assert not torch.equal(build_split(a).x_base, build_split(b).x_base)
    wa, wb, wc = (build_model(t, (2,), 2, "bce")[0].weight for t in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)  # init from the model seed only
    torch.manual_seed(0)  # the published get_model: manual_seed, then the network
    ref = nn.Sequential(nn.Linear(2, 32))
    assert torch.equal(wa, ref[0].weight)
    # native: data_seed None means the model seed, so every existing run keeps its data and id
    assert TrainConfig(seed=3).data_seed_value == 3
    assert run_id("volume.train", 1, TrainConfig()) == "volume_train_ec7072ba53b1"
    cfg = TrainConfig(extra_samples=30, epochs=300, seed=2)
    assert run_id("volume.train", 1, cfg) == "volume_train_f378c5ba149c"


def published_training(model, x, y, epochs):
    """minima_volume/train_funcs.train with randperm_indices=False, full batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    criterion = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        idx = torch.arange(len(x))
        opt.zero_grad()
        loss = criterion(model(x[idx]).squeeze(), y[idx])
        loss.backward()
        opt.step()


def test_origin_training_matches_the_published_loop_bit_for_bit():
    torch.set_num_threads(1)
    cfg = TrainConfig(**ORIGIN, extra_samples=80, epochs=40, weight_decay=0.01, eval_every=40)
    split = build_split(cfg)
    x, y = split.train_set(80)
    ours = build_model(cfg, (2,), 2, "bce")
    train_model(ours, x, y, split.x_test[:100], split.y_test[:100], cfg, "bce")
    torch.manual_seed(cfg.seed)
    ref = nn.Sequential(*build_model(cfg, (2,), 2, "bce"))  # same init, fresh copy
    published_training(ref, x, y.float(), 40)
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sam_adaptive_scaling_asam_vs_published():
    """ASAM: e = rho |w|^2 g / || |w| g ||; published: rho |w| g / || |w| g ||."""

    def grad_at_perturbed(origin):
        model = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(2.0)
        x, t = torch.tensor([[1.0]]), torch.tensor([[0.0]])
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # keep w: inspect the SAM gradient

        def closure():
            return ((model(x) - t) ** 2).mean()

        opt.zero_grad()
        sam_step(model, closure, opt, rho=0.5, adaptive=True, origin=origin)
        assert model.weight.item() == 2.0  # restored after the ascent step
        return model.weight.grad.item()

    # loss (w)^2, g = 2w = 4 at w = 2; || |w| g || = 8
    w, g, rho = 2.0, 4.0, 0.5
    asam = w + rho * w**2 * g / (w * g)  # w + e = 3.0
    published = w + rho * w * g / (w * g)  # 2.5
    assert grad_at_perturbed(False) == pytest.approx(2 * asam)
    assert grad_at_perturbed(True) == pytest.approx(2 * published)


def test_origin_needs_the_published_pool_and_dataset():
    with pytest.raises(ValueError, match="set train.pool_size: 780"):
        PerturbConfig(train=TrainConfig(**{**ORIGIN, "pool_size": 1000}))
    with pytest.raises(ValueError, match="sampling 'origin' reproduces the published swiss-roll"):
        TrainConfig(sampling="origin", dataset="digits")
    with pytest.raises(ValueError, match="sampling 'origin'"):
        TrainConfig(sampling="origin", regime="poison")


def test_coefficients_and_radii_are_float64():
    c = PerturbConfig().coefficients()
    assert c.dtype == np.float64
    np.testing.assert_array_equal(c, (np.arange(100) / 99.0) ** 2)
    # the float32 grid is off by ~1e-7 relative, which is n * 1e-7 ~ 1e-3 in log V (n = 4353)
    off = 4353 * np.abs(np.log(c[1:].astype(np.float32).astype(np.float64)) - np.log(c[1:]))
    assert off.max() > 1e-4
    assert math.isclose(float(c[50]), (50 / 99) ** 2, rel_tol=0, abs_tol=0)
