"""Benchmark: the published per-point evaluation loop vs batched exact and adaptive modes.

    .venv/bin/python bench/bench_volume.py                     # swiss roll + digits, ~3 min
    .venv/bin/python bench/bench_volume.py --baseline-directions 0   # time the full baseline

The published evaluator does one forward pass per (landscape, model, direction, coefficient) in a
Python loop. ``baseline`` below is that loop (parameters set to theta + c D in place, one forward
on the landscape's samples, ``.item()``). It is timed on the first ``--baseline-directions``
directions and scaled linearly to all of them (its cost is exactly linear in the direction count:
the same work per direction); the output says so. Batched modes are always timed on every
direction. Exact-mode radii are compared with the baseline's on the directions both computed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from assay.families.volume._data import build_split, resolved_base
from assay.families.volume._directions import (
    flatten_params,
    param_shapes,
    random_directions,
    scale_directions,
)
from assay.families.volume._evaluate import Evaluator, adaptive_crossings, grid_curves
from assay.families.volume._models import build_model, per_sample_loss
from assay.families.volume._train import train_model
from assay.families.volume._volume import log_volume, radii_from_curves
from assay.families.volume.stages import TrainConfig

TAUS = (0.02, 0.05, 0.1)  # the paper's thresholds
LOSS_CAP = 1.0  # PerturbConfig default: radii exact for tau <= 1


def train_all(template: TrainConfig, levels):
    split = build_split(template)
    models = []
    for k in levels:
        cfg = TrainConfig(**{**template.model_dump(), "extra_samples": k})
        x, y = split.train_set(k)
        model = build_model(cfg, tuple(x.shape[1:]), split.n_classes, cfg.loss_name)
        train_model(model, x, y, split.x_test, split.y_test, cfg, cfg.loss_name)
        models.append((k, model))
    return split, models


@torch.no_grad()
def baseline(models, split, base, dirs_by_model, coeffs, loss):
    """The published loop: {(L, k): (M, C) mean losses}, one forward per point."""
    out = {}
    for L in [k for k, _ in models]:
        x, y = split.train_set(L)
        for k, model in models:
            if k < L:
                continue
            params = list(model.parameters())
            theta = [p.detach().clone() for p in params]
            dirs = dirs_by_model[k]
            curves = np.zeros((len(dirs), len(coeffs)), np.float32)
            for j, d in enumerate(dirs):
                parts = [
                    t.view_as(p)
                    for t, p in zip(d.split([p.numel() for p in params]), params, strict=True)
                ]
                for i, c in enumerate(coeffs.tolist()):
                    for p, t, dp in zip(params, theta, parts, strict=True):
                        torch.add(t, dp, alpha=c, out=p.data)
                    curves[j, i] = per_sample_loss(model(x), y, loss).mean().item()
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)
            out[(L, k)] = curves
    return out


def batched(models, split, base, dirs_by_model, coeffs, loss, mode, grid_dtype=torch.float64):
    """Exact curves {(L, k): (M, C)} or adaptive crossings {(L, k): (T, M)}; points evaluated."""
    out, points = {}, 0
    levels = [k for k, _ in models]
    for k, model in models:
        x, y = split.train_set(k)
        lands = [land for land in levels if land <= k]
        ev = Evaluator(
            model,
            flatten_params(model),
            dirs_by_model[k],
            x,
            y,
            [base + L for L in lands],
            loss,
            grid_dtype=grid_dtype,
        )
        if mode == "exact":
            curves, _ = grid_curves(ev, coeffs, loss_cap=LOSS_CAP)
        else:
            crit = [("loss", TAUS[-1])]
            curves = adaptive_crossings(ev, crit, 1.0, 2.0, tol=1 / (len(coeffs) - 1))
        for i, L in enumerate(lands):
            out[(L, k)] = curves[i].numpy()
        points += ev.forward_passes
    return out, points


def bench(name: str, template: TrainConfig, levels, n_dirs: int, n_base_dirs: int) -> None:
    t0 = time.perf_counter()
    split, models = train_all(template, levels)
    base, loss = resolved_base(template), template.loss_name
    print(
        f"\n== {name}: levels {list(levels)}, {n_dirs} directions x 100 coefficients "
        f"(trained {len(models)} models in {time.perf_counter() - t0:.0f}s)"
    )
    coeffs = (torch.arange(100, dtype=torch.float64) / 99.0) ** 2  # the stage's float64 grid
    raw = random_directions(param_shapes(models[0][1]), n_dirs, seed=0)
    norms = raw.double().norm(dim=1).numpy()
    dirs = {k: scale_directions(raw, m, "filter") for k, m in models}
    n_sub = n_dirs if n_base_dirs <= 0 else min(n_base_dirs, n_dirs)

    t = time.perf_counter()
    ref = baseline(models, split, base, {k: d[:n_sub] for k, d in dirs.items()}, coeffs, loss)
    t_base = (time.perf_counter() - t) * n_dirs / n_sub
    # float32 grid (the previous exact mode: theta + c D formed in float32) vs the float64 grid
    # (formed in float64, rounded once); best of two runs each, alternated, to damp noise
    t_f32, t_exact = [], []
    for _ in range(2):
        t = time.perf_counter()
        exact32, _ = batched(
            models, split, base, dirs, coeffs.float(), loss, "exact", grid_dtype=torch.float32
        )
        t_f32.append(time.perf_counter() - t)
        t = time.perf_counter()
        exact, p_exact = batched(models, split, base, dirs, coeffs, loss, "exact")
        t_exact.append(time.perf_counter() - t)
    t_f32, t_exact = min(t_f32), min(t_exact)
    t = time.perf_counter()
    adapt, p_adapt = batched(models, split, base, dirs, coeffs, loss, "adaptive")
    t_adapt = time.perf_counter() - t

    compared = mismatched = 0
    for key, curves in ref.items():
        for tau in TAUS:
            a = radii_from_curves(curves, coeffs.numpy(), norms[:n_sub], tau)
            b = radii_from_curves(exact[key][:n_sub], coeffs.numpy(), norms[:n_sub], tau)
            compared += len(a)
            mismatched += int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
    off = []  # adaptive vs exact, in grid steps of u, tau = 0.1
    for key, u in adapt.items():
        first = np.argmax(np.nan_to_num(exact[key], nan=-1.0) > TAUS[-1], axis=1) / 99.0
        ok = ~np.isnan(u[0])
        off.append(np.abs(u[0][ok] - first[ok]) * 99)
    off = np.concatenate(off)
    # log V: float32 grid vs float64 grid, and adaptive vs exact (tau = 0.1)
    n_params = raw.shape[1]
    c64 = coeffs.numpy()
    d32, dad, kept, groups = [], [], 0, 0
    for L in sorted({key[0] for key in exact}):
        keys = sorted(key for key in exact if key[0] == L)
        lv_ex, lv_ad = [], []
        for key in keys:
            r64 = radii_from_curves(exact[key], c64, norms, TAUS[-1])
            r32 = radii_from_curves(
                exact32[key], c64.astype(np.float32), norms.astype(np.float32), TAUS[-1]
            )
            u = adapt[key][0].astype(np.float64)
            lv_ex.append(log_volume(r64, n_params))
            lv_ad.append(log_volume(u**2 * norms, n_params))
            a, b = lv_ex[-1], log_volume(r32, n_params)
            if np.isfinite(a) and np.isfinite(b):
                d32.append(abs(a - b))
            if np.isfinite(a) and np.isfinite(lv_ad[-1]):
                dad.append(lv_ad[-1] - a)
        if len(keys) > 1:
            groups += 1
            kept += bool(np.array_equal(np.argsort(lv_ex), np.argsort(lv_ad)))
    n_points = len(ref) * n_dirs * 100
    scaled = "" if n_sub == n_dirs else f" (timed on {n_sub} directions, x{n_dirs / n_sub:g})"
    print(f"{'method':<34}{'seconds':>9}{'points':>11}{'speedup':>9}")
    print(f"{'baseline loop' + scaled:<34}{t_base:>9.1f}{n_points:>11}{1:>9.1f}x")
    print(f"{'exact, float32 grid (before)':<34}{t_f32:>9.1f}{p_exact:>11}{t_base / t_f32:>9.1f}x")
    print(
        f"{'exact (batched, float64 grid)':<34}{t_exact:>9.1f}{p_exact:>11}"
        f"{t_base / t_exact:>9.1f}x"
    )
    print(
        f"{'adaptive (bisection, tau=0.1)':<34}{t_adapt:>9.1f}{p_adapt:>11}"
        f"{t_base / t_adapt:>9.1f}x"
    )
    print(
        f"exact radii vs baseline: {compared - mismatched}/{compared} identical "
        f"(taus {TAUS}, {len(ref)} landscape x model pairs)"
    )
    print(
        f"float64 grid costs {100 * (t_exact / t_f32 - 1):+.1f}% over the float32 grid "
        f"(target <= +10%); |log V(float64) - log V(float32)| max {max(d32):.2e}, "
        f"mean {np.mean(d32):.2e} over {len(d32)} (landscape, model) pairs, tau=0.1"
    )
    dad = np.array(dad)
    print(
        f"adaptive - exact log V (tau=0.1, tolerance 1 grid step): mean {dad.mean():+.1f}, "
        f"range {dad.min():+.1f} .. {dad.max():+.1f} over {len(dad)} pairs; model ranking "
        f"kept in {kept}/{groups} landscapes"
    )
    within = int((off <= 1 + 1e-6).sum())
    print(
        f"adaptive vs exact crossing (tau=0.1): {within}/{len(off)} within one grid step; "
        f"max {off.max():.2f} steps (a non-monotone curve: bisection found another crossing)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: measured fastest and steadiest on a 2-core VM)",
    )
    ap.add_argument("--directions", type=int, default=1000)
    ap.add_argument(
        "--baseline-directions",
        type=int,
        default=100,
        help="time the baseline on this many directions and scale (0 = all)",
    )
    ap.add_argument("--no-digits", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, CPU")
    swiss = TrainConfig(epochs=1000, eval_every=1000)
    bench(
        "swiss roll MLP 2-[32]x5-1",
        swiss,
        (0, 30, 80, 180, 380, 780),
        args.directions,
        args.baseline_directions,
    )
    if not args.no_digits:
        digits = TrainConfig(dataset="digits", hidden=(64, 64), epochs=300, eval_every=300)
        bench(
            "digits MLP 64-[64]x2-10",
            digits,
            (0, 200, 500, 1000),
            args.directions // 5,
            max(0, args.baseline_directions // 5),
        )


if __name__ == "__main__":
    main()
