"""Leave-one-out influence of every context word on every layer's geometry, batched.

    res = loo_batched(lm, words, nodes, graph, layers)   # 1 + ceil(P / batch_size) forwards
    res.influence["ratio"]   # (L, P): ratio(full) - ratio(context without word j)

All left-out variants of a context have the same number of words, so they go through the model
together (right-padded when words have different token counts), and one forward returns every
layer. Prefix key/value reuse (``prefix_chunk``): variant j shares its first words with the
full context, so the full context's key/value cache, cut to the chunk's common prefix, stands in
for those positions and only the rest is computed (chunks of ``prefix_chunk`` consecutive
positions: smaller chunks reuse more, at more forwards). The published design ran one forward
per (layer, left-out word): ``loo_reference`` is that loop, kept to test that both give the
same numbers and to benchmark against.

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

import numpy as np
import torch

from ._geometry import geometry
from ._graphs import Graph
from ._lm import LM, encode, forward_states, pool_matrix, word_states
from ._metrics import class_means

INFLUENCES = {  # name -> (geometry metric, sign of full - loo)
    "ratio": ("cross_within_ratio", 1.0),
    "energy": ("same_cluster_energy", -1.0),
    "dirichlet": ("dirichlet_energy", -1.0),
    "cross_distance": ("cross_distance", 1.0),
    "within_distance": ("within_distance", 1.0),
}


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
    means = class_means(reps, torch.from_numpy(nodes), graph.n_nodes)  # (L, B, N, d)
    return {k: v.numpy() for k, v in geometry(means, graph).items()}  # (L, B)


def _influence(full: dict, loo: dict) -> dict[str, np.ndarray]:
    return {
        name: sign * (full[metric][:, None] - loo[metric]) for name, (metric, sign) in
        INFLUENCES.items()
    }  # fmt: skip


def loo_batched(
    lm: LM, words: Sequence[str], nodes: np.ndarray, graph: Graph,
    layers: Sequence[int] | None = None, positions: Sequence[int] | None = None,
    batch_size: int = 64, prefix_chunk: int | None = None,
) -> LOOResult:  # fmt: skip
    """Leave out each word in ``positions`` (default all); every layer from the same forwards.
    ``prefix_chunk``: reuse the full context's cache for shared prefixes, chunks of this size."""
    layers = lm.check_layers(layers)
    positions = list(range(len(words))) if positions is None else list(positions)
    full = word_states(lm, [list(words)], layers)
    if prefix_chunk is None:
        reps = word_states(lm, variants(words, positions), layers, batch_size).reps
        n_fwd = 1 + -(-len(positions) // batch_size)
    else:
        reps = prefix_reuse_states(lm, words, positions, layers, prefix_chunk)
        n_fwd = 2 + -(-len(positions) // prefix_chunk)  # full (states), full (cache), chunks
    kept = np.stack([np.delete(nodes, j) for j in positions])  # (P, W-1)
    f = {k: v[:, 0] for k, v in _stats(full.reps, nodes[None], graph).items()}
    lo = _stats(reps, kept, graph)
    return LOOResult(layers, positions, f, lo, _influence(f, lo), n_fwd)


@torch.no_grad()
def prefix_reuse_states(
    lm: LM, words: Sequence[str], positions: Sequence[int], layers: list[int], chunk: int
) -> torch.Tensor:
    """(L, P, W-1, d) word representations of the left-out variants, computing only what
    follows each chunk's common prefix with the full context (its cache stands in for the rest)."""
    full = encode(lm, [list(words)])
    base = forward_states(lm.model, full.input_ids.to(lm.device), full.attention_mask.to(lm.device),
                          use_cache=True)  # fmt: skip
    ids_full = full.input_ids[0]
    out = []
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        enc = encode(lm, variants(words, [positions[i] for i in idx]))
        lengths = enc.attention_mask.sum(1)
        p = min(_common_prefix(ids_full, enc.input_ids[b, : lengths[b]]) for b in range(len(idx)))
        p = min(p, int(lengths.min()) - 1)  # at least one new token per variant
        ids, mask = enc.input_ids.to(lm.device), enc.attention_mask.to(lm.device)
        if p <= 0:
            hs = forward_states(lm.model, ids, mask)[0]
        else:
            cache = copy.deepcopy(base[1])
            cache.crop(p - ids_full.shape[0])  # keep the first p positions
            cache.batch_repeat_interleave(len(idx))
            new = forward_states(lm.model, ids[:, p:], mask, cache=cache)[0]
            hs = [torch.cat([h[:, :p].expand(len(idx), -1, -1), n], 1)
                  for h, n in zip(base[0], new, strict=True)]  # fmt: skip
        pool = pool_matrix(enc.positions, ids.shape[1])  # (B, W-1, T)
        stack = torch.stack([hs[layer] for layer in layers]).float().cpu()  # (L, B, T, d)
        out.append((idx, torch.einsum("bwt,lbtd->lbwd", pool, stack)))
    reps = torch.cat([r for _, r in out], 1)  # in sorted-position order
    inverse = np.argsort([i for idx, _ in out for i in idx])
    return reps[:, torch.from_numpy(inverse)]


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0, 0]) if len(diff) else n


def loo_reference(
    lm: LM, words: Sequence[str], nodes: np.ndarray, graph: Graph,
    layers: Sequence[int] | None = None, positions: Sequence[int] | None = None,
) -> LOOResult:  # fmt: skip
    """The published design: one forward of the full context per layer and one forward per
    (layer, left-out word), each read at that single layer."""
    layers = lm.check_layers(layers)
    positions = list(range(len(words))) if positions is None else list(positions)
    full: dict[str, list] = {}
    loo: dict[str, list] = {}
    n_fwd = 0
    for layer in layers:
        st = word_states(lm, [list(words)], [layer])
        n_fwd += 1
        for k, v in _stats(st.reps, nodes[None], graph).items():
            full.setdefault(k, []).append(v[0, 0])
        row: dict[str, list] = {}
        for j, ctx in zip(positions, variants(words, positions), strict=True):
            st = word_states(lm, [ctx], [layer])
            n_fwd += 1
            for k, v in _stats(st.reps, np.delete(nodes, j)[None], graph).items():
                row.setdefault(k, []).append(v[0, 0])
        for k, v in row.items():
            loo.setdefault(k, []).append(v)
    f = {k: np.array(v) for k, v in full.items()}
    lo = {k: np.array(v) for k, v in loo.items()}
    return LOOResult(layers, positions, f, lo, _influence(f, lo), n_fwd)
