"""icl.geometry: the Park et al. reproduction, with CSS per layer, length and hierarchy level.

    assay run suites/icl/smoke.yaml      # icl.train, then this on a 4x4 grid

For each of ``n_contexts`` walks of max(context_lengths) words, ONE forward gives every layer
at every length (causal attention: the states of the first L words do not depend on what
follows). At each length L the class means of the nodes over the window of the last
``window_words`` words before L (all of them by default) give every metric of ``_geometry``,
per layer; the Dirichlet energy is also compared with a shuffled-graph baseline
(E / E_shuffled < 1: the representation follows *this* graph). CSS_t = -cov_c(ℓ_{c,t}, Φ_c)
relates each word's loss to each layer's Φ across contexts (Φ in ``css_metrics`` and the
cluster separation of every hierarchy level of the graph).

Artifacts: ``curves.json`` (metric -> mean/sem/n/n_nonfinite as [layer][length]), ``css.npz``
(CSS as (length, layer, position)), ``pca.npz`` (class-mean PCA at ``pca_lengths``) and plots.
Results: the first- and last-length values of the key metrics at the last layer.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from assay import Run, stage

from . import _metrics as M
from ._checks import model_check
from ._contexts import Accumulator, draw_contexts, nanmean, summarise, warn_nonfinite, words_of
from ._geometry import ICLConfig, geometry, open_lm
from ._graphs import GraphConfig
from ._lm import word_states
from ._plots import plot_css, plot_curves, plot_pca
from ._stage_train import SMOKE_TRAIN

KEY_METRICS = (
    "dirichlet_energy_standardised",
    "dirichlet_energy_vs_shuffled",
    "cluster_separation_bounded",
    "cross_within_ratio",
)


class GeometryConfig(ICLConfig):
    graph: GraphConfig = Field(
        GraphConfig(kind="grid"),
        description="the graph walked (Park et al.: a 4 x 4 grid of ordinary words)",
    )
    n_contexts: int = Field(
        16,
        ge=2,
        description="random-walk contexts; CSS is a covariance over contexts, so at least 2",
    )
    context_lengths: tuple[int, ...] = Field(
        (4, 8, 16, 32, 64, 128),
        description="context lengths (words) at which the geometry is measured",
    )
    window_words: int | None = Field(
        None,
        ge=1,
        description="class means over the last this many words; null: over the whole prefix",
    )
    n_shuffles: int = Field(8, ge=1, description="node-permuted graphs for the energy baseline")
    css_metrics: tuple[str, ...] = Field(
        ("between_cluster_variance", "dirichlet_energy"),
        description="geometry metrics whose context sensitivity (CSS) is computed",
    )
    pca_layer: int | None = Field(None, description="layer of the PCA plots; null: the last layer")
    pca_lengths: tuple[int, ...] | None = Field(
        None, description="context lengths of the PCA plots; null: first, middle and last length"
    )
    css_pairing: M.CssPairing = Field(
        "of_word",
        description="CSS_t pairs position t with the loss of word t (of_word) or, as published, of predicting word t+1 (next_word)",
    )
    seed: int = Field(0, description="seeds the random walks and shuffles")

    @model_validator(mode="after")
    def _check(self):
        from ._geometry import METRICS

        if (
            sorted(set(self.context_lengths)) != list(self.context_lengths)
            or min(self.context_lengths) < 2
        ):
            raise ValueError(f"context_lengths must increase and be >= 2: {self.context_lengths}")
        bad = [m for m in self.css_metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown css_metrics {bad}; valid: {', '.join(METRICS)}")
        if self.pca_lengths and set(self.pca_lengths) - set(self.context_lengths):
            raise ValueError("pca_lengths must be among context_lengths")
        return self

    @property
    def pca_at(self) -> tuple[int, ...]:
        ls = self.context_lengths
        return self.pca_lengths or tuple(dict.fromkeys((ls[0], ls[len(ls) // 2], ls[-1])))


@stage(
    "icl.geometry",
    config=GeometryConfig,
    version=2,
    check=model_check(
        lambda c: c.context_lengths[-1], lambda c: () if c.pca_layer is None else (c.pca_layer,)
    ),
    smoke={"n_contexts": 3, "context_lengths": (4, 16, 32), "n_shuffles": 2, "train": SMOKE_TRAIN},
)
def geometry_stage(config: GeometryConfig, run: Run) -> dict:
    """Energy / separation vs context length per layer; see the module docstring."""
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    pca_layer = lm.check_layers(
        [config.pca_layer if config.pca_layer is not None else lm.n_layers]
    )[0]
    graph, walks, rng = draw_contexts(
        config.graph, config.n_contexts, config.context_lengths[-1], config.seed
    )
    shuffled = torch.from_numpy(M.shuffled_edge_sets(graph.edges, config.n_shuffles, rng))
    contexts = words_of(graph, walks)
    acc = Accumulator(run, config.n_contexts)
    for c in range(acc.done, config.n_contexts):  # unit of work: one context
        st = word_states(lm, [contexts[c]], layers)  # (L, 1, T, d)
        lengths = acc.bar.inner(len(config.context_lengths), "length")
        acc.add(**_one_context(config, graph, walks[c], st, shuffled, layers, pca_layer, lengths))
        run.log(f"context {c + 1}/{config.n_contexts} done")
    return _finish(config, run, graph, acc, layers, pca_layer, lm)


def _one_context(config, graph, nodes, st, shuffled, layers, pca_layer, lengths=None) -> dict:
    """Every metric at every (layer, length) of one context: arrays (L, n_lengths).

    ``lengths``: the run's progress counter of context lengths, inside the context's unit."""
    out: dict[str, list] = {}
    pca_means = []
    for length in config.context_lengths:
        a = 0 if config.window_words is None else max(0, length - config.window_words)
        reps = st.reps[:, :, a:length]  # (L, 1, w, d)
        means = M.class_means(reps, torch.from_numpy(nodes[a:length]), graph.n_nodes)
        stats = geometry(means, graph)
        stats["dirichlet_energy_shuffled"] = M.dirichlet_energy_shuffled(means, shuffled)
        stats["dirichlet_energy_vs_shuffled"] = (
            stats["dirichlet_energy"] / stats["dirichlet_energy_shuffled"]
        )
        stats["consecutive_energy"] = M.consecutive_energy(reps)
        for name, labels in graph.levels.items():
            if name != "cluster":
                stats[f"separation/{name}"] = M.cluster_separation(means, labels, M.SEPARATION_EPS)
        stats["loss"] = st.loss[0, a:length].nanmean().expand(len(layers))  # NaN-safe
        for k, v in stats.items():
            out.setdefault(k, []).append(v.reshape(len(layers)).numpy())
        if length in config.pca_at:
            pca_means.append(means[layers.index(pca_layer), 0].numpy())
        if lengths is not None:
            lengths.update()
    arrays = {k: np.stack(v, 1) for k, v in out.items()}  # (L, n_lengths)
    return {**arrays, "word_loss": st.loss[0].numpy(), "pca_means": np.stack(pca_means)}


def _finish(config, run, graph, acc, layers, pca_layer, lm) -> dict:
    names = [k for k in acc.state["items"] if k not in ("word_loss", "pca_means")]
    curves = {}
    for k in names:
        values = acc.stacked(k)  # (C, L, n_lengths)
        warn_nonfinite(run, k, values)
        curves[k] = summarise(values)
    word_loss = acc.stacked("word_loss")  # (C, T)
    css, css_dropped = {}, {}
    css_names = [*config.css_metrics, *(n for n in names if n.startswith("separation/"))]
    for k in css_names:
        phi = acc.stacked(k)  # (C, L, n_lengths)
        grid = np.full((len(config.context_lengths), len(layers), word_loss.shape[1]), np.nan)
        for i, length in enumerate(config.context_lengths):
            grid[i, :, :length] = M.context_sensitivity(
                torch.from_numpy(M.css_loss(word_loss, length, config.css_pairing)),
                torch.from_numpy(phi[:, :, i]),
            ).numpy()
        css[k] = grid
        # contexts left out of each (layer, length) cell because their Φ is NaN/inf
        dropped = config.n_contexts - M.finite_contexts(torch.from_numpy(phi)).numpy()  # (L, n)
        css_dropped[k] = dropped.tolist()
        if dropped.any():
            run.log(
                f"WARNING: CSS of {k}: {int(dropped.max())} of {config.n_contexts} contexts "
                f"have a non-finite Φ in some (layer, length) cell and are left out of it "
                f"(per cell: css_contexts_dropped in curves.json)"
            )
    with run.write_artifact("css.npz") as tmp:
        # numpy's stub puts `allow_pickle: bool` beside `**kwds: ArrayLike`, so mypy matches any
        # str-keyed dict against that bool; these keys are metric names, never allow_pickle
        arrays = {
            "layers": np.array(layers),
            "context_lengths": np.array(config.context_lengths),
            **{k.replace("/", "__"): v for k, v in css.items()},
        }
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
    # (n_pca, N, d): each class mean averaged over the contexts where the class occurs
    means = nanmean(acc.stacked("pca_means"), axis=0)
    pcs = [M.pca(m) for m in means]
    with run.write_artifact("pca.npz") as tmp:
        np.savez(
            tmp,
            lengths=np.array(config.pca_at),
            layer=pca_layer,
            coords=np.stack([p[0] for p in pcs]),
            explained=np.stack([p[1] for p in pcs]),
            labels=graph.labels,
            words=np.array(graph.words),
        )
    doc = {
        "schema": "icl.geometry/1",
        "model": _model_info(config, lm),
        "graph": {
            "kind": graph.kind,
            "n_nodes": graph.n_nodes,
            "words": list(graph.words),
            "bipartite": graph.is_bipartite,
            **graph.info,
        },
        "layers": layers,
        "context_lengths": list(config.context_lengths),
        "n_contexts": config.n_contexts,
        "metrics": curves,
        "css_contexts_dropped": css_dropped,  # metric -> [layer][length]
    }
    run.save_json("curves.json", doc)
    plot_curves(doc, run.artifacts_dir, [*KEY_METRICS, "consecutive_energy", "loss"])
    plot_pca(
        np.stack([p[0] for p in pcs]),
        config.pca_at,
        graph,
        pca_layer,
        run.artifacts_dir / "pca_class_means.png",
    )
    plot_css(css, layers, config.context_lengths, run.artifacts_dir)
    if graph.is_bipartite:
        run.log(
            "WARNING: the graph is bipartite: next-token representations of adjacent nodes "
            "encode different successor sets and may drift apart (see README)"
        )
    last = len(layers) - 1
    res = {"layer": layers[last], "n_contexts": config.n_contexts}
    flags = {}
    for k in KEY_METRICS:
        mean, bad = curves[k]["mean"][last], curves[k]["n_nonfinite"][last]
        res[f"{k}/first"], res[f"{k}/last"] = mean[0], mean[-1]
        for name, i in (("first", 0), ("last", -1)):
            if bad[i]:  # the mean is over the finite contexts only: say so next to it
                flags[f"{k}/{name}"] = f"{bad[i]} of {config.n_contexts} contexts non-finite"
    res["loss/last"] = curves["loss"]["mean"][last][-1]
    res["pca_explained_2d/last"] = float(np.nansum(pcs[-1][1]))
    res["css_contexts_dropped"] = int(sum(np.sum(v) for v in css_dropped.values()))
    if flags:
        res["_flags"] = flags  # engine-contract: shown next to the number by analyze
    return res


def _model_info(config: ICLConfig, lm) -> dict:
    src = (
        {"path": config.model.path, "sha256": config.model.sha256}
        if config.model
        else {"trained_here": True}
    )
    return {
        **src,
        "n_layers": lm.n_layers,
        "add_bos": lm.add_bos,
        "architecture": type(lm.model).__name__,
        "dtype": str(config.dtype),
    }
