"""Graphs whose nodes are ordinary words, and random walks over them (the contexts).

    from assay.families.icl._graphs import GraphConfig, build_graph, random_walks
    rng = np.random.default_rng(0)                    # one generator per experiment
    graph = build_graph(GraphConfig(kind="hsbm"), rng)
    walks = random_walks(graph, n_walks=8, length=128, rng=rng)   # (8, 128) node ids

Every random choice (edges, word assignment, walks) draws from the one ``numpy`` Generator the
caller passes, so an experiment is a pure function of its seed. Node ``i`` is the word
``graph.words[i]``; label sets (``graph.levels``) name the clusters a metric groups by, with
``"cluster"`` the primary (top-level) one, used for bridge marks.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from assay import ConfigError, suite_path
from assay.ml import sha256_file

GRAPH_KINDS = (
    "hsbm",
    "deep",
    "grid",
    "ring",
    "triangular",
    "hexagonal",
    "semantic_conflict",
    "dual",
)
WORD_LISTS = ("park", "common", "semantic")


class GraphConfig(BaseModel):
    """What graph to build. Fields a kind does not use are ignored by it (see README)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str = Field(
        "grid",
        description="graph family: grid, triangular, hexagonal, ring, hsbm, deep, dual, semantic_conflict, ...",
    )
    rows: int = Field(
        4, ge=2, description="grid, triangular, hexagonal, dual: rows (Park: a 4 x 4 grid)"
    )
    cols: int = Field(4, ge=2, description="lattices: columns")
    periodic: bool = Field(
        False, description="lattices: wrap around (a torus); dual forces it for symmetry"
    )
    n_nodes: int = Field(16, ge=3, description="ring: nodes")
    n_clusters: int = Field(
        4, ge=1, description="hsbm, semantic_conflict: superclusters K; ring: arcs"
    )
    cluster_size: int = Field(
        4, ge=1, description="hsbm: nodes per cluster; semantic_conflict: groups per cluster"
    )
    p_intra: float = Field(0.9, ge=0, le=1, description="hsbm: edge probability within a cluster")
    p_inter: float = Field(0.05, ge=0, le=1, description="hsbm: edge probability across clusters")
    # walk weight of a cross-cluster edge relative to 1 within (hsbm), or per unit of tree
    # distance (deep): < 1 makes the walk linger inside a cluster, so clusters are learnable
    bridge_penalty: float = Field(
        0.1,
        gt=0,
        le=1,
        description="walk weight of a cross-cluster edge relative to 1 within (below 1: clusters are learnable)",
    )
    branching: tuple[int, ...] = Field(
        (2, 2, 4), description="deep: children per tree level, leaves last"
    )
    p_same: float = Field(
        0.9, ge=0, le=1, description="deep: edge probability p_same x p_decay ^ tree distance"
    )
    p_decay: float = Field(
        0.3,
        ge=0,
        le=1,
        description="deep: decay of the edge probability per unit of tree distance",
    )
    # deep: tree distance of two siblings in one leaf group. 0 = the stated intent (siblings
    # connect with p_same); 1 = the published code (siblings get p_same * p_decay).
    sibling_distance: Literal[0, 1] = Field(
        0, description="deep: tree distance of siblings; 0 the stated intent, 1 the published code"
    )
    # a packaged list (park: 16 words, the model trained here knows them; common: 219; semantic)
    # or a path to a .txt file with one word per line
    words: str = Field(
        "park",
        description="a packaged word list (park, common, semantic) or a .txt file, one word per line",
    )
    shuffle_words: bool = Field(
        True, description="a random word per node from the list; false: list order"
    )
    # A word file is a content reference: its sha256 is filled in (and so in the run id) when
    # the config is built, and a suite's relative path is the suite file's neighbour.
    words_sha256: str | None = Field(
        None, description="sha256 of a words file (filled in); null for packaged lists"
    )

    @model_validator(mode="before")
    @classmethod
    def _word_file(cls, data: Any, info: ValidationInfo) -> Any:
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, str) or words in WORD_LISTS:
            return data
        path = suite_path(words, info)
        if not Path(path).is_file():
            return data  # a missing word file is refused at plan time, naming the valid lists
        if data.get("words_sha256") is not None:
            return {**data, "words": path}  # a stored config: its recorded hash
        return {**data, "words": path, "words_sha256": sha256_file(path)}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in GRAPH_KINDS:
            raise ValueError(f"unknown graph kind {v!r}; valid kinds: {', '.join(GRAPH_KINDS)}")
        return v

    @field_validator("branching")
    @classmethod
    def _branching(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 2 or any(b < 2 for b in v):
            raise ValueError(f"branching needs >= 2 levels of >= 2 children, got {list(v)}")
        return v


@dataclasses.dataclass(frozen=True)
class Graph:
    kind: str
    edges: np.ndarray  # (N, N) bool, symmetric, no self-loops
    weights: np.ndarray  # (N, N) float64 walk weights, 0 off the edges
    levels: dict[str, np.ndarray]  # label set name -> (N,) int; "cluster" is the primary one
    words: tuple[str, ...]  # node i is the word words[i]
    coords: np.ndarray | None = None  # (N, 2) layout of a lattice (plots)
    semantic: np.ndarray | None = None  # (N,) semantic group of each node (semantic_conflict)
    info: dict = dataclasses.field(default_factory=dict)  # e.g. patch edges added

    @property
    def n_nodes(self) -> int:
        return len(self.words)

    @property
    def labels(self) -> np.ndarray:
        return self.levels["cluster"]

    @property
    def is_bipartite(self) -> bool:
        return _two_colouring(self.edges) is not None

    def semantic_pairs(self) -> np.ndarray:
        """(P, 2) node pairs i < j with the same semantic group in different clusters."""
        if self.semantic is None:
            raise ConfigError(f"graph kind {self.kind!r} has no semantic groups")
        i, j = np.triu_indices(self.n_nodes, 1)
        keep = (self.semantic[i] == self.semantic[j]) & (self.labels[i] != self.labels[j])
        return np.stack([i[keep], j[keep]], axis=1)

    def relabelled(self, perm: np.ndarray) -> Graph:
        """The same structure with node i moved to node perm[i] (words stay where they are):
        a second graph over the same words, for context switches."""
        inv = np.argsort(perm)
        return dataclasses.replace(
            self,
            edges=self.edges[np.ix_(inv, inv)],
            weights=self.weights[np.ix_(inv, inv)],
            levels={k: v[inv] for k, v in self.levels.items()},
            coords=None if self.coords is None else self.coords[inv],
            semantic=None if self.semantic is None else self.semantic[inv],
        )


def load_words(name: str) -> list[str]:
    """A word list: a packaged name (``park``, ``common``, ``semantic``) or a text file path."""
    return list(_load_words(name))


@functools.lru_cache(maxsize=32)
def _load_words(name: str) -> tuple[str, ...]:
    if name in WORD_LISTS:
        text = resources.files(__package__).joinpath("words", f"{name}.txt").read_text()
    elif Path(name).is_file():
        text = Path(name).read_text()
    else:
        raise ConfigError(
            f"word list {name!r} is neither a packaged list ({', '.join(WORD_LISTS)}) nor a "
            "file; give one of those or the path to a .txt file with one word per line"
        )
    rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return tuple(r[-1] for r in rows)  # "group word" lines (semantic.txt) keep the word


def semantic_groups(name: str = "semantic") -> dict[str, list[str]]:
    text = resources.files(__package__).joinpath("words", f"{name}.txt").read_text()
    out: dict[str, list[str]] = {}
    for ln in text.splitlines():
        if ln.strip() and not ln.startswith("#"):
            group, word = ln.split()
            out.setdefault(group, []).append(word)
    return out


def build_graph(config: GraphConfig, rng: np.random.Generator) -> Graph:
    """Build the configured graph; every random choice comes from ``rng``."""
    if config.kind not in GRAPH_KINDS:  # a config built with model_construct skips validation
        raise ConfigError(f"unknown graph kind {config.kind!r}; valid: {', '.join(GRAPH_KINDS)}")
    if config.kind == "semantic_conflict":
        return _semantic_conflict(config, rng)
    edges, weights, levels, coords, info = _STRUCTURES[config.kind](config, rng)
    n = len(edges)
    vocab = load_words(config.words)
    if len(vocab) < n:
        raise ConfigError(
            f"word list {config.words!r} has {len(vocab)} words but the {config.kind} graph "
            f"has {n} nodes; use a longer list or a smaller graph"
        )
    pick = rng.choice(len(vocab), n, replace=False) if config.shuffle_words else np.arange(n)
    words = tuple(vocab[i] for i in pick)
    return Graph(config.kind, edges, weights, levels, words, coords, info=info)


# --- structures: (edges, weights, levels, coords, info) --------------------------------------


def _hsbm(c: GraphConfig, rng: np.random.Generator):
    n = c.n_clusters * c.cluster_size
    labels = np.arange(n) // c.cluster_size
    same = labels[:, None] == labels[None, :]
    edges = _sample_edges(np.where(same, c.p_intra, c.p_inter), rng)
    edges, patched = _connect(edges, labels, rng)
    weights = edges * np.where(same, 1.0, c.bridge_penalty)
    return edges, weights, {"cluster": labels}, None, {"patch_edges": patched}


def _deep(c: GraphConfig, rng: np.random.Generator):
    b = np.array(c.branching)
    n = int(b.prod())
    depth = len(b)
    # ancestor at depth l (1..depth-1) of leaf i: i // (product of the deeper branchings)
    anc = [np.arange(n) // int(b[l:].prod()) for l in range(1, depth)]  # noqa: E741
    shared = np.zeros((n, n), int)  # deepest depth at which i and j share an ancestor
    for level, a in enumerate(anc, start=1):
        shared[a[:, None] == a[None, :]] = level
    dist = (depth - 1 - shared) + c.sibling_distance  # siblings: 0 (+1 published)
    edges = _sample_edges(c.p_same * c.p_decay**dist, rng)
    levels = {f"level{l}": a for l, a in enumerate(anc, start=1)}  # noqa: E741
    edges, patched = _connect(edges, anc[-1], rng)
    weights = edges * c.bridge_penalty ** dist.astype(float)
    return edges, weights, {"cluster": anc[0], **levels}, None, {"patch_edges": patched}


def _lattice(c: GraphConfig, rng: np.random.Generator, steps, periodic: bool):
    r, k = np.divmod(np.arange(c.rows * c.cols), c.cols)
    edges = np.zeros((len(r),) * 2, bool)
    for dr, dc, when in steps:
        rr, kk = r + dr, k + dc
        ok = when(r, k)
        if periodic:
            rr, kk = rr % c.rows, kk % c.cols
        else:
            ok &= (rr >= 0) & (rr < c.rows) & (kk >= 0) & (kk < c.cols)
        edges[np.arange(len(r))[ok], (rr * c.cols + kk)[ok]] = True
    edges |= edges.T
    np.fill_diagonal(edges, False)
    quadrant = (r >= c.rows / 2) * 2 + (k >= c.cols / 2)  # 2 x 2 blocks: bridges, separation
    coords = np.stack([k, -r], 1).astype(float)
    return edges, edges.astype(float), {"cluster": quadrant, "row": r, "col": k}, coords, {}


_ALL = lambda r, k: np.ones_like(r, bool)  # noqa: E731


def _grid(c, rng):
    return _lattice(c, rng, [(0, 1, _ALL), (1, 0, _ALL)], c.periodic)


def _triangular(c, rng):  # grid + one diagonal: 6 neighbours, odd cycles (not bipartite)
    return _lattice(c, rng, [(0, 1, _ALL), (1, 0, _ALL), (1, 1, _ALL)], c.periodic)


def _hexagonal(c, rng):  # honeycomb as a brick wall: vertical edges on alternating columns
    return _lattice(c, rng, [(0, 1, _ALL), (1, 0, lambda r, k: (r + k) % 2 == 0)], c.periodic)


def _dual(c, rng):  # a torus grid read two ways: by row or by column (see walks_dual)
    edges, weights, levels, coords, _ = _lattice(c, rng, [(0, 1, _ALL), (1, 0, _ALL)], True)
    return edges, weights, {**levels, "cluster": levels["row"]}, coords, {}


def _ring(c: GraphConfig, rng):
    i = np.arange(c.n_nodes)
    edges = np.zeros((c.n_nodes,) * 2, bool)
    edges[i, (i + 1) % c.n_nodes] = True
    edges |= edges.T
    arcs = i * min(c.n_clusters, c.n_nodes) // c.n_nodes
    angle = 2 * np.pi * i / c.n_nodes
    coords = np.stack([np.cos(angle), np.sin(angle)], 1)
    return edges, edges.astype(float), {"cluster": arcs}, coords, {}


_STRUCTURES = {
    "hsbm": _hsbm,
    "deep": _deep,
    "grid": _grid,
    "ring": _ring,
    "triangular": _triangular,
    "hexagonal": _hexagonal,
    "dual": _dual,
}


def _semantic_conflict(c: GraphConfig, rng: np.random.Generator) -> Graph:
    """K graph clusters, each holding one word of each of ``cluster_size`` semantic groups:
    graph clusters cut across the groups the pretrained semantics suggest."""
    groups = semantic_groups()
    names = list(groups)
    if c.cluster_size > len(names) or c.n_clusters > min(len(v) for v in groups.values()):
        raise ConfigError(
            f"semantic_conflict with n_clusters={c.n_clusters}, cluster_size={c.cluster_size}: "
            f"the semantic list has {len(names)} groups of {min(len(v) for v in groups.values())}"
            " words; use cluster_size <= the groups and n_clusters <= the words per group"
        )
    chosen = rng.choice(len(names), c.cluster_size, replace=False)
    words, labels, semantic = [], [], []
    for g in chosen:
        members = rng.choice(len(groups[names[g]]), c.n_clusters, replace=False)
        for k, m in enumerate(members):
            words.append(groups[names[g]][m])
            labels.append(k)
            semantic.append(int(g))
    labels_a = np.array(labels)
    order = np.argsort(labels_a, kind="stable")  # nodes grouped by cluster
    labels_a = labels_a[order]
    same = labels_a[:, None] == labels_a[None, :]
    edges = _sample_edges(np.where(same, c.p_intra, c.p_inter), rng)
    edges, patched = _connect(edges, labels_a, rng)
    weights = edges * np.where(same, 1.0, c.bridge_penalty)
    return Graph(
        "semantic_conflict",
        edges,
        weights,
        {"cluster": labels_a},
        tuple(words[i] for i in order),
        semantic=np.array(semantic)[order],
        info={"patch_edges": patched, "groups": [names[g] for g in chosen]},
    )


def _sample_edges(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    upper = np.triu(rng.random(p.shape) < p, 1)
    return upper | upper.T


def _components(edges: np.ndarray) -> list[np.ndarray]:
    seen = np.zeros(len(edges), bool)
    comps = []
    for s in range(len(edges)):
        if seen[s]:
            continue
        frontier, comp = np.array([s]), np.zeros(len(edges), bool)
        comp[s] = True
        while len(frontier):
            nxt = edges[frontier].any(0) & ~comp
            comp |= nxt
            frontier = np.flatnonzero(nxt)
        seen |= comp
        comps.append(np.flatnonzero(comp))
    return comps


def _connect(edges: np.ndarray, labels: np.ndarray, rng) -> tuple[np.ndarray, int]:
    """The connectivity patch: join components one edge at a time (a same-cluster pair when
    there is one), so every walk can reach every node. Returns the edges and how many were added."""
    edges = edges.copy()
    added = 0
    while len(comps := _components(edges)) > 1:
        a, b = comps[0], comps[1]
        same = labels[a][:, None] == labels[b][None, :]
        ia, ib = np.nonzero(same) if same.any() else np.nonzero(np.ones_like(same))
        k = rng.integers(len(ia))
        edges[a[ia[k]], b[ib[k]]] = edges[b[ib[k]], a[ia[k]]] = True
        added += 1
    return edges, added


def _two_colouring(edges: np.ndarray) -> np.ndarray | None:
    colour = np.full(len(edges), -1)
    for s in range(len(edges)):
        if colour[s] >= 0:
            continue
        colour[s], stack = 0, [s]
        while stack:
            u = stack.pop()
            for v in np.flatnonzero(edges[u]):
                if colour[v] < 0:
                    colour[v] = 1 - colour[u]
                    stack.append(int(v))
                elif colour[v] == colour[u]:
                    return None
    return colour


# --- walks -----------------------------------------------------------------------------------


def random_walks(
    graph: Graph,
    n_walks: int,
    length: int,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """(n_walks, length) node ids: each step picks a neighbour with probability proportional to
    its walk weight. ``start``: (n_walks,) first nodes (default uniform)."""
    w = graph.weights if weights is None else weights
    if (w.sum(1) <= 0).any():
        raise ConfigError(f"{graph.kind} graph has a node with no out-edge; walks would stop")
    cdf = np.cumsum(w / w.sum(1, keepdims=True), axis=1)  # (N, N)
    out = np.empty((n_walks, length), np.int64)
    out[:, 0] = rng.integers(graph.n_nodes, size=n_walks) if start is None else start
    for t in range(1, length):
        u = rng.random(n_walks)[:, None]
        out[:, t] = np.minimum((cdf[out[:, t - 1]] < u).sum(1), graph.n_nodes - 1)
    return out


def walks_dual(graph: Graph, n_walks: int, length: int, disambiguate_at: int, rng):
    """Dual-interpretation walks: lattice moves (rows and columns equally plausible) before
    ``disambiguate_at``, then moves within a row only (the row reading wins)."""
    first = random_walks(graph, n_walks, disambiguate_at, rng)
    row = graph.levels["row"]
    within = graph.weights * (row[:, None] == row[None, :])
    rest = random_walks(graph, n_walks, length - disambiguate_at + 1, rng, first[:, -1], within)
    return np.concatenate([first, rest[:, 1:]], axis=1)


def bridges(labels: np.ndarray, walks: np.ndarray) -> np.ndarray:
    """(..., T) bool: position t > 0 whose node's cluster differs from position t-1's."""
    lab = labels[walks]
    out = np.zeros(walks.shape, bool)
    out[..., 1:] = lab[..., 1:] != lab[..., :-1]
    return out
