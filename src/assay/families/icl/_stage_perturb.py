"""icl.shuffle and icl.inject: what happens to geometry and loss when the walk is disturbed.

    assay run suites/icl/perturb_smoke.yaml

icl.shuffle (block permutation vs full shuffle): each walk is also presented with its blocks of
``block_words`` words in a random order (local transitions kept, long-range order lost) and
fully shuffled (no transition kept). For the three conditions Φ (the geometry metrics) and the
perplexity exp(mean word loss) are reported vs context length, per layer. The same words are
present in all three at every length that is a multiple of ``block_words``, so differences are
the context's order, not its content.

icl.inject (incongruous tokens): at each position in ``inject_at`` the walk's word is replaced
by a ``wrong_cluster`` graph word (a node of another cluster), a ``random_vocab`` word (from the
word list, not in the graph), a ``semantic_outlier`` (from the semantic list, not in the graph)
or an ``oov`` string. Reported, each against the clean context at the same positions:
``injected_word_loss`` = loss of predicting the injected word itself (its surprise), and
``following_words_loss`` = mean loss of the ``after_words`` words right after it (how much the
disruption spreads), plus the change of each layer's geometry at the full length.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from assay import ConfigError, Run, stage

from . import _metrics as M
from ._checks import model_check
from ._contexts import Accumulator, draw_contexts, summarise, warn_nonfinite
from ._geometry import ICLConfig, geometry, open_lm
from ._graphs import GraphConfig, load_words
from ._lm import word_states
from ._plots import plot_lines
from ._stage_train import SMOKE_TRAIN

PHI = ("dirichlet_energy_standardised", "cluster_separation_bounded")
CONDITIONS = ("walk", "block", "shuffle")
Injection = Literal["wrong_cluster", "random_vocab", "semantic_outlier", "oov"]
INJECTIONS: tuple[Injection, ...] = ("wrong_cluster", "random_vocab", "semantic_outlier", "oov")


class ShuffleConfig(ICLConfig):
    graph: GraphConfig = Field(GraphConfig(kind="hsbm"), description="the graph walked")
    n_contexts: int = Field(8, ge=1, description="random-walk contexts")
    context_lengths: tuple[int, ...] = Field(
        (16, 32, 64, 128), description="context lengths (words) measured"
    )
    block_words: int = Field(
        8, ge=1, description="words per block in the block-shuffled condition"
    )
    seed: int = Field(0, description="seeds the walks and the shuffles")


@stage(
    "icl.shuffle",
    config=ShuffleConfig,
    version=1,
    check=model_check(lambda c: c.context_lengths[-1]),
    smoke={
        "n_contexts": 2,
        "context_lengths": (8, 16, 32),
        "block_words": 4,
        "train": SMOKE_TRAIN,
    },
)
def shuffle(config: ShuffleConfig, run: Run) -> dict:
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    n = config.context_lengths[-1]
    graph, walks, rng = draw_contexts(config.graph, config.n_contexts, n, config.seed)
    n_blocks = -(-n // config.block_words)
    orders = {
        "walk": np.tile(np.arange(n), (config.n_contexts, 1)),
        "block": np.stack(
            [
                np.concatenate(
                    [
                        np.arange(b * config.block_words, min(n, (b + 1) * config.block_words))
                        for b in rng.permutation(n_blocks)
                    ]
                )
                for _ in range(config.n_contexts)
            ]
        ),
        "shuffle": np.stack([rng.permutation(n) for _ in range(config.n_contexts)]),
    }
    acc = Accumulator(run, config.n_contexts)
    for c in range(acc.done, config.n_contexts):
        out: dict[str, np.ndarray] = {}
        nodes_by = {k: walks[c][o[c]] for k, o in orders.items()}
        st = word_states(lm, [[graph.words[i] for i in nodes_by[k]] for k in CONDITIONS], layers)
        for i, cond in enumerate(CONDITIONS):
            cols: dict[str, list] = {}
            for length in config.context_lengths:
                means = M.class_means(
                    st.reps[:, i, :length],
                    torch.from_numpy(nodes_by[cond][:length]),
                    graph.n_nodes,
                )
                stats = geometry(means, graph)
                for k in PHI:
                    cols.setdefault(k, []).append(stats[k].numpy())
                loss = st.loss[i, 1:length].nanmean().exp().expand(len(layers))
                cols.setdefault("perplexity", []).append(loss.numpy())
            for k, per_length in cols.items():
                out[f"{cond}/{k}"] = np.stack(per_length, 1)  # (L, n_lengths)
        acc.add(**out)
    metrics: dict[str, dict] = {}  # name -> summarise() over contexts
    doc = {
        "schema": "icl.shuffle/1",
        "layers": layers,
        "n_contexts": config.n_contexts,
        "context_lengths": list(config.context_lengths),
        "metrics": metrics,
    }
    for k in acc.state["items"]:
        values = acc.stacked(k)
        warn_nonfinite(run, k, values)
        metrics[k] = summarise(values)
    run.save_json("shuffle.json", doc)
    for k in (*PHI, "perplexity"):
        series = {c: _mean(doc, f"{c}/{k}") for c in CONDITIONS}
        plot_lines(
            config.context_lengths,
            series,
            layers,
            run.artifacts_dir / f"shuffle_{k}.png",
            "context length (words)",
            k,
            f"{k}: walk vs block permutation vs shuffle",
            logx=True,
        )
    last = -1
    return {
        f"{c}/{k}/last": metrics[f"{c}/{k}"]["mean"][last][-1]
        for c in CONDITIONS
        for k in (*PHI, "perplexity")
    }


class InjectConfig(ICLConfig):
    graph: GraphConfig = Field(GraphConfig(kind="hsbm"), description="the graph walked")
    n_contexts: int = Field(8, ge=1, description="random-walk contexts")
    n_words: int = Field(64, ge=4, description="words per context")
    inject_at: tuple[int, ...] = Field(
        (48,), description="positions (words) where a foreign word replaces the walk's"
    )
    kinds: tuple[Injection, ...] = Field(
        INJECTIONS,
        description="what is injected: wrong_cluster, random_vocab, semantic_outlier, oov",
    )
    after_words: int = Field(
        4, ge=1, description="words after each injection whose representations are compared"
    )
    oov_word: str = Field(
        "<unk>",
        description="the out-of-vocabulary word injected (word-level tokenizers map it to their unknown token)",
    )
    mode: Literal["replace", "insert"] = Field(
        "replace",
        description="replace the walk's word at each position, or insert before it as the published code did (later words shift right, the context keeps n_words)",
    )
    seed: int = Field(0, description="seeds the walks and the injected words")

    @model_validator(mode="after")
    def _check(self):
        bad = [p for p in self.inject_at if not 1 <= p < self.n_words - self.after_words]
        if bad:
            raise ValueError(
                f"inject_at {bad}: positions must lie in 1..{self.n_words - self.after_words - 1}"
                " (after_words words must follow each injection)"
            )
        if self.mode == "insert":
            if len(set(self.inject_at)) != len(self.inject_at):
                raise ValueError(
                    f"inject_at {list(self.inject_at)}: mode insert needs distinct "
                    "positions (one word inserted before each)"
                )
            last = max(self.inject_at) + len(self.inject_at) - 1  # pushed right by the others
            if last + self.after_words >= self.n_words:
                raise ValueError(
                    f"inject_at {list(self.inject_at)} with mode insert: the last injected word "
                    f"lands at {last} and its {self.after_words} after_words would pass the "
                    f"{self.n_words} words; use earlier positions or fewer after_words"
                )
        return self


@stage(
    "icl.inject",
    config=InjectConfig,
    version=1,
    check=model_check(lambda c: c.n_words),
    smoke={"n_contexts": 2, "n_words": 24, "inject_at": (12,), "train": SMOKE_TRAIN},
)
def inject(config: InjectConfig, run: Run) -> dict:
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    graph, walks, rng = draw_contexts(config.graph, config.n_contexts, config.n_words, config.seed)
    in_graph = set(graph.words)
    pools = {
        "random_vocab": [w for w in load_words("common") if w not in in_graph],
        "semantic_outlier": [w for w in load_words("semantic") if w not in in_graph],
    }
    pos = list(config.inject_at)
    after = np.array([[p + 1 + k for k in range(config.after_words)] for p in pos])  # clean
    # where each clean position sits in an injected context (insert: shifted by the insertions)
    moved = np.arange(config.n_words)
    if config.mode == "insert":
        moved = moved + np.searchsorted(sorted(pos), moved, side="right")
    at = [int(moved[p] - 1) if config.mode == "insert" else p for p in pos]  # injected words
    acc = Accumulator(run, config.n_contexts)
    for c in range(acc.done, config.n_contexts):
        clean = walks[c]
        contexts, node_rows = [[graph.words[i] for i in clean]], [clean]
        for kind in config.kinds:
            new = {p: _replacement(kind, graph, clean[p], pools, config, rng) for p in pos}
            words, nodes = injected(contexts[0], clean, new, config.mode)
            contexts.append(words)
            node_rows.append(nodes)
        st = word_states(lm, contexts, layers)  # (L, 1 + K, W, d)
        nodes = np.stack(node_rows)
        means = M.class_means(
            st.reps, torch.from_numpy(np.where(nodes < 0, graph.n_nodes, nodes)), graph.n_nodes + 1
        )[..., :-1, :]
        stats = geometry(means, graph)  # (L, 1 + K)
        out: dict[str, float | np.ndarray] = {}  # per kind: losses (scalars), deltas (L,)
        for i, kind in enumerate(config.kinds, start=1):
            # the injected word against the clean word it replaced (insert: displaced)
            out[f"{kind}/injected_word_loss"] = (st.loss[i, at] - st.loss[0, pos]).mean().item()
            out[f"{kind}/following_words_loss"] = (
                (  # the same words, wherever they now sit
                    st.loss[i, moved[after.ravel()]] - st.loss[0, after.ravel()]
                )
                .mean()
                .item()
            )
            for k in PHI:
                out[f"{kind}/delta_{k}"] = (stats[k][:, i] - stats[k][:, 0]).numpy()  # (L,)
        acc.add(**out)
    metrics: dict[str, dict] = {}  # name -> summarise() over contexts
    doc = {
        "schema": "icl.inject/1",
        "layers": layers,
        "n_contexts": config.n_contexts,
        "inject_at": pos,
        "mode": config.mode,
        "injected_positions": at,
        "after_words": config.after_words,
        "metrics": metrics,
    }
    for k in acc.state["items"]:
        values = acc.stacked(k)
        warn_nonfinite(run, k, values)
        metrics[k] = summarise(values)
    run.save_json("inject.json", doc)
    series: dict[str, np.ndarray] = {
        kind: np.array(_mean1(doc, f"{kind}/delta_{PHI[1]}"))[:, None] for kind in config.kinds
    }
    plot_lines(
        [0],
        series,
        layers,
        run.artifacts_dir / "inject_delta_separation.png",
        "",
        f"Δ {PHI[1]}",
        "geometry change per injection kind",
    )
    return {k: v["mean"] for k, v in metrics.items() if "loss" in k}


def injected(
    words: list[str], nodes: np.ndarray, new: dict[int, tuple[str, int]], mode: str
) -> tuple[list[str], np.ndarray]:
    """The context with ``new[p]`` = (word, node or -1) at each position p: ``replace`` puts it
    in place of word p; ``insert`` (the published code) puts it before word p, shifting the
    rest right and dropping words past the context's length."""
    out_words, out_nodes = list(words), list(nodes)
    for p in sorted(new, reverse=True):  # from the back: earlier indices stay valid
        if mode == "insert":
            out_words.insert(p, new[p][0])
            out_nodes.insert(p, new[p][1])
        else:
            out_words[p], out_nodes[p] = new[p]
    n = len(new) if mode == "insert" else 0
    return out_words[: len(out_words) - n], np.array(out_nodes[: len(out_nodes) - n])


def _replacement(kind, graph, node, pools, config, rng) -> tuple[str, int]:
    """(word, node id or -1 when the word is not a graph node)."""
    if kind == "wrong_cluster":
        other = np.flatnonzero(graph.labels != graph.labels[node])
        if not len(other):
            raise ConfigError(f"wrong_cluster injection needs >= 2 clusters; {graph.kind} has 1")
        n = int(rng.choice(other))
        return graph.words[n], n
    if kind == "oov":
        return config.oov_word, -1
    pool = pools[kind]
    if not pool:
        raise ConfigError(f"{kind} injection: every word of its list is already in the graph")
    return pool[int(rng.integers(len(pool)))], -1


def _mean(doc, key) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in r] for r in doc["metrics"][key]["mean"]])


def _mean1(doc, key) -> list:
    return [np.nan if v is None else v for v in doc["metrics"][key]["mean"]]
