"""volume.perturb: walk every trained model along the same random directions.

    assay run suites/volume/swiss_roll_low_data_smoke.yaml

Upstream: one ``volume.train`` run per level in ``levels`` (x each value of ``vary``), computed
from the ``train`` template. For each model of level k and each landscape L <= k it caches, in
``curves.npz``:

* exact mode: the mean training loss and accuracy in landscape L at every grid coefficient
  c_i = coefficient_max * (i / (n_coefficients - 1)) ** grid_power along every direction, as
  float32 (n_models, n_landscapes, M, C), NaN where not evaluated. Any tau <= loss_cap can then
  be answered by ``volume.volume`` without a single forward pass.
* adaptive mode: the bisected crossing of each listed threshold (tau-dependent by nature, so
  the thresholds are part of this stage's config).

plus each model's unperturbed per-sample losses on base ++ the whole pool (volume cutoff), and
``histories.json`` (every model's training curves, for the volume stage's plots).

Coefficients are float64 and each point's parameters theta + c D are formed in float64 and
rounded once to the model's dtype: the float32 grid was off by up to 1e-3 in log V.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from assay import Run, stage
from assay.ml import TorchConfig, setup_torch

from ._stage_train import TrainConfig

VARIABLE = Literal["batch_size", "epochs", "lr", "sam_rho", "weight_decay"]


class PerturbConfig(TorchConfig):
    """``dtype`` is the dtype of the perturbed forward passes (the trained models are cast to
    it). ``seed`` seeds nothing here: directions come from ``perturbation_seed``, so a suite's
    ``seeds:`` (which sets every ``seed``) gives every seed the same directions, as published;
    ``seed`` is therefore not part of this stage's run id (its ``train`` seed is)."""

    train: TrainConfig = Field(
        TrainConfig(),
        description="template of the models: each is this volume.train config at one level (and vary value)",
    )
    levels: tuple[int, ...] = Field(
        (0, 30, 80, 180, 380, 780),
        description="extra-sample levels k, one model each (the paper's swiss-roll levels)",
    )
    vary: VARIABLE | None = Field(
        None,
        description="fixed-dataset variation: one model per value of this train field; null: none",
    )
    values: tuple[float, ...] = Field((), description="the values of vary (give both or neither)")
    landscapes: tuple[int, ...] | None = Field(
        None, description="levels whose training-loss landscapes are evaluated; null: the levels"
    )
    n_directions: int = Field(1000, ge=1, description="random directions M per model")
    perturbation_seed: int = Field(
        0, description="direction j is drawn with seed perturbation_seed + j"
    )
    n_coefficients: int = Field(100, ge=2, description="grid coefficients C along each direction")
    coefficient_max: float = Field(
        1.0, gt=0, description="largest coefficient c_max along a (scaled) direction"
    )
    grid_power: float = Field(
        2.0,
        gt=0,
        description="c_i = c_max (i / (C - 1)) ^ grid_power: fine steps near the minimum",
    )
    scaling: Literal["filter", "filter_unit"] = Field(
        "filter",
        description="filter: each direction row times the trained row's norm; filter_unit: Li et al. (2018), unit rows first",
    )
    mode: Literal["exact", "adaptive"] = Field(
        "exact",
        description="exact: the loss on the whole grid (any tau later); adaptive: bisect the listed thresholds",
    )
    # exact mode: stop a direction once every landscape's loss exceeded this. Radii are then
    # exact for every tau <= loss_cap (the paper uses tau <= 0.1); None evaluates the full grid.
    loss_cap: float | None = Field(
        1.0,
        gt=0,
        description="exact: stop a direction once its loss exceeds this (exact for every tau below it); null: the full grid",
    )
    accuracy_floor: float | None = Field(
        None,
        ge=0,
        le=1,
        description="exact: also run until the accuracy drops below this; null: no floor",
    )
    thresholds: tuple[float, ...] = Field(
        (), description="adaptive mode: the loss thresholds tau to bisect"
    )
    accuracy_thresholds: tuple[float, ...] = Field(
        (), description="adaptive mode: the accuracy criteria to bisect"
    )
    tolerance: float | None = Field(
        None,
        gt=0,
        description="adaptive mode: bisection tolerance in grid steps of u; null: one step",
    )
    identity_exclude: ClassVar[frozenset[str]] = frozenset({"device", "num_threads", "seed"})

    @model_validator(mode="after")
    def _check(self) -> PerturbConfig:
        if (
            not self.levels
            or any(k < 0 for k in self.levels)
            or len(set(self.levels)) != len(self.levels)
        ):
            raise ValueError(f"levels must be distinct non-negative integers, got {self.levels}")
        if (self.vary is None) != (len(self.values) == 0):
            raise ValueError(
                f"vary={self.vary!r} and values={self.values}: give both (e.g. vary: batch_size, "
                "values: [16, 800]) or neither"
            )
        from ._data import resolved_pool

        pool = resolved_pool(self.train)
        if max(self.levels) > pool:
            raise ValueError(
                f"level {max(self.levels)} is larger than the data: {self.train.dataset!r} has a "
                f"pool of {pool} additional samples (train.pool_size). Lower the levels or raise "
                "train.pool_size (the dataset may cap it)."
            )
        if self.train.sampling == "origin" and pool != max(self.levels):
            raise ValueError(
                f"sampling origin draws the published pool of exactly max(levels) = "
                f"{max(self.levels)} samples, but train.pool_size is {pool}; set "
                f"train.pool_size: {max(self.levels)} (the published split depends on it)"
            )
        lands = self.landscape_levels
        if not lands:
            raise ValueError("landscapes is empty; list at least one level, e.g. [0]")
        if any(L < 0 for L in lands) or max(lands) > max(self.levels):
            raise ValueError(
                f"landscapes {list(lands)} must lie in 0..{max(self.levels)} (the largest model "
                "level): a landscape is only evaluated by models trained on at least its data"
            )
        for t in self.thresholds:
            if t <= 0:
                raise ValueError(f"thresholds must be > 0 (absolute loss), got {t}")
        if self.mode == "adaptive" and not (self.thresholds or self.accuracy_thresholds):
            raise ValueError(
                "mode adaptive bisects the crossing of given thresholds; set thresholds (e.g. "
                "[0.1]) or accuracy_thresholds, or use mode exact (caches tau-free curves)"
            )
        return self

    @property
    def landscape_levels(self) -> tuple[int, ...]:
        return tuple(sorted(self.landscapes if self.landscapes is not None else self.levels))

    def model_configs(self) -> list[TrainConfig]:
        out = []
        for k in sorted(self.levels):
            for v in self.values or [None]:
                update: dict = {"extra_samples": k}
                if self.vary is not None and v is not None:  # both or neither (validated)
                    update[self.vary] = int(v) if self.vary in ("batch_size", "epochs") else v
                out.append(TrainConfig(**{**self.train.model_dump(), **update}))
        return out

    def upstream(self) -> dict:
        return {"models": self.model_configs()}

    @property
    def tolerance_grid_steps(self) -> float:
        """How far a radius may be from the grid's: 0 for exact, the bisection tolerance else."""
        return 0.0 if self.mode == "exact" else (self.tolerance or 1.0)

    def coefficients(self) -> np.ndarray:
        """(C,) float64 grid c_i = coefficient_max * (i / (C - 1)) ** grid_power."""
        u = np.arange(self.n_coefficients) / (self.n_coefficients - 1)
        return self.coefficient_max * u**self.grid_power


