"""icl.loo: leave-one-out influence of every context word on every layer (bridge vs anchor).

    assay run suites/icl/smoke.yaml      # includes an LOO heatmap on the trained model

For each of ``n_contexts`` walks of ``n_words`` words on the graph (hierarchical SBM by
default: its walks linger in a cluster, so *bridges*, the words where the cluster changes, are
rare and distinct from *anchors*), every word is left out in turn and the context's geometry is
recomputed at every layer (``_loo.loo_batched``): one forward of the full context, then the
variants in chunks of ``prefix_chunk``, each chunk reading its shared prefix from the full
context's key/value cache and computing only the rest, every layer from the same forward.
``mode: published`` runs the published one-forward-per-(layer, word) loop instead (same
numbers, ~15x slower on 64 words; for checking).

Artifacts: ``loo.json`` (schema icl.loo/1: per influence the (layer x position) heatmap and the
bridge / anchor means per layer, all mean/sem/n/n_nonfinite over contexts), ``loo.npz`` (raw
per-context arrays), ``loo_<influence>.png``.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from assay import Run, stage

from ._checks import model_check
from ._contexts import Accumulator, draw_contexts, summarise, warn_nonfinite, words_of
from ._geometry import ICLConfig, open_lm
from ._graphs import GraphConfig, bridges
from ._loo import INFLUENCES, PREFIX_CHUNK, loo_batched, loo_reference
from ._plots import plot_loo
from ._stage_train import SMOKE_TRAIN


class LOOConfig(ICLConfig):
    graph: GraphConfig = Field(GraphConfig(kind="hsbm"), description="the graph walked")
    n_contexts: int = Field(4, ge=1, description="random-walk contexts")
    n_words: int = Field(64, ge=3, description="words per context")
    positions: tuple[int, ...] | None = Field(
        None, description="positions left out one at a time; null: every position"
    )
    mode: Literal["batched", "published"] = Field(
        "batched",
        description="batched: prefix-cache reuse, fast; published: one forward per left-out word, for checking",
    )
    # batched mode: reuse the full context's key/value cache for the words before the left-out
    # one, chunks of this many variants (the fastest measured, see _loo.PREFIX_CHUNK; ~1.9x fewer
    # positions computed for 64 words than without reuse); null: all variants in batches of
    # batch_size, no reuse. Changes no number (float rounding only), so not in the run id.
    prefix_chunk: int | None = Field(
        PREFIX_CHUNK,
        ge=1,
        description="left-out positions sharing one prefix cache; null: every variant from its first token",
    )
    seed: int = Field(0, description="seeds the random walks")
    identity_exclude: ClassVar[frozenset[str]] = ICLConfig.identity_exclude | {"prefix_chunk"}

    @model_validator(mode="after")
    def _check(self):
        if self.positions is not None and any(not 0 <= p < self.n_words for p in self.positions):
            raise ValueError(
                f"positions {list(self.positions)} must lie in 0..{self.n_words - 1} (n_words)"
            )
        return self


@stage(
    "icl.loo",
    config=LOOConfig,
    version=1,
    check=model_check(lambda c: c.n_words),
    smoke={"n_contexts": 2, "n_words": 16, "train": SMOKE_TRAIN},
)
def loo_stage(config: LOOConfig, run: Run) -> dict:
    """LOO influence heatmaps; see the module docstring. Resumes per context."""
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    positions = list(range(config.n_words)) if config.positions is None else config.positions
    graph, walks, _ = draw_contexts(config.graph, config.n_contexts, config.n_words, config.seed)
    contexts = words_of(graph, walks)
    is_bridge = bridges(graph.labels, walks)[:, positions]  # (C, P)
    acc = Accumulator(run, config.n_contexts)
    t0 = time.perf_counter()
    forwards = 0
    for c in range(acc.done, config.n_contexts):
        if config.mode == "batched":
            left_out = acc.bar.inner(len(positions), "left-out word")
            res = loo_batched(
                lm,
                contexts[c],
                walks[c],
                graph,
                layers,
                positions,
                config.batch_size,
                config.prefix_chunk,
                left_out,
            )
        else:
            left_out = acc.bar.inner(len(layers) * len(positions), "layer x left-out word")
            res = loo_reference(lm, contexts[c], walks[c], graph, layers, positions, left_out)
        forwards += res.forwards
        acc.add(
            **{f"influence/{k}": v for k, v in res.influence.items()},
            **{f"full/{k}": v for k, v in res.full.items()},
        )
        run.log(f"context {c + 1}/{config.n_contexts}: {res.forwards} forwards")
    seconds = time.perf_counter() - t0
    doc = {
        "schema": "icl.loo/1",
        "layers": layers,
        "positions": list(positions),
        "n_contexts": config.n_contexts,
        "graph": graph.kind,
        "bridge_fraction": is_bridge.mean(0).tolist(),
        "influence": {},
    }
    raw = {"bridge": is_bridge}
    for name in INFLUENCES:
        v = acc.stacked(f"influence/{name}")  # (C, L, P)
        raw[name] = v
        warn_nonfinite(run, f"influence/{name}", v)
        b = np.where(is_bridge[:, None, :], v, np.nan)
        a = np.where(~is_bridge[:, None, :], v, np.nan)
        doc["influence"][name] = {
            "heatmap": summarise(v),  # [layer][position], over contexts
            # over (context, position) pairs of each kind, per layer
            "bridge": summarise(b.transpose(0, 2, 1).reshape(-1, len(layers))),
            "anchor": summarise(a.transpose(0, 2, 1).reshape(-1, len(layers))),
        }
    run.save_json("loo.json", doc)
    with run.write_artifact("loo.npz") as tmp:
        # numpy's stub puts `allow_pickle: bool` beside `**kwds: ArrayLike`, so mypy matches any
        # str-keyed dict against that bool; these keys are metric names, never allow_pickle
        arrays = {"layers": np.array(layers), "positions": np.array(positions), **raw}
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
    plot_loo(doc, run.artifacts_dir)
    last = len(layers) - 1
    out = {
        "n_bridges": int(is_bridge.sum()),
        "n_anchors": int((~is_bridge).sum()),
        "seconds": seconds,
        "forwards": forwards,
        **lm.batch.record(),
    }
    for name in ("ratio", "energy"):
        for kind in ("bridge", "anchor"):
            out[f"{name}/{kind}/last_layer"] = doc["influence"][name][kind]["mean"][last]
    return out
