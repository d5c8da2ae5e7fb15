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
import math
from typing import ClassVar

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


class VolumeConfig(StageConfig):
    perturb: PerturbConfig = PerturbConfig()
    threshold: float = 0.1  # tau: absolute training-loss threshold (paper: 0.02 - 0.1)
    accuracy_threshold: float | None = None  # second criterion: accuracy drops below this
    landscapes: tuple[int, ...] | None = None  # None: every landscape the perturb run cached
    top_k: int = Field(10, ge=1)  # largest radii reported with their direction seeds
    n_subsets: int = Field(100, ge=1)  # rank stability: random direction subsets drawn
    subset_fraction: float = Field(0.5, gt=0, le=1)  # ... each holding this share of directions
    subset_seed: int = 0
    plots: bool = True
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


@stage("volume.volume", config=VolumeConfig, version=1,
       smoke={"n_subsets": 5, "perturb": {"levels": (0, 20), "n_directions": 20,
                                          "train": {"epochs": 30, "pool_size": 40}}})  # fmt: skip
def volume(config: VolumeConfig, run: Run) -> dict:
    """Turn cached curves into volumes; see the module docstring."""
    up = run.upstream["perturb"]
    data = dict(np.load(up.artifact("curves.npz")))
    models = json.loads(up.artifact("models.json").read_text())["models"]
    cached = [int(v) for v in data["landscapes"]]
    lands = sorted(config.landscapes) if config.landscapes is not None else cached
    n_params, base = int(data["n_params"]), int(data["base_size"])
    levels = [m["level"] for m in models]
    cutoffs = [cutoff_level(data["centre_losses"][i], base, config.threshold)
               for i in range(len(models))]  # fmt: skip
    rows, results, per_land, radii_out = [], {}, [], {}
    for L in lands:
        idx = [i for i, k in enumerate(levels) if k >= L]  # models trained on >= L extra
        radii = np.stack([_radii(config, data, i, cached.index(L), "loss") for i in idx])  # (n, M)
        lv = [log_volume(r, n_params) for r in radii]
        for i, r, v in zip(idx, radii, lv, strict=True):
            rows.append(_row(config, data, models[i], i, cached.index(L), L, r, v, cutoffs[i]))
            results[f"log_volume/L{L}/{models[i]['label']}"] = v
            radii_out[f"L{L}/{models[i]['label']}"] = r
        own = [n for n, i in enumerate(idx) if levels[i] == L]
        per_land.append(_ranking(config, L, radii, lv, [models[i] for i in idx], own, n_params))
    for i, m in enumerate(models):
        results[f"cutoff/{m['label']}"] = cutoffs[i] if cutoffs[i] is not None else math.nan
    results |= _headline(per_land)
    _write_table(run, rows)
    with run.write_artifact("radii.npz") as tmp:
        np.savez(tmp, seeds=data["seeds"], **radii_out)
    labels = [m["label"] for m in models]
    run.save_json("summary.json", {"threshold": config.threshold, "landscapes": per_land,
                                   "cutoffs": dict(zip(labels, cutoffs, strict=True))})  # fmt: skip
    if config.plots:
        from ._plots import render_all

        render_all(rows, radii_out, run.artifacts_dir, config.threshold)
    run.log(_text_table(rows))
    return results


def _row(config, data, model: dict, i: int, j: int, L: int, radii, log_v, cutoff) -> dict:
    """One table row: model i in landscape L (index j)."""
    n_params = int(data["n_params"])
    st = radius_stats(radii, data["seeds"], config.top_k)
    row = {"landscape": L, "model": model["label"], "model_level": model["level"],
           "log_volume": log_v, "test_loss": model["test_loss"],
           "test_accuracy": model["test_accuracy"],
           "landscape_loss": float(data["landscape_loss"][i, j]),
           "cutoff": cutoff, **{k: st[k] for k in st if k != "top_radii"}}  # fmt: skip
    if config.accuracy_threshold is not None:
        acc_radii = _radii(config, data, i, j, "accuracy")
        row["log_volume_accuracy"] = log_volume(acc_radii, n_params)
    row["top_radii"] = json.dumps(st["top_radii"])
    return row


def _ranking(config, L: int, radii, lv: list, models: list[dict], own: list[int], n_params):
    """Ranking statistics of the models evaluated in landscape L."""
    tl = [m["test_loss"] for m in models]
    bad, pairs = ordering_violations(lv, tl)
    stab, tau_k = rank_stability(radii, n_params, config.n_subsets, config.subset_fraction,
                                 config.subset_seed)  # fmt: skip
    # strictly largest: a tie (e.g. every volume 0) does not count as a yes
    others = [v for n, v in enumerate(lv) if n not in own]
    largest = bool(lv[own[0]] > max(others)) if len(own) == 1 and others else None
    return {"landscape": L, "n_models": len(models), "trained_model_largest": largest,
            "ordering_violations": bad, "ordered_pairs": pairs,
            "spearman_volume_vs_test_loss": spearman(lv, tl),
            "rank_stability": stab, "rank_kendall_tau": tau_k}  # fmt: skip


def _headline(per_land: list[dict]) -> dict:
    """A few numbers the cross-seed analysis can average (NaN when undefined)."""

    def mean(key):
        vals = [d[key] for d in per_land if d[key] is not None and not _isnan(d[key])]
        return float(np.mean(vals)) if vals else math.nan

    bad = sum(d["ordering_violations"] for d in per_land)
    pairs = sum(d["ordered_pairs"] for d in per_land)
    return {
        "trained_model_largest_fraction": mean("trained_model_largest"),
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
    lines = [f"{'landscape':>9} {'model':>12} {'log_volume':>12} {'test_loss':>9} "
             f"{'test_acc':>8} {'counted':>7} {'cutoff':>6}"]  # fmt: skip
    for r in rows:
        lines.append(f"{r['landscape']:>9} {r['model']:>12} {r['log_volume']:>12.1f} "
                     f"{r['test_loss']:>9.4f} {r['test_accuracy']:>8.3f} {r['n_counted']:>7} "
                     f"{str(r['cutoff']):>6}")  # fmt: skip
    return "\n".join(lines)
