"""Batched leave-one-out equals the published one-forward-per-(layer, word) loop."""

from __future__ import annotations

import numpy as np
import pytest

from assay.families.icl._graphs import GraphConfig, build_graph, random_walks
from assay.families.icl._loo import INFLUENCES, loo_batched, loo_reference


def _context(n_words: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    graph = build_graph(GraphConfig(kind="hsbm", p_inter=0.2, bridge_penalty=0.5), rng)
    walk = random_walks(graph, 1, n_words, rng)[0]
    return graph, walk, [graph.words[i] for i in walk]


def _assert_same(a, b):
    for name in INFLUENCES:
        assert a.influence[name].shape == (len(a.layers), len(a.positions))
        np.testing.assert_allclose(a.influence[name], b.influence[name], rtol=1e-4, atol=1e-6)
    for k in a.full:
        np.testing.assert_allclose(a.full[k], b.full[k], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.left_out[k], b.left_out[k], rtol=1e-5, atol=1e-7)


def test_batched_loo_equals_one_forward_per_layer_and_word(word_lm):
    graph, walk, words = _context(20)
    fast = loo_batched(word_lm, words, walk, graph, batch_size=8, prefix_chunk=None)
    slow = loo_reference(word_lm, words, walk, graph)
    _assert_same(fast, slow)
    assert fast.forwards == 1 + 3 and slow.forwards == 4 * (20 + 1)  # 4 layers x (full + 20)
    assert np.isfinite(fast.influence["ratio"]).mean() > 0.9


@pytest.mark.parametrize("prefix_chunk", [None, 2, 8])
def test_batched_loo_with_multi_token_words_and_padding(bpe_lm, prefix_chunk):
    graph, walk, words = _context(12, seed=1)
    pos = [11, 0, 3, 7, 5]  # unsorted: results come back in the order asked
    fast = loo_batched(bpe_lm, words, walk, graph, [0, 1, 2], pos, prefix_chunk=prefix_chunk)
    slow = loo_reference(bpe_lm, words, walk, graph, layers=[0, 1, 2], positions=pos)
    _assert_same(fast, slow)


def test_prefix_reuse_equals_one_forward_per_layer_and_word(word_lm):
    graph, walk, words = _context(20, seed=2)
    fast = loo_batched(word_lm, words, walk, graph, prefix_chunk=4)
    _assert_same(fast, loo_reference(word_lm, words, walk, graph))
    assert fast.forwards == 1 + 5  # the full context (states + cache), then 20 / 4 chunks


def test_influence_signs_follow_the_published_convention(word_lm):
    graph, walk, words = _context(16)
    r = loo_batched(word_lm, words, walk, graph, layers=[1])
    ratio = r.full["cross_within_ratio"][:, None] - r.left_out["cross_within_ratio"]
    energy = r.left_out["same_cluster_energy"] - r.full["same_cluster_energy"][:, None]
    np.testing.assert_allclose(r.influence["ratio"], ratio)
    np.testing.assert_allclose(r.influence["energy"], energy)


@pytest.mark.parametrize("positions", [[-1], [16]])
def test_left_out_positions_outside_the_context_fail_clearly(tmp_path, positions):
    from assay import ConfigError
    from assay.testing import smoke_config

    with pytest.raises(ConfigError, match="positions"):
        smoke_config("icl.loo", n_words=16, positions=positions)


@pytest.mark.parametrize("prefix_chunk", [None, 8])
def test_out_of_memory_halves_the_batch_and_changes_no_number(word_lm, prefix_chunk, caplog):
    """A device that fits 2 sequences per forward: the variants go through 2 at a time, one
    log line says so, the numbers are those of the unconstrained run, and lm.batch records 2."""
    import dataclasses

    import torch

    from assay.ml import AdaptiveBatch

    graph, walk, words = _context(12, seed=3)
    want = loo_batched(word_lm, words, walk, graph, batch_size=8, prefix_chunk=prefix_chunk)
    lm = dataclasses.replace(word_lm, batch=AdaptiveBatch(None, knob="batch_size", what="seq"))

    def small_device(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")

    hook = lm.model.base_model.register_forward_pre_hook(small_device, with_kwargs=True)
    try:
        got = loo_batched(lm, words, walk, graph, batch_size=8, prefix_chunk=prefix_chunk)
    finally:
        hook.remove()
    _assert_same(got, want)
    assert lm.batch.record() == {"batch_size_used": 2, "batch_size_halvings": 2}
    assert got.forwards == 1 + 6  # the full context, then 12 variants 2 at a time
    logged = [r.getMessage() for r in caplog.records if r.name == "assay.ml"]
    assert len(logged) == 1 and logged[0].startswith("out of memory at 8 seqs per forward; 2 fit")
