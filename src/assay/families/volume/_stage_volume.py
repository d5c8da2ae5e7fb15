"""volume.volume: radii -> log-volumes, cutoffs and ranking statistics for one threshold tau.

    assay run suites/volume/swiss_roll_low_data_smoke.yaml
    assay run suites/volume/swiss_roll_low_data_smoke.yaml threshold=0.05   # no forward pass

Reads the perturb stage's cached curves, so changing ``threshold`` (or the accuracy threshold,
or the landscapes asked for) never recomputes a perturbation. Writes ``table.csv`` (one row per
landscape x model), ``radii.npz``, ``summary.json`` and plots; returns flat scalars the engine's
cross-seed analysis aggregates: ``log_volume/L{L}/{model}``, ``cutoff/{model}``,
``spearman_volume_vs_test_loss``, ``trained_model_largest_fraction`` and friends.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from assay import Run, StageConfig, stage

from ._stage_perturb import PerturbConfig
from ._volume import (
    cutoff_level,
    log_volume,
    ordering_violations,
    radii_from_curves,
    radius_stats,
    rank_stability,
    spearman,
)

logger = logging.getLogger("assay.volume")
# Directions that never cross tau are dropped (the published rule). A few percent is noise; more
# means coefficient_max is too small for this tau and the volume is biased (with coefficient_max
# 0.02, 129/200 were dropped and the model ranking inverted).
DROPPED_WARN_FRACTION = 0.05


class VolumeConfig(StageConfig):
    perturb: PerturbConfig = Field(
        PerturbConfig(),
        description="upstream volume.perturb run whose cached curves are turned into volumes",
    )
    threshold: float = Field(
        0.1, description="tau: absolute training-loss threshold of the volume (paper: 0.02 - 0.1)"
    )
    accuracy_threshold: float | None = Field(
        None,
        description="second criterion: the region also ends where accuracy drops below this; null: none",
    )
    landscapes: tuple[int, ...] | None = Field(
        None, description="landscapes turned into volumes; null: every one the perturb run cached"
    )
    top_k: int = Field(10, ge=1, description="largest radii reported with their direction seeds")
    n_subsets: int = Field(100, ge=1, description="rank stability: random direction subsets drawn")
    subset_fraction: float = Field(
        0.5, gt=0, le=1, description="rank stability: share of the directions in each subset"
    )
    subset_seed: int = Field(0, description="seeds the direction subsets")
    plots: bool = Field(True, description="write the volume plots")
    identity_exclude: ClassVar[frozenset[str]] = frozenset({"plots"})

    @field_validator("threshold")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(
                f"threshold must be > 0 (an absolute training loss, e.g. 0.1), got {v}: the "
                "centre of a trained model has a loss >= 0, so no radius is defined for tau <= 0"
            )
        return v

    @model_validator(mode="after")
    def _answerable(self) -> VolumeConfig:
        # checked here, not in the stage, so a suite fails at planning time (even --dry-run)
        check_answerable(self)
        return self

    @field_validator("accuracy_threshold")
    @classmethod
    def _fraction(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1:
            raise ValueError(f"accuracy_threshold must be in (0, 1], got {v}")
        return v


def _radii(config: VolumeConfig, data, i: int, j: int, kind: str) -> np.ndarray:
    """(M,) radii of model i in landscape j, kind "loss" (loss > tau) or "accuracy" (acc < a)."""
    p = config.perturb
    limit = config.threshold if kind == "loss" else config.accuracy_threshold
    assert limit is not None  # "accuracy" is asked for only with an accuracy_threshold
    if p.mode == "exact":
        curves = data["loss" if kind == "loss" else "accuracy"][i, j]  # (M, C)
        return radii_from_curves(curves, data["coefficients"], data["norms"], limit, kind)
    values = p.thresholds if kind == "loss" else p.accuracy_thresholds
    t = [n for n, v in enumerate(values) if math.isclose(v, limit, rel_tol=1e-9)][0]
    t += 0 if kind == "loss" else len(p.thresholds)
    u = data["crossing_u"][i, j, t].astype(np.float64)  # (M,) NaN = never crossed
    return p.coefficient_max * u**p.grid_power * data["norms"]


def check_answerable(config: VolumeConfig) -> None:
    """The cached curves answer this tau, accuracy threshold and landscapes, or say how."""
    p, tau, acc = config.perturb, config.threshold, config.accuracy_threshold
    if p.mode == "exact":
        if p.loss_cap is not None and tau > p.loss_cap:
            raise ValueError(
                f"threshold {tau} is above perturb.loss_cap={p.loss_cap}: the cached curves stop "
                "there. Lower the threshold or raise perturb.loss_cap (recomputes the curves)."
            )
        if (
            acc is not None
            and p.loss_cap is not None
            and (p.accuracy_floor is None or acc < p.accuracy_floor)
        ):
            raise ValueError(
                f"accuracy_threshold {acc} needs curves evaluated until accuracy < {acc}; set "
                f"perturb.accuracy_floor <= {acc} (now {p.accuracy_floor}) or perturb.loss_cap: null"
            )
    elif not any(math.isclose(tau, t, rel_tol=1e-9) for t in p.thresholds):
        raise ValueError(
            f"threshold {tau} was not bisected by the adaptive perturb run (thresholds "
            f"{list(p.thresholds)}); add it to perturb.thresholds or use perturb.mode: exact"
        )
    if (
        p.mode == "adaptive"
        and acc is not None
        and not any(math.isclose(acc, a) for a in p.accuracy_thresholds)
    ):
        raise ValueError(
            f"accuracy_threshold {acc} is not in perturb.accuracy_thresholds "
            f"{list(p.accuracy_thresholds)}; add it there or use perturb.mode: exact"
        )
    cached = p.landscape_levels
    missing = [L for L in config.landscapes or () if L not in cached]
    if missing or config.landscapes == ():
        raise ValueError(
            f"landscapes {missing or '[]'} were not evaluated by the perturb run (it caches "
            f"{list(cached)}); pick from those or add them to perturb.landscapes"
        )


# version 2: models above tau at their own centre are flagged (log V -inf, cutoff 0); float64 grid
@stage(
    "volume.volume",
    config=VolumeConfig,
    version=2,
    smoke={
        "n_subsets": 5,
        "perturb": {
            "levels": (0, 20),
            "n_directions": 20,
            "train": {"epochs": 30, "pool_size": 40},
        },
    },
)
def volume(config: VolumeConfig, run: Run) -> dict:
    """Turn cached curves into volumes; see the module docstring."""
    up = run.upstream["perturb"]
    data = dict(np.load(up.artifact("curves.npz")))
    models = json.loads(up.artifact("models.json").read_text())["models"]
    cached = [int(v) for v in data["landscapes"]]
    lands = sorted(config.landscapes) if config.landscapes is not None else cached
    n_params, base = int(data["n_params"]), int(data["base_size"])
    levels = [m["level"] for m in models]
    tau = config.threshold
    # a model whose own training loss (its landscape, at the centre) is already above tau is
    # not in a minimum of that depth: its volume is 0 everywhere (log V -inf, cutoff 0)
    own_loss = [own_training_loss(data["centre_losses"][i], base, k) for i, k in enumerate(levels)]
    above = [v > tau for v in own_loss]
    cutoffs = [
        0 if above[i] else cutoff_level(data["centre_losses"][i], base, tau)
        for i in range(len(models))
    ]
    rows: list[dict[str, Any]] = []  # one per (landscape, model)
    results: dict[str, Any] = {}  # the run's results (numbers, and "_flags")
    per_land: list[dict[str, Any]] = []
    radii_out: dict[str, np.ndarray] = {}
    for L in lands:
        idx = [i for i, k in enumerate(levels) if k >= L]  # models trained on >= L extra
        radii = np.stack([_radii(config, data, i, cached.index(L), "loss") for i in idx])  # (n, M)
        raw_lv = [log_volume(r, n_params) for r in radii]
        lv = [-math.inf if above[i] else v for i, v in zip(idx, raw_lv, strict=True)]
        for i, r, v, rv in zip(idx, radii, lv, raw_lv, strict=True):
            row = _row(config, data, models[i], i, cached.index(L), L, r, v, cutoffs[i])
            row |= {
                "log_volume_raw": rv,
                "own_training_loss": own_loss[i],
                "centre_above_tau": above[i],
            }
            rows.append(row)
            results[f"log_volume/L{L}/{models[i]['label']}"] = v
            radii_out[f"L{L}/{models[i]['label']}"] = r
        own = [n for n, i in enumerate(idx) if levels[i] == L]
        flagged = [above[i] for i in idx]
        per_land.append(
            _ranking(config, L, radii, lv, [models[i] for i in idx], own, n_params, flagged)
        )
    for i, m in enumerate(models):
        results[f"cutoff/{m['label']}"] = cutoffs[i] if cutoffs[i] is not None else math.nan
        results[f"above_tau/{m['label']}"] = float(above[i])
    # why a number is -inf, next to it in analyze's tables, plots and report (engine-contract)
    flags = {
        f"log_volume/L{r['landscape']}/{r['model']}": "above tau"
        for r in rows
        if r["centre_above_tau"]
    }
    flags |= {f"cutoff/{m['label']}": "above tau" for m, a in zip(models, above, strict=True) if a}
    if flags:
        results["_flags"] = flags
    results |= _headline(per_land)
    warnings = _warnings(rows, models, above, own_loss, tau)
    results |= {
        "n_models_above_tau": int(sum(above)),
        "n_minus_inf": sum(1 for r in rows if r["log_volume"] == -math.inf),
        "dropped_fraction_max": max(r["dropped_fraction"] for r in rows),
        # exact: radii are the grid's; adaptive: within this many grid steps of u (README)
        "tolerance_grid_steps": float(config.perturb.tolerance_grid_steps),
    }
    for w in warnings:
        logger.warning("%s: %s", run.id, w)
        run.log(f"WARNING: {w}")
    _write_table(run, rows)
    with run.write_artifact("radii.npz") as tmp:
        # numpy's stub puts `allow_pickle: bool` beside `**kwds: ArrayLike`, so mypy matches
        # any str-keyed dict against that bool; these keys are "L{level}/{model label}"
        np.savez(tmp, seeds=data["seeds"], **radii_out)  # type: ignore[arg-type]
    labels = [m["label"] for m in models]
    run.save_json(
        "summary.json",
        {
            "threshold": tau,
            "landscapes": per_land,
            "warnings": warnings,
            "cutoffs": dict(zip(labels, cutoffs, strict=True)),
            "above_tau": [lab for lab, a in zip(labels, above, strict=True) if a],
            "own_training_loss": dict(zip(labels, own_loss, strict=True)),
            "mode": config.perturb.mode,
            "tolerance_grid_steps": config.perturb.tolerance_grid_steps,
        },
    )
    if config.plots:
        from ._plots import render_all

        histories = json.loads(up.artifact("histories.json").read_text())
        render_all(
            rows,
            radii_out,
            run.artifacts_dir,
            tau,
            histories=histories,
            centre_losses=data["centre_losses"],
            base=base,
            labels=labels,
            cutoffs=cutoffs,
        )
    run.log(_text_table(rows))
    return results


def own_training_loss(centre_losses: np.ndarray, base: int, level: int) -> float:
    """Mean unperturbed loss over the model's own training set base ++ pool[:level]."""
    return float(np.mean(centre_losses[: base + level], dtype=np.float64))


