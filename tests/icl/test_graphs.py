"""Graph construction, walks and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from assay import ConfigError
from assay.core._config import build_config
from assay.families.icl._graphs import (
    GRAPH_KINDS,
    GraphConfig,
    _components,
    bridges,
    build_graph,
    random_walks,
    walks_dual,
)
from assay.families.icl.stages import GeometryConfig


@pytest.mark.parametrize("kind", GRAPH_KINDS)
def test_every_kind_is_a_connected_symmetric_graph_with_words(kind):
    g = build_graph(GraphConfig(kind=kind), np.random.default_rng(0))
    assert (g.edges == g.edges.T).all() and not g.edges.diagonal().any()
    assert len(_components(g.edges)) == 1
    assert len(set(g.words)) == g.n_nodes and g.labels.shape == (g.n_nodes,)
    assert ((g.weights > 0) == g.edges).all()


def test_same_seed_same_graph_and_walks():
    def draw(seed):
        rng = np.random.default_rng(seed)
        g = build_graph(GraphConfig(kind="hsbm"), rng)
        return g, random_walks(g, 3, 50, rng)

    (g1, w1), (g2, w2), (_, w3) = draw(1), draw(1), draw(2)
    assert (g1.edges == g2.edges).all() and g1.words == g2.words and (w1 == w2).all()
    assert not (w1 == w3).all()


def test_walks_follow_edges_and_bridge_penalty_keeps_walks_in_clusters():
    rng = np.random.default_rng(0)
    g = build_graph(GraphConfig(kind="hsbm", p_inter=0.3, bridge_penalty=0.05), rng)
    w = random_walks(g, 20, 200, rng)
    assert g.edges[w[:, :-1], w[:, 1:]].all()
    b = bridges(g.labels, w)
    assert not b[:, 0].any()
    assert (b[:, 1:] == (g.labels[w[:, 1:]] != g.labels[w[:, :-1]])).all()
    # cross edges are ~0.3 / 0.9 * 12 / 3 as many as intra ones, but weighted 0.05: rare
    assert b.mean() < 0.15


def test_hsbm_patch_connects_a_graph_with_no_cross_edges():
    g = build_graph(GraphConfig(kind="hsbm", p_inter=0.0), np.random.default_rng(0))
    assert len(_components(g.edges)) == 1 and g.info["patch_edges"] >= 3  # 4 clusters joined


def test_deep_hierarchy_sibling_distance_option():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    kw = dict(kind="deep", branching=(2, 2, 4), p_same=1.0, p_decay=0.5, bridge_penalty=0.5)
    intent = build_graph(GraphConfig(**kw, sibling_distance=0), rng())
    published = build_graph(GraphConfig(**kw, sibling_distance=1), rng())
    # intent: siblings (same leaf group of 4) connect with p_same = 1 and walk weight 1
    assert intent.edges[0, 1:4].all() and (intent.weights[0, 1:4] == 1.0).all()
    # published: siblings are at distance 1: walk weight 0.5, cousins 0.25
    assert np.allclose(published.weights[0, 1:4][published.edges[0, 1:4]], 0.5)
    assert set(intent.levels) == {"cluster", "level1", "level2"}
    assert (intent.levels["level2"] == np.arange(16) // 4).all()


def test_bipartite_flags_of_lattices():
    kinds = {
        k: build_graph(GraphConfig(kind=k), np.random.default_rng(0)).is_bipartite
        for k in ("grid", "triangular", "hexagonal", "ring")
    }
    assert kinds == {"grid": True, "triangular": False, "hexagonal": True, "ring": True}
    odd = build_graph(GraphConfig(kind="ring", n_nodes=15), np.random.default_rng(0))
    assert not odd.is_bipartite


def test_semantic_conflict_clusters_cross_the_semantic_groups():
    g = build_graph(GraphConfig(kind="semantic_conflict"), np.random.default_rng(0))
    for k in range(4):
        assert sorted(g.semantic[g.labels == k]) == sorted(set(g.semantic))  # one of each
    pairs = g.semantic_pairs()
    assert len(pairs) == 4 * 6  # 4 groups x C(4, 2) cross-cluster pairs
    assert (g.semantic[pairs[:, 0]] == g.semantic[pairs[:, 1]]).all()


def test_dual_walks_stay_in_rows_after_the_disambiguation_point():
    rng = np.random.default_rng(0)
    g = build_graph(GraphConfig(kind="dual"), rng)
    w = walks_dual(g, 10, 100, 40, rng)
    row = g.levels["row"]
    assert (row[w[:, 40:]] == row[w[:, 39:40]]).all()
    assert (row[w[:, 1:40]] != row[w[:, :39]]).any()


def test_relabelled_graph_keeps_structure_over_the_same_words():
    rng = np.random.default_rng(0)
    g = build_graph(GraphConfig(kind="grid"), rng)
    perm = rng.permutation(16)
    h = g.relabelled(perm)
    assert h.words == g.words and h.edges.sum() == g.edges.sum()
    assert all(h.edges[perm[i], perm[j]] == g.edges[i, j] for i in range(16) for j in range(16))


def test_unknown_graph_kind_is_a_clear_config_error():
    with pytest.raises(ConfigError, match=r"unknown graph kind 'lattice'.*valid kinds: hsbm"):
        build_config(GeometryConfig, {"graph": {"kind": "lattice"}}, stage="icl.geometry")
    with pytest.raises(ConfigError, match="unknown graph kind"):
        build_graph(GraphConfig.model_construct(kind="lattice"), np.random.default_rng(0))


def test_word_list_shorter_than_the_graph_is_a_clear_config_error(tmp_path):
    short = tmp_path / "five.txt"
    short.write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(ConfigError, match=r"has 5 words but the grid graph has 16 nodes"):
        build_graph(GraphConfig(words=str(short)), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="neither a packaged list"):
        build_graph(GraphConfig(words="nope"), np.random.default_rng(0))