def model_label(cfg: TrainConfig, vary: str | None) -> str:
    return f"k{cfg.extra_samples}" + (f"-{vary}{getattr(cfg, vary)}" if vary else "")


# version 2: float64 coefficients and grid points (radii move by float32 rounding)
def direction_norms(raw: torch.Tensor, origin: bool) -> np.ndarray:
    """(M,) ||d_j|| of the raw directions (M, P), float64.

    Native: computed in float64 (a float32 norm moves n ln r by up to ~n * 6e-8). Origin: what
    the published code computed, ``torch.norm(torch.cat(flattened d_j), p=2)`` on the float32
    vector, so origin runs give the published log-volumes to every printed digit.
    """
    if origin:
        return np.array([float(torch.norm(row, p=2).item()) for row in raw.float()])
    return raw.double().norm(dim=1).numpy()


# version 3: origin mode takes ||d|| in float32 as published (native unchanged)
@stage(
    "volume.perturb",
    config=PerturbConfig,
    version=3,
    smoke={"levels": (0, 20), "n_directions": 20, "train": {"epochs": 30, "pool_size": 40}},
)
def perturb(config: PerturbConfig, run: Run) -> dict:
    """Evaluate every model along every direction; see the module docstring."""
    from ._data import build_split, resolved_base
    from ._directions import param_shapes, random_directions

    device, dtype = setup_torch(config)
    threads = torch.get_num_threads()
    ups = run.upstream["models"]
    cfgs = [TrainConfig(**u.config) if isinstance(u.config, dict) else u.config for u in ups]
    split = build_split(cfgs[0])  # data depends on the seed only: shared by every model
    base = resolved_base(cfgs[0])
    models = [_load_model(u, c, split).to(dtype) for u, c in zip(ups, cfgs, strict=True)]
    # the same raw directions for every model (same architecture), regenerated from seeds
    raw = random_directions(param_shapes(models[0]), config.n_directions, config.perturbation_seed)
    # resume after the last finished model if this run was killed
    # (the checkpoint holds tensors only, so it loads without unpickling anything else)
    saved = run.load_checkpoint()
    # done: models finished; passes: forward passes; out: name -> curves array
    state: dict[str, Any] = {"done": 0, "passes": 0, "out": _empty(config, split, len(ups))}
    if saved is not None:
        state = {**saved, "out": {k: v.numpy() for k, v in saved["out"].items()}}
    t0 = time.perf_counter()
    with run.progress(len(ups), "model", start=state["done"]) as bar:
        for i in range(state["done"], len(ups)):
            state["passes"] += _evaluate_model(
                config,
                i,
                models[i],
                cfgs[i],
                split,
                base,
                raw.to(dtype),
                state["out"],
                device,
                bar,
            )
            state["done"] = i + 1
            run.save_checkpoint(
                {**state, "out": {k: torch.from_numpy(v) for k, v in state["out"].items()}}
            )
            bar.update()
            run.log(
                f"model {model_label(cfgs[i], config.vary)} done, {time.perf_counter() - t0:.1f}s"
            )
    with run.write_artifact("curves.npz") as tmp:
        # compressed: entries after a direction stopped are NaN and shrink ~10x
        norms = direction_norms(raw, origin=config.train.sampling == "origin")
        np.savez_compressed(
            tmp,
            coefficients=config.coefficients(),
            norms=norms,
            seeds=config.perturbation_seed + np.arange(config.n_directions),
            landscapes=np.array(config.landscape_levels),
            base_size=base,
            levels=np.array([c.extra_samples for c in cfgs]),
            n_params=raw.shape[1],
            **state["out"],
        )
    info = [
        {
            "label": model_label(c, config.vary),
            "level": c.extra_samples,
            "run_id": u.id,
            **{k: u.results.get(k) for k in ("test_loss", "test_accuracy", "train_loss")},
        }
        for u, c in zip(ups, cfgs, strict=True)
    ]
    run.save_json(
        "models.json",
        {
            "models": info,
            "criteria": _criteria(config),
            "mode": config.mode,
            "tolerance_grid_steps": config.tolerance_grid_steps,
        },
    )
    run.save_json(
        "histories.json", {i["label"]: _history(u) for i, u in zip(info, ups, strict=True)}
    )
    return {
        "n_params": int(raw.shape[1]),
        "points_evaluated": state["passes"],
        "threads": threads,
        "tolerance_grid_steps": config.tolerance_grid_steps,
    }


