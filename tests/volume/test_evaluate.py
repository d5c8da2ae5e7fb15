"""The batched evaluator against analytic losses, the naive loop, and adaptive mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from assay.families.volume._directions import (
    flatten_params,
    param_shapes,
    random_directions,
    scale_directions,
)
from assay.families.volume._evaluate import Evaluator, adaptive_crossings, grid_curves
from assay.families.volume._models import per_sample_loss
from assay.families.volume._volume import radii_from_curves

GRID = (torch.arange(100) / 99.0) ** 2  # the paper's coefficients c_k = (k/99)^2


def linear_model() -> nn.Sequential:
    """y_hat = w x + b with w = b = 0.5: on x = 1 it outputs exactly the MSE target 1."""
    model = nn.Sequential(nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[0].bias.fill_(0.5)
    return model


def test_loss_along_a_direction_matches_the_analytic_curve():
    # theta + c D gives output 1 + c (dw + db) on x = 1, so MSE loss = c^2 (dw + db)^2
    model = linear_model()
    raw = torch.tensor([[2.0, 1.0], [0.0, -3.0]])  # (M=2, P=2): (weight, bias) per direction
    dirs = scale_directions(raw, model, "filter")  # weight row norm 0.5, bias x 1
    assert dirs.tolist() == [[1.0, 1.0], [0.0, -3.0]]
    x, y = torch.ones(1, 1), torch.zeros(1, dtype=torch.long)  # one_hot(0, 1) = [1]
    ev = Evaluator(model, flatten_params(model), dirs, x, y, [1], "mse")
    loss, _ = grid_curves(ev, GRID)  # (1, 2, 100)
    slope = torch.tensor([2.0, 3.0])  # |dw + db| per direction
    expected = GRID[None, :] ** 2 * slope[:, None] ** 2
    torch.testing.assert_close(loss[0], expected)
    # radius: first k with (k/99)^4 s^2 > tau, times ||d_raw||
    tau = 0.01
    r = radii_from_curves(loss[0].numpy(), GRID.numpy(), raw.norm(dim=1).numpy(), tau)
    for j in range(2):
        k = next(k for k in range(100) if (k / 99) ** 4 * slope[j].item() ** 2 > tau)
        assert r[j] == pytest.approx((k / 99) ** 2 * raw[j].norm().item(), rel=1e-6)


def test_identical_seeds_give_identical_directions():
    shapes = [torch.Size([32, 2]), torch.Size([32])]
    a = random_directions(shapes, 5, seed=7)
    b = random_directions(shapes, 5, seed=7)
    assert torch.equal(a, b)
    # direction j depends on seed + j only: a later block regenerates the same rows
    assert torch.equal(random_directions(shapes, 2, seed=7, start=3), a[3:])
    # and equals the published recipe: manual_seed(seed + j), then randn_like per parameter
    torch.manual_seed(7 + 1)
    ref = torch.cat([torch.randn(s).reshape(-1) for s in shapes])
    assert torch.equal(ref, a[1])
    assert not torch.equal(random_directions(shapes, 1, seed=8), a[:1])


def test_filter_unit_scaling_gives_rows_of_the_weights_norm():
    model = nn.Sequential(nn.Linear(3, 2))
    raw = random_directions(param_shapes(model), 4, seed=0)
    d = scale_directions(raw, model, "filter_unit")[:, :6].reshape(4, 2, 3)
    torch.testing.assert_close(d.norm(dim=2), model[0].weight.norm(dim=1).expand(4, 2))


def naive_curves(model, dirs, x, y, sizes, coeffs, loss):
    """The published evaluator: one forward pass per (landscape, direction, coefficient)."""
    params = list(model.parameters())
    theta = [p.detach().clone() for p in params]
    out = np.zeros((len(sizes), len(dirs), len(coeffs)), np.float32)
    with torch.no_grad():
        for li, n in enumerate(sizes):
            for j, d in enumerate(dirs):
                parts = d.split([p.numel() for p in params])
                for ci, c in enumerate(coeffs):
                    for p, t, dp in zip(params, theta, parts, strict=True):
                        p.copy_(t + c * dp.view_as(p))
                    out[li, j, ci] = per_sample_loss(model(x[:n]), y[:n], loss).mean()
        for p, t in zip(params, theta, strict=True):
            p.copy_(t)
    return out


def test_batched_exact_mode_gives_the_naive_loops_radii(trained_swiss):
    model, x, y = trained_swiss
    raw = random_directions(param_shapes(model), 6, seed=0)
    dirs = scale_directions(raw, model, "filter")
    sizes = [20, 50, len(x)]
    coeffs = GRID[::3]  # 34 points keep the naive loop fast
    ref = naive_curves(model, dirs, x, y, sizes, coeffs, "bce")
    ev = Evaluator(model, flatten_params(model), dirs, x, y, sizes, "bce")
    full, _ = grid_curves(ev, coeffs)
    np.testing.assert_allclose(full.numpy(), ref, rtol=1e-4, atol=1e-6)
    capped, _ = grid_curves(ev, coeffs, loss_cap=0.5)  # early-stopped: same radii, tau <= cap
    for tau in (0.05, 0.1, 0.5):
        for li in range(len(sizes)):
            a = radii_from_curves(ref[li], coeffs.numpy(), raw.norm(dim=1).numpy(), tau)
            b = radii_from_curves(capped[li].numpy(), coeffs.numpy(), raw.norm(dim=1).numpy(), tau)
            np.testing.assert_array_equal(a, b)


def test_exact_and_adaptive_agree_within_one_grid_step(trained_swiss):
    model, x, y = trained_swiss
    raw = random_directions(param_shapes(model), 64, seed=3)
    dirs = scale_directions(raw, model, "filter")
    sizes = [20, 50, len(x)]
    ev = Evaluator(model, flatten_params(model), dirs, x, y, sizes, "bce")
    loss, acc = grid_curves(ev, GRID)
    criteria = [("loss", 0.05), ("loss", 0.1), ("accuracy", 0.9)]
    u = adaptive_crossings(ev, criteria, coeff_max=1.0, power=2.0, tol=1 / 99)  # (nL, T, M)
    step = 1 / 99
    checked = 0
    for li in range(len(sizes)):
        for t, (kind, value) in enumerate(criteria):
            curves = (loss if kind == "loss" else acc)[li].numpy()
            with np.errstate(invalid="ignore"):
                crossed = curves > value if kind == "loss" else curves < value
            first = np.where(crossed.any(1), crossed.argmax(1), -1)
            for j in range(len(dirs)):
                if first[j] < 0:
                    assert math.isnan(u[li, t, j])
                    continue
                assert abs(u[li, t, j].item() - first[j] * step) <= step + 1e-6, (li, t, j)
                checked += 1
    assert checked > 100
    # adaptive needs far fewer points than the 100-point grid
    ev.forward_passes = 0
    adaptive_crossings(ev, criteria[:1], 1.0, 2.0, 1 / 99)
    assert ev.forward_passes < 20 * len(dirs)


def test_vmap_path_matches_the_bmm_path(trained_swiss):
    model, x, y = trained_swiss
    raw = random_directions(param_shapes(model), 4, seed=0)
    dirs = scale_directions(raw, model, "filter")
    fast = Evaluator(model, flatten_params(model), dirs, x, y, [len(x)], "bce")
    slow = Evaluator(model, flatten_params(model), dirs, x, y, [len(x)], "bce")
    slow.layers = None  # force torch.func.vmap(functional_call)
    d, c = torch.arange(4), torch.full((4,), 0.01)
    torch.testing.assert_close(fast.at(d, c)[0], slow.at(d, c)[0], rtol=1e-5, atol=1e-6)


def test_factored_first_layer_matches_the_plain_path():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    x, y = torch.randn(50, 64), torch.randint(0, 10, (50,))
    raw = random_directions(param_shapes(model), 5, seed=0)
    dirs = scale_directions(raw, model, "filter")
    fast = Evaluator(model, flatten_params(model), dirs, x, y, [20, 50], "ce")
    assert fast.first_a is not None  # 64 inputs: the factored path is used
    plain = Evaluator(model, flatten_params(model), dirs, x, y, [20, 50], "ce")
    plain.first_a = None
    d, c = torch.tensor([0, 0, 3, 4, 4]), torch.tensor([0.0, 0.1, 0.2, 0.05, 0.3])
    for a, b in zip(fast.at(d, c), plain.at(d, c), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cross_entropy_matches_torch():
    z, y = torch.randn(3, 40, 10), torch.randint(0, 10, (40,))
    ref = torch.stack([nn.functional.cross_entropy(z[i], y, reduction="none") for i in range(3)])
    torch.testing.assert_close(per_sample_loss(z, y, "ce"), ref)
