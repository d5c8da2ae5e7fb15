"""Training strategies from a data map, each a config field, each recorded as applied.

    plan = plan_strategies(cfg, ids, metrics, clusters)   # StrategyPlan
    plan.keep       # positions of the training examples kept, after every filter
    plan.epsilon    # (N_kept,) per-example label smoothing (0 where smoothing is off)
    plan.weight     # (N_kept,) per-example loss weight (1 where weighting is off)
    loss = strategy_loss(logits, labels, eps, w)          # mean_i w_i * CE_smoothed_i

Filters (composable; applied in this order, each on what the previous kept):
* ``filter.kind: cartography`` keeps easy + hard (median split) and, among the ambiguous, the
  ``top_fraction`` most unstable by (1 - confidence) + variability (ceil of the fraction).
* ``filter.kind: subset`` trains on the reference's top-k% by one metric: region ambiguous
  (variability, high first), hard (confidence, low first), easy (confidence, high first) or a
  seeded ``random`` baseline of the same size.
* ``filter.kind: rules`` (an extension) drops examples whose metrics fall in every given range.
* ``cluster_filter`` drops members of ``exclude_clusters`` (default: HDBSCAN's noise, -1) and
  members whose cluster-membership probability is below ``min_cluster_probability``.
Smoothing: eps_i = min(eps_max, smoothing_factor * variability_i); weighting:
w_i = clip(1 + beta * variability_i, weight_clip_min, weight_clip_max).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from assay import ConfigError

from ._metrics import METRICS, check_fraction, median_regions, top_fraction_subset


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CartographyFilter(_Strict):
    kind: Literal["cartography"] = Field(
        "cartography", description="cartography: keep the most unstable of the ambiguous examples"
    )
    top_fraction: float = Field(
        0.33, description="share of the ambiguous examples kept, most unstable first"
    )

    @field_validator("top_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        check_fraction("top_fraction", v)
        return v


class SubsetFilter(_Strict):
    kind: Literal["subset"] = Field(
        "subset", description="subset: keep one region of the data map"
    )
    region: Literal["ambiguous", "hard", "easy", "random"] = Field(
        "ambiguous", description="ambiguous, hard or easy region of the map, or a random subset"
    )
    fraction: float = Field(0.33, description="share of the training set kept (the paper's 33%)")
    reference_count: bool = Field(
        False, description="keep floor(f x N) + 1 examples, as the reference implementation does"
    )

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        check_fraction("fraction", v)
        return v


class RuleFilter(_Strict):
    kind: Literal["rules"] = Field(
        "rules", description="rules: drop examples whose metrics fall in given ranges"
    )
    # metric -> [low, high]: drop an example when every listed metric lies in its range, e.g.
    # {confidence: [0, 0.2], variability: [0, 0.1]}: confidently wrong, likely mislabelled
    drop_if: dict[str, tuple[float, float]] = Field(
        description="metric -> [low, high]; drop an example when every listed metric is in its range"
    )

    @field_validator("drop_if")
    @classmethod
    def _metrics(cls, v: dict) -> dict:
        bad = sorted(set(v) - set(METRICS))
        if bad or not v:
            raise ValueError(
                f"drop_if metrics {bad or '(none)'} invalid; valid: {', '.join(METRICS)}"
            )
        return v


class ClusterFilter(_Strict):
    exclude_clusters: tuple[int, ...] = Field(
        (-1,), description="cluster labels dropped (HDBSCAN labels noise -1)"
    )
    min_cluster_probability: float = Field(
        0.0,
        ge=0,
        le=1,
        description="also drop examples whose cluster membership probability is below this",
    )


class Smoothing(_Strict):
    smoothing_factor: float = Field(
        0.6, gt=0, description="eps = min(eps_max, smoothing_factor x variability) per example"
    )
    eps_max: float = Field(
        0.3, gt=0, lt=1, description="largest eps given to any example (the published cap)"
    )


class Weighting(_Strict):
    beta: float = Field(
        1.0, description="w = clip(1 + beta x variability) per example (published: 1.0)"
    )
    # variability is a std of values in [0, 1], so <= 0.5: with beta = 1, w lies in [1, 1.5]
    # and this clip never binds; the run reports how often it does
    weight_clip_min: float = Field(
        0.5,
        gt=0,
        description="lower clip of w (with beta 1, w lies in [1, 1.5], so it rarely binds)",
    )
    weight_clip_max: float = Field(2.0, gt=0, description="upper clip of w")

    @model_validator(mode="after")
    def _order(self) -> Weighting:
        if self.weight_clip_min > self.weight_clip_max:
            raise ValueError(
                f"weight_clip_min {self.weight_clip_min} > weight_clip_max "
                f"{self.weight_clip_max}; swap them"
            )
        return self


AnyFilter = Annotated[CartographyFilter | SubsetFilter | RuleFilter, Field(discriminator="kind")]


@dataclasses.dataclass(frozen=True)
class StrategyPlan:
    keep: np.ndarray  # (K,) positions into the training split, ascending
    epsilon: np.ndarray  # (K,)
    weight: np.ndarray  # (K,)
    steps: list[dict]  # per filter: name, n_in, n_kept (the manifest's summary)
    summary: dict  # distributions of eps and w, clip binding


def _describe(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0}
    q = np.quantile(values, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
    return {
        "n": int(len(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": dict(
            zip(["min", "p5", "p25", "p50", "p75", "p95", "max"], map(float, q), strict=True)
        ),
    }


def _kept_metrics(metrics: dict | None, keep: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """The data-map metrics of the ``keep`` examples; a filter reading them needs a data map."""
    if metrics is None:
        raise ConfigError(
            f"filter kind {kind!r} reads the data map, and no metrics were given; set `dynamics:` "
            "(or `dynamics_dir:`), or use subset with region 'random'"
        )
    return {k: v[keep] for k, v in metrics.items()}


def plan_strategies(
    filter_cfg,
    cluster_cfg: ClusterFilter | None,
    smoothing: Smoothing | None,
    weighting: Weighting | None,
    n_train: int,
    metrics: dict | None,
    clusters: dict | None,
    seed: int,
) -> StrategyPlan:
    """Which examples to train on, and with which eps and w; ``metrics`` aligned to the split."""
    keep = np.arange(n_train)
    steps: list[dict] = []

    def step(name: str, kept: np.ndarray, **extra) -> np.ndarray:
        steps.append({"filter": name, "n_in": int(len(keep)), "n_kept": int(len(kept)), **extra})
        return np.sort(kept)

    if filter_cfg is not None:
        if filter_cfg.kind == "cartography":
            sub = _kept_metrics(metrics, keep, filter_cfg.kind)
            regions = median_regions(sub)
            amb = np.flatnonzero(regions == "ambiguous")
            instability = (1 - sub["confidence"][amb]) + sub["variability"][amb]
            n_amb = math.ceil(filter_cfg.top_fraction * len(amb) - 1e-9)
            top = amb[np.argsort(-instability, kind="stable")[:n_amb]]
            chosen = np.concatenate([np.flatnonzero(regions != "ambiguous"), top])
            keep = step(
                "cartography",
                keep[chosen],
                regions={r: int((regions == r).sum()) for r in ("easy", "hard", "ambiguous")},
                ambiguous_kept=int(n_amb),
            )
        elif filter_cfg.kind == "subset":
            if filter_cfg.region == "random":
                n = int(filter_cfg.fraction * len(keep)) + (1 if filter_cfg.reference_count else 0)
                rng = np.random.default_rng(seed)
                chosen = rng.choice(len(keep), size=min(n, len(keep)), replace=False)
            else:
                chosen = top_fraction_subset(
                    _kept_metrics(metrics, keep, filter_cfg.kind),
                    filter_cfg.region,
                    filter_cfg.fraction,
                    reference_count=filter_cfg.reference_count,
                )
            keep = step(f"subset:{filter_cfg.region}", keep[chosen])
        else:
            sub = _kept_metrics(metrics, keep, filter_cfg.kind)
            drop = np.ones(len(keep), dtype=bool)
            for metric, (lo, hi) in filter_cfg.drop_if.items():
                drop &= (sub[metric] >= lo) & (sub[metric] <= hi)
            keep = step("rules", keep[~drop])
    if cluster_cfg is not None:
        if clusters is None:
            raise ConfigError(
                "cluster_filter reads the cluster labels, and none were given; set `cluster:` "
                "(a cartography.cluster config) or remove cluster_filter"
            )
        labels, prob = clusters["labels"][keep], clusters["probabilities"][keep]
        ok = ~np.isin(labels, cluster_cfg.exclude_clusters) & (
            prob >= cluster_cfg.min_cluster_probability
        )
        keep = step(
            "cluster",
            keep[ok],
            dropped_by_label=int(np.isin(labels, cluster_cfg.exclude_clusters).sum()),
        )
    if len(keep) == 0:
        raise ConfigError(f"the filters kept no training example ({steps}); loosen them")
    var = metrics["variability"][keep] if metrics is not None else np.zeros(len(keep))
    eps = np.zeros(len(keep))
    if smoothing is not None:
        eps = np.minimum(smoothing.eps_max, smoothing.smoothing_factor * var)
    w = np.ones(len(keep))
    summary: dict = {
        "epsilon": _describe(eps),
        "smoothing_capped_fraction": (
            float((smoothing.smoothing_factor * var >= smoothing.eps_max).mean())
            if smoothing
            else 0.0
        ),
    }
    if weighting is not None:
        raw = 1 + weighting.beta * var
        w = np.clip(raw, weighting.weight_clip_min, weighting.weight_clip_max)
        binds = float(
            ((raw < weighting.weight_clip_min) | (raw > weighting.weight_clip_max)).mean()
        )
        summary["clip_binds_fraction"] = binds
        if binds == 0:
            summary["clip_note"] = (
                f"the clip [{weighting.weight_clip_min}, {weighting.weight_clip_max}] never "
                f"binds: raw weights span [{raw.min():.3f}, {raw.max():.3f}]"
            )
    summary["weight"] = _describe(w)
    return StrategyPlan(keep, eps, w, steps, summary)


def strategy_loss(logits, labels, epsilon=None, weight=None):
    """mean_i w_i * CE(logits_i, (1 - eps_i) onehot(y_i) + eps_i / K): logits (B, K).

    eps_i = 0 and w_i = 1 give exactly the mean cross-entropy. The smoothed target spreads eps
    uniformly over all K classes (the gold one included), as torch's ``label_smoothing`` does.
    """
    import torch

    logp = torch.log_softmax(logits.float(), -1)  # (B, K)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)  # (B,)
    if epsilon is not None:
        nll = (1 - epsilon) * nll + epsilon * (-logp.mean(-1))
    if weight is not None:
        nll = weight * nll
    return nll.mean()
