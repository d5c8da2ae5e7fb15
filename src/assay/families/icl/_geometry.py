"""All geometry metrics of one set of class means at once, and the model source of a stage.

    stats = geometry(means, graph)      # means (..., N, d) -> {metric name: (...) float64}

``ICLConfig`` is the base of every analysis config: where the model comes from (a model
trained here by ``icl.train``, upstream, or any local Hugging Face causal LM via ``model``),
which layers to read, and the batching of forwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from assay import Run
from assay.ml import ModelRef, TorchConfig, setup_torch

from . import _metrics as M
from ._graphs import Graph
from ._lm import LM, load_lm
from ._stage_train import TrainConfig

METRICS = (
    "dirichlet_energy",
    "dirichlet_energy_standardised",
    "same_cluster_energy",
    "within_distance",
    "cross_distance",
    "cross_within_ratio",
    "cluster_separation",
    "cluster_separation_bounded",
    "between_cluster_variance",
    "representation_coherence",
)


def geometry(
    means: torch.Tensor,
    graph: Graph,
    labels: np.ndarray | None = None,
    metrics: Sequence[str] = METRICS,
) -> dict:
    """The ``metrics`` of ``_metrics`` (default all) on class means (..., N, d) of ``graph``.

    labels: the clusters to group by (default the graph's primary clusters). On the
    semantic-conflict graph cross distances use same-group pairs across clusters, as published.
    """
    lab = torch.as_tensor(graph.labels if labels is None else labels)
    edges = torch.as_tensor(graph.edges)
    pairs = torch.as_tensor(graph.semantic_pairs()) if graph.semantic is not None else None
    sq = M.pairwise_sq_distances(means)  # shared by the distance-based metrics
    compute = {
        "dirichlet_energy": lambda: M.dirichlet_energy(means, edges, sq),
        "dirichlet_energy_standardised": lambda: M.dirichlet_energy_standardised(means, edges, sq),
        "same_cluster_energy": lambda: M.same_cluster_energy(means, lab, sq),
        "within_distance": lambda: M.within_cluster_distance(means, lab, sq),
        "cross_distance": lambda: M.cross_cluster_distance(means, lab, pairs, sq),
        "cross_within_ratio": lambda: M.cross_within_ratio(means, lab, pairs, sq=sq),
        "cluster_separation": lambda: M.cluster_separation(means, lab),
        "cluster_separation_bounded": lambda: M.cluster_separation(
            means, lab, eps=M.SEPARATION_EPS
        ),
        "between_cluster_variance": lambda: M.between_cluster_variance(means, lab),
        "representation_coherence": lambda: M.representation_coherence(means, lab),
    }
    unknown = sorted(set(metrics) - set(compute))
    if unknown:
        raise ValueError(f"unknown geometry metrics {unknown}; known: {sorted(compute)}")
    return {name: compute[name]() for name in metrics}


class ICLConfig(TorchConfig):
    """Base of the analysis stages: the model, the layers, the batching."""

    # the model trained here (upstream); set `train: null` and `model: PATH` for a local HF LM
    train: TrainConfig | None = Field(
        TrainConfig(), description="upstream icl.train run whose model is analysed (or give model)"
    )
    model: ModelRef | None = Field(
        None, description="a local HF causal LM folder to analyse instead of a trained run"
    )
    add_bos: bool | None = Field(
        None, description="prepend a BOS token; null: exactly when the tokenizer adds one itself"
    )
    layers: tuple[int, ...] | None = Field(
        None, description="hidden-state layers analysed; null: every layer 0..n_layers"
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="contexts per forward, halved on out-of-memory (results: batch_size_used); changes no number (not in the run id)",
    )
    # a model larger than one GPU: accelerate spreads its layers over the GPUs (then CPU memory);
    # where the layers sit changes no number, so not in the run id
    device_map: Literal["auto"] | None = Field(
        None,
        description="auto: spread the model's layers over every GPU as it loads (models larger than one device); null: all on `device`",
    )
    identity_exclude: ClassVar[frozenset[str]] = frozenset(
        {"device", "num_threads", "batch_size", "device_map"}
    )

    @model_validator(mode="after")
    def _one_source(self):
        if (self.train is None) == (self.model is None):
            raise ValueError(
                "give exactly one model source: `train` (a model trained here, the default) or "
                "`model: PATH` (a local HF causal LM) with `train: null`"
            )
        return self

    def upstream(self) -> dict:
        return {"train": self.train} if self.train is not None else {}


def open_lm(config: ICLConfig, run: Run) -> LM:
    device, dtype = setup_torch(config)
    if config.model is not None:
        path = config.model.verify()
    else:
        path = run.upstream["train"].artifact("model")
    return load_lm(
        path, device=device, dtype=dtype, add_bos=config.add_bos, device_map=config.device_map
    )


def to_lists(x) -> object:
    """Tensors/arrays -> nested lists, NaN/inf -> None (JSON has no NaN; None reads as missing)."""
    arr = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    return _clean(arr.tolist())


def _clean(v):
    if isinstance(v, list):
        return [_clean(u) for u in v]
    return v if np.isfinite(v) else None