def _warnings(rows: list[dict], models: list[dict], above, own_loss, tau: float) -> list[str]:
    """What a reader must know before trusting the table (also in summary.json and log.txt)."""
    out = [
        f"model {m['label']}: training loss {own_loss[i]:.4g} on its own data is above tau={tau}"
        ": not a minimum at this depth; log V set to -inf, cutoff 0, left out of "
        "trained_model_largest_fraction"
        for i, m in enumerate(models)
        if above[i]
    ]
    for r in rows:
        if r["dropped_fraction"] > DROPPED_WARN_FRACTION:
            out.append(
                f"landscape {r['landscape']}, model {r['model']}: {r['n_dropped']} of "
                f"{r['n_dropped'] + r['n_counted']} directions never crossed tau={tau} and were "
                f"dropped ({r['dropped_fraction']:.0%} > {DROPPED_WARN_FRACTION:.0%}); raise "
                "perturb.coefficient_max, the volume is biased low"
            )
    return out


def _row(config, data, model: dict, i: int, j: int, L: int, radii, log_v, cutoff) -> dict:
    """One table row: model i in landscape L (index j)."""
    n_params = int(data["n_params"])
    st = radius_stats(radii, data["seeds"], config.top_k)
    row = {
        "landscape": L,
        "model": model["label"],
        "model_level": model["level"],
        "log_volume": log_v,
        "test_loss": model["test_loss"],
        "test_accuracy": model["test_accuracy"],
        "landscape_loss": float(data["landscape_loss"][i, j]),
        "cutoff": cutoff,
        **{k: st[k] for k in st if k != "top_radii"},
    }
    row["dropped_fraction"] = st["n_dropped"] / max(1, st["n_dropped"] + st["n_counted"])
    if config.accuracy_threshold is not None:
        acc_radii = _radii(config, data, i, j, "accuracy")
        row["log_volume_accuracy"] = log_volume(acc_radii, n_params)
    row["top_radii"] = json.dumps(st["top_radii"])
    return row