def _history(up) -> dict:
    return json.loads(up.artifact("history.json").read_text())


def _criteria(config: PerturbConfig) -> list[tuple[str, float]]:
    return [("loss", t) for t in config.thresholds] + [
        ("accuracy", a) for a in config.accuracy_thresholds
    ]


def _load_model(up, cfg: TrainConfig, split):
    from ._models import build_model

    model = build_model(cfg, tuple(split.x_base.shape[1:]), split.n_classes, cfg.loss_name)
    model.to(getattr(torch, cfg.dtype))  # the dtype it was trained and saved in
    model.load_state_dict(torch.load(up.artifact("model.pt"), weights_only=True))
    return model.eval()


def _empty(config: PerturbConfig, split, n_models: int) -> dict[str, np.ndarray]:
    """The arrays curves.npz holds, NaN where a (model, landscape) pair is not evaluated."""
    m, nl, nc = config.n_directions, len(config.landscape_levels), config.n_coefficients
    out = {
        "centre_losses": np.zeros((n_models, len(split.x_base) + len(split.x_pool)), np.float32),
        "landscape_loss": np.full((n_models, nl), np.nan, np.float32),
    }
    if config.mode == "exact":
        out["loss"] = np.full((n_models, nl, m, nc), np.nan, np.float32)  # (models, L, M, C)
        out["accuracy"] = np.full((n_models, nl, m, nc), np.nan, np.float32)
    else:
        t = len(_criteria(config))
        out["crossing_u"] = np.full((n_models, nl, t, m), np.nan, np.float32)  # (models, L, T, M)
    return out


