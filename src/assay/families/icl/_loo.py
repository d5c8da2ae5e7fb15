"""Leave-one-out influence of every context word on every layer's geometry, batched.

    res = loo_batched(lm, words, nodes, graph, layers)   # 1 + ceil(P / prefix_chunk) forwards
    res.influence["ratio"]   # (L, P): ratio(full) - ratio(context without word j)

All left-out variants of a context have the same number of words, so they go through the model
together (right-padded when words have different token counts), and one forward returns every
layer. Prefix key/value reuse (``prefix_chunk``, the default): variant j shares its first
tokens with the full context, so the full context's key/value cache, cut to the chunk's common
prefix, stands in for those positions and only the rest is computed (chunks of
``prefix_chunk`` consecutive left-out positions: smaller chunks compute fewer padded positions,
at more forwards). ``prefix_chunk=None``: every variant computed from its first token, in
batches of ``batch_size``. The published design ran one forward per (layer, left-out word):
``loo_reference`` is that loop, kept to test that both give the same numbers and to benchmark.

Influences (sign as published: positive = the word builds the structure):
    ratio            R(full) - R(-j)         R = cross_within_ratio
    energy           E(-j) - E(full)         E = same_cluster_energy (lower = tighter clusters)
    dirichlet        D(-j) - D(full)         D = dirichlet_energy over the graph's edges
    cross_distance   d_c(full) - d_c(-j)
    within_distance  d_w(full) - d_w(-j)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._geometry import geometry
from ._graphs import Graph
from ._lm import LM, encode, forward_states, pool, word_states
from ._metrics import class_means

INFLUENCES = {  # name -> (geometry metric, sign of full - loo)
    "ratio": ("cross_within_ratio", 1.0),
    "energy": ("same_cluster_energy", -1.0),
    "dirichlet": ("dirichlet_energy", -1.0),
    "cross_distance": ("cross_distance", 1.0),
    "within_distance": ("within_distance", 1.0),
}
METRICS = tuple(metric for metric, _ in INFLUENCES.values())  # what both designs compute
# Variants per prefix-reuse chunk. bench/bench_icl.py --sweep (64 words, 6 layers, d_model 128,
# one CPU thread): 8 was fastest (9 forwards, ~10% padded positions), 4 and 16 within 5%, 2 and
# 1 pay per-forward overhead 33 and 65 times, one batch without reuse computes ~2x the positions.
PREFIX_CHUNK = 8


@dataclasses.dataclass
class LOOResult:
    layers: list[int]
    positions: list[int]
    full: dict[str, np.ndarray]  # metric -> (L,)
    left_out: dict[str, np.ndarray]  # metric -> (L, P)
    influence: dict[str, np.ndarray]  # influence name -> (L, P)
    forwards: int  # model forward calls made


def variants(words: Sequence[str], positions: Sequence[int]) -> list[list[str]]:
    return [list(words[:j]) + list(words[j + 1 :]) for j in positions]


def _stats(reps: torch.Tensor, nodes: np.ndarray, graph: Graph) -> dict[str, np.ndarray]:
    """The influences' metrics of (L, B, W, d) word representations -> {metric: (L, B)}."""
    means = class_means(reps, torch.from_numpy(nodes), graph.n_nodes)  # (L, B, N, d)
    return {k: v.numpy() for k, v in geometry(means, graph, metrics=METRICS).items()}


def _influence(full: dict, loo: dict) -> dict[str, np.ndarray]:
    return {
        name: sign * (full[metric][:, None] - loo[metric])
        for name, (metric, sign) in INFLUENCES.items()
    }


@torch.inference_mode()
def loo_batched(
    lm: LM,
    words: Sequence[str],
    nodes: np.ndarray,
    graph: Graph,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    batch_size: int = 64,
    prefix_chunk: int | None = PREFIX_CHUNK,
    counter: Any = None,
) -> LOOResult:
    """Leave out each word in ``positions`` (default all); every layer from the same forwards.

    ``counter``: a run's progress counter of left-out words (``Progress.inner``)."""
    layers = lm.check_layers(layers)
    positions = list(range(len(words))) if positions is None else list(positions)
    full, reps, n_fwd = loo_states(lm, words, positions, layers, prefix_chunk, batch_size, counter)
    kept = torch.from_numpy(np.stack([np.delete(nodes, j) for j in positions]))  # (P, W-1)
    means = torch.cat(
        [
            class_means(full, torch.from_numpy(nodes)[None], graph.n_nodes),
            class_means(reps, kept, graph.n_nodes),
        ],
        1,
    )  # (L, 1 + P, N, d)
    stats = {k: v.numpy() for k, v in geometry(means, graph, metrics=METRICS).items()}
    f = {k: v[:, 0] for k, v in stats.items()}
    lo = {k: v[:, 1:] for k, v in stats.items()}
    return LOOResult(layers, positions, f, lo, _influence(f, lo), n_fwd)