def _ranking(
    config,
    L: int,
    radii,
    lv: list,
    models: list[dict],
    own: list[int],
    n_params,
    flagged: list[bool],
):
    """Ranking statistics of the models evaluated in landscape L.

    ``trained_model_largest`` compares the model trained on exactly L with the others that are
    minima at this tau: a model above tau at its own centre (volume -inf by decree) is neither a
    competitor nor, as the trained model, a success; with no competitor left it is None.
    """
    tl = [m["test_loss"] for m in models]
    bad, pairs = ordering_violations(lv, tl)
    stab, tau_k = rank_stability(
        radii, n_params, config.n_subsets, config.subset_fraction, config.subset_seed
    )
    # strictly largest: a tie (e.g. every volume 0) does not count as a yes
    others = [v for n, v in enumerate(lv) if n not in own and not flagged[n]]
    ok = len(own) == 1 and others and not flagged[own[0]]
    largest = bool(lv[own[0]] > max(others)) if ok else None
    return {
        "landscape": L,
        "n_models": len(models),
        "trained_model_largest": largest,
        "ordering_violations": bad,
        "ordered_pairs": pairs,
        "spearman_volume_vs_test_loss": spearman(lv, tl),
        "rank_stability": stab,
        "rank_kendall_tau": tau_k,
    }