@torch.no_grad()
def _evaluate_model(
    config: PerturbConfig, i: int, model, cfg, split, base, raw, out, device: str = "cpu", bar=None
) -> int:
    """Fill model i's entries of ``out``; returns the number of points evaluated.

    ``bar``: the run's per-model counter; the grid points (directions x coefficients) of this
    model are counted inside it (adaptive mode: bisection points, whose number is not known
    ahead)."""
    from ._directions import flatten_params, scale_directions
    from ._evaluate import Evaluator, adaptive_crossings, centre_losses, grid_curves

    model.to(device)
    dtype = getattr(torch, config.dtype)
    x_all = torch.cat([split.x_base, split.x_pool]).to(device, dtype)  # base ++ pool: cutoff
    y_all = torch.cat([split.y_base, split.y_pool]).to(device)
    out["centre_losses"][i] = centre_losses(model, x_all, y_all, cfg.loss_name).cpu().numpy()
    lands = config.landscape_levels
    mine = [j for j, land in enumerate(lands) if land <= cfg.extra_samples]  # landscapes to fill
    if not mine:
        return 0
    dirs = scale_directions(raw, model.cpu(), config.scaling).to(device)  # (M, P)
    model.to(device)
    x, y = split.train_set(cfg.extra_samples)
    x, y = x.to(device, dtype), y.to(device)
    sizes = [base + lands[j] for j in mine]
    ev = Evaluator(model, flatten_params(model), dirs, x, y, sizes, cfg.loss_name)
    if bar is not None:
        exact = config.mode == "exact"
        ev.counter = bar.inner(
            len(dirs) * config.n_coefficients if exact else None,
            "grid points" if exact else "points",
        )
    centre = ev.at(torch.zeros(1, dtype=torch.long), torch.zeros(1))[0][0]  # (nL,)
    out["landscape_loss"][i, mine] = centre.numpy()
    coeffs = torch.from_numpy(config.coefficients())
    if config.mode == "exact":
        loss, acc = grid_curves(ev, coeffs, config.loss_cap, config.accuracy_floor)
        out["loss"][i, mine] = loss.numpy()
        out["accuracy"][i, mine] = acc.numpy()
    else:
        tol = (config.tolerance or 1.0) / (config.n_coefficients - 1)
        u = adaptive_crossings(
            ev, _criteria(config), config.coefficient_max, config.grid_power, tol
        )
        out["crossing_u"][i, mine] = u.numpy()
    return ev.forward_passes
