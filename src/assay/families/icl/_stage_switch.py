"""icl.switch and icl.superposition: which structure the geometry follows when it changes.

    assay run suites/icl/switch_smoke.yaml

icl.switch: G1, then G2 = the same structure over the same words with the nodes relabelled at
random. A context is n1 words walked on G1 followed by n2 words walked on G2. At each n2 the class
means of the last ``window_words`` words give the Dirichlet energy under both graphs;
``switch_ratio`` = E_G1 / E_G2 > 1 once the representation follows G2. One forward per context
reads every n2 (causal prefixes).

icl.superposition: the dual-interpretation graph (a torus grid read by rows or by columns);
walks move freely until ``disambiguate_at``, then only along rows. Separation is measured with
*label-aware* centroids: row clusters by row labels and column clusters by column labels (the
published analysis built both centroids from the same labels, so they were identical and the
"collapse" it measured was 0 by construction). collapse = (Φ_row - Φ_col) / (Φ_row + Φ_col).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from assay import Run, stage

from . import _metrics as M
from ._checks import model_check
from ._contexts import Accumulator, summarise, warn_nonfinite
from ._geometry import ICLConfig, open_lm
from ._graphs import GraphConfig, build_graph, random_walks, walks_dual
from ._lm import word_states
from ._plots import plot_curves
from ._stage_train import SMOKE_TRAIN


class SwitchConfig(ICLConfig):
    graph: GraphConfig = Field(
        GraphConfig(kind="grid"),
        description="the first graph walked; the walk then switches graphs",
    )
    n_contexts: int = Field(8, ge=1, description="random-walk contexts")
    n1_words: int = Field(64, ge=2, description="words walked on the first graph")
    n2_lengths: tuple[int, ...] = Field(
        (0, 4, 8, 16, 32, 64),
        description="words walked on the second graph at which the geometry is measured",
    )
    window_words: int = Field(32, ge=2, description="class means over the last this many words")
    seed: int = Field(0, description="seeds the walks")


@stage(
    "icl.switch",
    config=SwitchConfig,
    version=1,
    check=model_check(lambda c: c.n1_words + max(c.n2_lengths)),
    smoke={
        "n_contexts": 2,
        "n1_words": 24,
        "n2_lengths": (0, 8, 24),
        "window_words": 8,
        "train": SMOKE_TRAIN,
    },
)
def switch(config: SwitchConfig, run: Run) -> dict:
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    rng = np.random.default_rng(config.seed)
    g1 = build_graph(config.graph, rng)
    g2 = g1.relabelled(rng.permutation(g1.n_nodes))
    n2max = max(config.n2_lengths)
    w1 = random_walks(g1, config.n_contexts, config.n1_words, rng)
    w2 = random_walks(g2, config.n_contexts, max(n2max, 1), rng)[:, :n2max]
    walks = np.concatenate([w1, w2], 1)
    acc = Accumulator(run, config.n_contexts)
    for c in range(acc.done, config.n_contexts):
        st = word_states(lm, [[g1.words[i] for i in walks[c]]], layers)
        rows: dict[str, list] = {}
        for n2 in config.n2_lengths:
            end = config.n1_words + n2
            a = max(0, end - config.window_words)
            means = M.class_means(
                st.reps[:, 0, a:end], torch.from_numpy(walks[c, a:end]), g1.n_nodes
            )
            e1 = M.dirichlet_energy_standardised(means, torch.from_numpy(g1.edges))
            e2 = M.dirichlet_energy_standardised(means, torch.from_numpy(g2.edges))
            for k, v in (("energy_g1", e1), ("energy_g2", e2), ("switch_ratio", e1 / e2)):
                rows.setdefault(k, []).append(v.numpy())
        acc.add(**{k: np.stack(v, 1) for k, v in rows.items()})  # (L, n_lengths)
    metrics: dict[str, dict] = {}  # name -> summarise() over contexts
    doc = {
        "schema": "icl.switch/1",
        "layers": layers,
        "n2_lengths": list(config.n2_lengths),
        "n1_words": config.n1_words,
        "n_contexts": config.n_contexts,
        "metrics": metrics,
    }
    for k in ("energy_g1", "energy_g2", "switch_ratio"):
        values = acc.stacked(k)
        warn_nonfinite(run, k, values)
        metrics[k] = summarise(values)
    run.save_json("switch.json", doc)
    plot_curves(
        doc,
        run.artifacts_dir,
        ["switch_ratio", "energy_g1", "energy_g2"],
        x_key="n2_lengths",
        xlabel="words after the switch (n2)",
    )
    ratio = metrics["switch_ratio"]["mean"][-1]
    return {
        "switch_ratio/n2_first": ratio[0],
        "switch_ratio/n2_last": ratio[-1],
        "layer": layers[-1],
    }


class SuperpositionConfig(ICLConfig):
    graph: GraphConfig = Field(
        GraphConfig(kind="dual"),
        description="the graph walked (dual: two structures over one word set)",
    )
    n_contexts: int = Field(8, ge=1, description="random-walk contexts")
    n_words: int = Field(128, ge=4, description="words per context")
    disambiguate_at: int = Field(
        64, ge=1, description="word position from which the walk follows one structure only"
    )
    ends: tuple[int, ...] = Field(
        (16, 32, 48, 64, 80, 96, 112, 128),
        description="window ends (words) at which the geometry is measured",
    )
    window_words: int = Field(32, ge=2, description="class means over the last this many words")
    seed: int = Field(0, description="seeds the walks")

    @model_validator(mode="after")
    def _check(self):
        if self.graph.kind != "dual":
            raise ValueError(f"superposition needs graph.kind 'dual', got {self.graph.kind!r}")
        if not self.disambiguate_at < self.n_words or max(self.ends) > self.n_words:
            raise ValueError(
                f"need disambiguate_at ({self.disambiguate_at}) < n_words ({self.n_words}) "
                f"and ends <= n_words (got max {max(self.ends)})"
            )
        return self


@stage(
    "icl.superposition",
    config=SuperpositionConfig,
    version=1,
    check=model_check(lambda c: c.n_words),
    smoke={
        "n_contexts": 2,
        "n_words": 32,
        "disambiguate_at": 16,
        "ends": (8, 16, 24, 32),
        "window_words": 8,
        "train": SMOKE_TRAIN,
    },
)
def superposition(config: SuperpositionConfig, run: Run) -> dict:
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    rng = np.random.default_rng(config.seed)
    graph = build_graph(config.graph, rng)
    row, col = graph.levels["row"], graph.levels["col"]
    walks = walks_dual(graph, config.n_contexts, config.n_words, config.disambiguate_at, rng)
    acc = Accumulator(run, config.n_contexts)
    for c in range(acc.done, config.n_contexts):
        st = word_states(lm, [[graph.words[i] for i in walks[c]]], layers)
        rows: dict[str, list] = {}
        for end in config.ends:
            a = max(0, end - config.window_words)
            means = M.class_means(
                st.reps[:, 0, a:end], torch.from_numpy(walks[c, a:end]), graph.n_nodes
            )
            p_row = M.cluster_separation(means, row, M.SEPARATION_EPS)  # row-label centroids
            p_col = M.cluster_separation(means, col, M.SEPARATION_EPS)  # column-label centroids
            for k, v in (
                ("separation_row", p_row),
                ("separation_col", p_col),
                ("collapse", (p_row - p_col) / (p_row + p_col)),
            ):
                rows.setdefault(k, []).append(v.numpy())
        acc.add(**{k: np.stack(v, 1) for k, v in rows.items()})
    metrics: dict[str, dict] = {}  # name -> summarise() over contexts
    doc = {
        "schema": "icl.superposition/1",
        "layers": layers,
        "ends": list(config.ends),
        "disambiguate_at": config.disambiguate_at,
        "n_contexts": config.n_contexts,
        "metrics": metrics,
    }
    for k in ("separation_row", "separation_col", "collapse"):
        values = acc.stacked(k)
        warn_nonfinite(run, k, values)
        metrics[k] = summarise(values)
    run.save_json("superposition.json", doc)
    plot_curves(
        doc,
        run.artifacts_dir,
        ["collapse", "separation_row", "separation_col"],
        x_key="ends",
        xlabel="window end (words)",
    )
    coll = metrics["collapse"]["mean"][-1]
    before = [v for e, v in zip(config.ends, coll, strict=True) if e <= config.disambiguate_at]
    after = [v for e, v in zip(config.ends, coll, strict=True) if e > config.disambiguate_at]
    return {
        "collapse/before": _nanmean(before),
        "collapse/after": _nanmean(after),
        "layer": layers[-1],
    }


def _nanmean(v) -> float | None:
    x = np.array([np.nan if u is None else u for u in v], float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else None