def _headline(per_land: list[dict]) -> dict:
    """A few numbers the cross-seed analysis can average (NaN when undefined)."""

    def mean(key):
        vals = [d[key] for d in per_land if d[key] is not None and not _isnan(d[key])]
        return float(np.mean(vals)) if vals else math.nan

    bad = sum(d["ordering_violations"] for d in per_land)
    pairs = sum(d["ordered_pairs"] for d in per_land)
    return {
        "trained_model_largest_fraction": mean("trained_model_largest"),
        # landscapes the fraction is over (a trained model above tau, or no rival, is undefined)
        "trained_model_largest_counted": sum(
            d["trained_model_largest"] is not None for d in per_land
        ),
        "ordering_violation_fraction": bad / pairs if pairs else math.nan,
        "spearman_volume_vs_test_loss": mean("spearman_volume_vs_test_loss"),
        "rank_stability": mean("rank_stability"),
        "rank_kendall_tau": mean("rank_kendall_tau"),
    }


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _write_table(run, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with run.write_artifact("table.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _text_table(rows: list[dict]) -> str:
    """The table a researcher reads first: landscape, model, log V, test loss, cutoff."""
    lines = [
        f"{'landscape':>9} {'model':>12} {'log_volume':>12} {'test_loss':>9} "
        f"{'test_acc':>8} {'counted':>7} {'dropped':>7} {'cutoff':>6} flag"
    ]
    for r in rows:
        flag = "train loss > tau" if r.get("centre_above_tau") else ""
        lines.append(
            f"{r['landscape']:>9} {r['model']:>12} {r['log_volume']:>12.1f} "
            f"{r['test_loss']:>9.4f} {r['test_accuracy']:>8.3f} {r['n_counted']:>7} "
            f"{r['n_dropped']:>7} {str(r['cutoff']):>6} {flag}"
        )
    return "\n".join(lines)
