"""cartography.train: one training strategy, applied verifiably, evaluated.

    assay run suites/cartography/rotten_tomatoes_smoke.yaml
    assay run suites/cartography/minimal.yaml filter.top_fraction=0.25,0.5

With no strategy field set it is the baseline. Every strategy field is used, or the run fails:
the filters' kept counts and the ids kept are written to ``selection.json``; the eps and w
actually used per example to ``per_example.csv`` and their distributions to ``strategy.json``;
the results repeat the counts (``n_train_kept``) next to the scores, so a "different" filter
that trained on the same examples shows at once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from assay import Run, stage
from assay.ml import FileRef, setup_torch

from ._checks import check_strategy
from ._dynamics import Dynamics, DynamicsError
from ._metrics import compute_metrics
from ._pipeline import fit, train_ids
from ._stage_cluster import ClusterConfig
from ._stage_dynamics import DynamicsConfig, TrainingConfig
from ._strategies import (
    AnyFilter,
    ClusterFilter,
    Smoothing,
    StrategyPlan,
    Weighting,
    plan_strategies,
)


class StrategyConfig(TrainingConfig):
    dynamics: DynamicsConfig | None = Field(
        None, description="upstream dynamics run whose data map the strategy reads"
    )
    dynamics_dir: FileRef | None = Field(
        None,
        description="or a folder of reference dynamics_epoch_*.jsonl files to map the data from",
    )
    cluster: ClusterConfig | None = Field(
        None, description="upstream cluster run (needed by cluster_filter)"
    )
    filter: AnyFilter | None = Field(
        None,
        description="keep a region of the data map (e.g. the most ambiguous top_fraction); null: keep all",
    )
    cluster_filter: ClusterFilter | None = Field(
        None, description="keep or drop examples by their cluster; null: no cluster filter"
    )
    smoothing: Smoothing | None = Field(
        None, description="per-example label smoothing from the data map; null: none"
    )
    weighting: Weighting | None = Field(
        None, description="per-example loss weights from the data map; null: every weight 1"
    )
    burn_out: int | None = Field(
        None,
        description="map the data from the first k epochs of the dynamics (the reference's option); null: all",
    )
    include_ci: bool = Field(
        False, description="variability with the active-bias (confidence interval) correction"
    )
    # QA examples with no window holding the answer have no data map (the dynamics run counts
    # them in excluded.json): leave them out of training, or train on them unfiltered (eps 0,
    # w 1). Either way the count is in selection.json, the results and the log.
    unmapped: Literal["exclude", "include"] = Field(
        "exclude",
        description="QA examples the data map lacks (no answer window): exclude them, or include them unfiltered",
    )

    @model_validator(mode="after")
    def _prerequisites(self) -> StrategyConfig:
        wants = [
            name
            for name, value in (
                ("filter", self.filter),
                ("smoothing", self.smoothing),
                ("weighting", self.weighting),
            )
            if value is not None
            and not (name == "filter" and getattr(value, "region", None) == "random")
        ]
        if wants and self.dynamics is None and self.dynamics_dir is None:
            raise ValueError(
                f"{', '.join(wants)} need(s) training dynamics of these examples: set "
                "`dynamics:` to a cartography.dynamics config (the engine runs it first and "
                "reuses it), or `dynamics_dir:` to a folder of dynamics_epoch_*.jsonl files"
            )
        if self.dynamics is not None and self.dynamics_dir is not None:
            raise ValueError("set one of `dynamics` and `dynamics_dir`, not both")
        if self.cluster_filter is not None and self.cluster is None:
            raise ValueError(
                "cluster_filter needs `cluster:` (a cartography.cluster config; "
                "it runs first and is reused by every strategy naming it)"
            )
        return self


def _unmapped_ids(config: StrategyConfig, run: Run) -> set[str]:
    """The training ids the upstream dynamics run could not map (QA: no answer window)."""
    if config.dynamics is None or config.data.task != "qa":
        return set()  # a classification example always has its map
    return set(json.loads(Path(run.upstream["dynamics"].artifact("excluded.json")).read_text()))


def _dynamics_for(config: StrategyConfig, run: Run, ids: list[str]) -> Dynamics | None:
    if config.dynamics is not None:
        up = run.upstream["dynamics"]
        path = up.artifact("dynamics.npz")
        source, fix = (
            f"run {up.id} ({up.dir})",
            "point `dynamics:` at a run over this config's `data` (the same "
            "dataset, split and max_train_examples) and rerun: assay run SUITE",
        )
        return Dynamics.load(path).align(ids, source=source, fix=fix)
    if config.dynamics_dir is not None:
        # planned with this folder's content hash; it exists (checked when the config was built)
        folder = config.dynamics_dir.verify()
        return Dynamics.from_reference(folder).align(
            ids, source=config.dynamics_dir.path, fix="write them from a run over this data"
        )
    return None


@stage(
    "cartography.train",
    config=StrategyConfig,
    check=check_strategy,
    version=1,
    smoke={"data": {"max_train_examples": 600}, "epochs": 2},
)
def train_strategy(config: StrategyConfig, run: Run) -> dict:
    """Train with a strategy (filters, smoothing, weighting) from a data map; evaluate."""
    device, _ = setup_torch(config)
    ids = train_ids(config)
    unmapped = _unmapped_ids(config, run)
    mapped = np.array([i for i, g in enumerate(ids) if g not in unmapped], dtype=np.int64)
    if len(mapped) < len(ids):
        run.log(
            f"{len(ids) - len(mapped)} of {len(ids)} training examples have no data map (QA: no "
            f"window holds the answer; excluded.json of the dynamics run): unmapped: "
            f"{config.unmapped} -> "
            + (
                "left out of training"
                if config.unmapped == "exclude"
                else "trained on unfiltered, eps 0, w 1"
            )
        )
    dyn = _dynamics_for(config, run, [ids[i] for i in mapped])
    metrics = (
        compute_metrics(
            dyn.gold_prob, dyn.correct, burn_out=config.burn_out, include_ci=config.include_ci
        )
        if dyn is not None
        else None
    )
    clusters = None
    if config.cluster_filter is not None:
        up = run.upstream["cluster"]
        with np.load(up.artifact("clusters.npz"), allow_pickle=False) as z:
            if z["ids"].tolist() != ids:
                raise DynamicsError(
                    f"cluster run {up.id} clustered other examples than this "
                    "run trains on; give `cluster:` the same `data`"
                )
            clusters = {"labels": z["labels"][mapped], "probabilities": z["probabilities"][mapped]}
    plan = plan_strategies(
        config.filter,
        config.cluster_filter,
        config.smoothing,
        config.weighting,
        len(mapped),
        metrics,
        clusters,
        config.seed,
    )
    plan = _with_unmapped(plan, mapped, len(ids), config.unmapped)
    kept_ids = [ids[i] for i in plan.keep]
    run.save_json(
        "selection.json",
        {
            "n_train_total": len(ids),
            "n_unmapped": len(ids) - len(mapped),
            "unmapped": config.unmapped,
            "n_kept": len(kept_ids),
            "steps": plan.steps,
            "kept_ids": kept_ids,
        },
    )
    run.save_json("strategy.json", plan.summary)
    with run.write_artifact("per_example.csv") as tmp:
        lines = ["guid,epsilon,weight"] + [
            f"{g},{e:.6g},{w:.6g}"
            for g, e, w in zip(kept_ids, plan.epsilon, plan.weight, strict=True)
        ]
        tmp.write_text("\n".join(lines) + "\n")
    if "clip_note" in plan.summary:
        run.log(plan.summary["clip_note"])
    with run.progress(config.epochs, "epoch") as bar:
        out = fit(
            config,
            device,
            keep=plan.keep,
            epsilon=plan.epsilon,
            weight=plan.weight,
            log=lambda e, h: run.log_metrics(step=e, **h),
            bar=bar,
        )
    s = plan.summary
    return {
        **out.results,
        "n_train_total": len(ids),
        "n_train_unmapped": len(ids) - len(mapped),
        "n_train_kept": len(kept_ids),
        "kept_fraction": len(kept_ids) / len(ids),
        "epsilon_mean": s["epsilon"]["mean"],
        "epsilon_max": s["epsilon"]["quantiles"]["max"],
        "weight_mean": s["weight"]["mean"],
        "weight_min": s["weight"]["quantiles"]["min"],
        "weight_max": s["weight"]["quantiles"]["max"],
        "clip_binds_fraction": s.get("clip_binds_fraction", 0.0),
    }


def _with_unmapped(plan: StrategyPlan, mapped: np.ndarray, n: int, how: str) -> StrategyPlan:
    """A plan over the ``mapped`` positions, as positions of all ``n`` training examples; the
    unmapped ones added unfiltered (eps 0, w 1) when ``how`` is "include"."""
    if len(mapped) == n:
        return plan
    keep, eps, w = mapped[plan.keep], plan.epsilon, plan.weight
    rest = np.setdiff1d(np.arange(n), mapped)
    step = {"filter": "unmapped", "n_in": int(len(keep)), "n_unmapped": int(len(rest))}
    if how == "include":
        keep = np.concatenate([keep, rest])
        eps = np.concatenate([eps, np.zeros(len(rest))])
        w = np.concatenate([w, np.ones(len(rest))])
        order = np.argsort(keep, kind="stable")
        keep, eps, w = keep[order], eps[order], w[order]
    step["n_kept"] = int(len(keep))
    return dataclasses.replace(plan, keep=keep, epsilon=eps, weight=w, steps=[*plan.steps, step])