def loo_states(
    lm: LM,
    words: Sequence[str],
    positions: Sequence[int],
    layers: list[int],
    prefix_chunk: int | None,
    batch_size: int,
    counter: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Word representations of the full context (L, 1, W, d) and of the left-out variants
    (L, P, W-1, d), and the number of forwards. One forward of the full context gives its
    states and key/value cache; each chunk of ``prefix_chunk`` variants (by left-out position)
    then computes only the tokens after its common prefix with the full context."""
    enc = encode(lm, [list(words), *variants(words, positions)])  # one tokenizer call
    model = lm.model.base_model  # the transformer without the LM head: states are all we read
    ids, mask = enc.input_ids.to(lm.device), enc.attention_mask.to(lm.device)
    n_full = int(mask[0].sum())
    # the full context: one sequence, so an out-of-memory here names the knob (lm.batch)
    hs, cache = lm.batch.map(
        1,
        lambda a, b: forward_states(
            model, ids[:1, :n_full], mask[:1, :n_full], use_cache=prefix_chunk is not None
        ),
    )[0]
    full = torch.stack([hs[layer] for layer in layers]).float()  # (L, 1, T, d)
    lengths = mask[1:].sum(1).tolist()  # tokens per variant
    t_var = max(lengths)
    full_ids, ids, mask = ids[0, :t_var], ids[1:, :t_var], mask[1:, :t_var]  # (P, T') variants
    states = full.new_zeros(len(layers), len(positions), t_var, full.shape[-1])  # (L, P, T', d)
    n_fwd = 1
    if prefix_chunk is None:

        def variants_from_start(a: int, b: int) -> None:
            hs = forward_states(model, ids[a:b], mask[a:b])[0]
            states[:, a:b] = torch.stack([hs[layer] for layer in layers]).float()
            if counter is not None:
                counter.update(b - a)

        # at most batch_size variants per forward, fewer after an out-of-memory (lm.batch)
        n_fwd += len(lm.batch.map(len(positions), variants_from_start, limit=batch_size))
    else:
        order = np.argsort(positions, kind="stable")
        for start in range(0, len(order), prefix_chunk):
            idx = order[start : start + prefix_chunk].tolist()
            # the shared prefix: tokens equal to the full context's, at least one left to compute
            p = min(lengths[i] for i in idx) - 1
            differ = (ids[idx, :p] != full_ids[:p]).any(0).nonzero()
            p = int(differ[0, 0]) if len(differ) else p
            t = max(lengths[i] for i in idx)

            def suffixes(a: int, b: int, idx: list[int] = idx, p: int = p, t: int = t) -> None:
                part = idx[a:b]  # a sub-chunk (after an out-of-memory) shares the same prefix
                past = None
                if p > 0:
                    past = copy.deepcopy(cache)
                    past.crop(p - n_full)  # remove all but the first p positions
                    past.batch_repeat_interleave(len(part))
                hs = forward_states(model, ids[part, p:t], mask[part, :t], cache=past)[0]
                states[:, part, :p] = full[:, :, :p]
                states[:, part, p:t] = torch.stack([hs[layer] for layer in layers]).float()
                if counter is not None:
                    counter.update(len(part))

            # the chunk in one forward, or split after an out-of-memory (lm.batch)
            n_fwd += len(lm.batch.map(len(idx), suffixes))
    # the metrics read them on the CPU, in float64
    return pool(full, enc.positions[:1]).cpu(), pool(states, enc.positions[1:]).cpu(), n_fwd


@torch.no_grad()
def loo_reference(
    lm: LM,
    words: Sequence[str],
    nodes: np.ndarray,
    graph: Graph,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    counter: Any = None,
) -> LOOResult:
    """The published design: one forward of the full context per layer and one forward per
    (layer, left-out word), each read at that single layer, the same metrics of each.
    ``counter`` counts the (layer, left-out word) forwards."""
    layers = lm.check_layers(layers)
    positions = list(range(len(words))) if positions is None else list(positions)
    full: dict[str, list] = {}
    loo: dict[str, list] = {}
    n_fwd = 0
    for layer in layers:
        st = word_states(lm, [list(words)], [layer], loss=False)
        n_fwd += 1
        for k, v in _stats(st.reps, nodes[None], graph).items():
            full.setdefault(k, []).append(v[0, 0])
        row: dict[str, list] = {}
        for j, ctx in zip(positions, variants(words, positions), strict=True):
            st = word_states(lm, [ctx], [layer], loss=False)
            n_fwd += 1
            for k, v in _stats(st.reps, np.delete(nodes, j)[None], graph).items():
                row.setdefault(k, []).append(v[0, 0])
            if counter is not None:
                counter.update()
        for k, per_word in row.items():
            loo.setdefault(k, []).append(per_word)
    f = {k: np.array(v) for k, v in full.items()}
    lo = {k: np.array(v) for k, v in loo.items()}
    return LOOResult(layers, positions, f, lo, _influence(f, lo), n_fwd)
