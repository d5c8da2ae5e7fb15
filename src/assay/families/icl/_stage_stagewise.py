"""icl.stagewise: context sensitivity over training (Lee et al.-style stagewise analysis).

    assay run suites/icl/stagewise_smoke.yaml

The upstream ``icl.train`` run keeps state_dicts at ``train.snapshot_steps``; for each snapshot
(the unit of work: checkpointed, skipped on resume) the same ``n_contexts`` walks give every
layer's Φ (``phi_metric`` of the class means at the full length), the word losses and
CSS_t = -cov_c(ℓ_{c,t}, Φ_c). Stages of learning show up as steps where Φ and |CSS| change.
Unlike Lee et al.'s Bayesian influence (a covariance over weight-posterior samples) this is a
covariance over contexts with frozen weights at each checkpoint: correlational, not causal.

A context whose Φ is NaN (an hSBM walk that visits one cluster has no cluster separation) is
left out of that layer's mean Φ and CSS, counted in ``contexts_dropped`` and logged.

Artifacts: ``stagewise.json`` (per snapshot: mean Φ and mean |CSS| per layer, mean loss, the
contexts dropped per layer),
``stagewise.npz`` (CSS as (snapshot, layer, position)), ``stagewise_*.png``.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from assay import Run, stage

from . import _metrics as M
from ._checks import model_check
from ._contexts import Accumulator, draw_contexts, nanmean, words_of
from ._geometry import METRICS, ICLConfig, geometry, open_lm, to_lists
from ._graphs import GraphConfig
from ._lm import word_states
from ._plots import plot_lines
from ._stage_train import SMOKE_TRAIN, TrainConfig


class StagewiseConfig(ICLConfig):
    train: TrainConfig | None = Field(
        TrainConfig(snapshot_steps=(50, 200, 500, 1000, 2000, 3000)),
        description="upstream icl.train run; its snapshot_steps are the stages analysed",
    )
    graph: GraphConfig = Field(GraphConfig(kind="hsbm"), description="the graph walked")
    n_contexts: int = Field(16, ge=2, description="random-walk contexts (CSS needs at least 2)")
    n_words: int = Field(64, ge=2, description="words per context")
    phi_metric: str = Field(
        "cluster_separation_bounded",
        description="geometry metric (Phi) whose context sensitivity is tracked over training",
    )
    css_pairing: M.CssPairing = Field(
        "of_word",
        description="CSS_t pairs position t with the loss of word t (of_word) or, as published, of predicting word t+1 (next_word)",
    )
    seed: int = Field(0, description="seeds the random walks")

    @model_validator(mode="after")
    def _check(self):
        if self.train is None or not self.train.snapshot_steps:
            raise ValueError(
                "stagewise needs a model trained here with train.snapshot_steps "
                "(e.g. [50, 200, 1000]); a loaded HF model has no checkpoints"
            )
        if self.phi_metric not in METRICS:
            raise ValueError(
                f"unknown phi_metric {self.phi_metric!r}; valid: {', '.join(METRICS)}"
            )
        return self


@stage(
    "icl.stagewise",
    config=StagewiseConfig,
    version=2,
    check=model_check(lambda c: c.n_words),
    smoke={"n_contexts": 3, "n_words": 16, "train": {**SMOKE_TRAIN, "snapshot_steps": (5, 20)}},
)
def stagewise(config: StagewiseConfig, run: Run) -> dict:
    lm = open_lm(config, run)
    layers = lm.check_layers(config.layers)
    graph, walks, _ = draw_contexts(config.graph, config.n_contexts, config.n_words, config.seed)
    contexts = words_of(graph, walks)
    assert config.train is not None  # StagewiseConfig._check: stagewise needs train
    steps = sorted(config.train.snapshot_steps)
    acc = Accumulator(run, len(steps), "snapshot")
    for s in steps[acc.done :]:
        path = run.upstream["train"].artifact(f"snapshots/step_{s}.pt")
        lm.model.load_state_dict(torch.load(path, weights_only=True, map_location=lm.device))
        st = word_states(lm, contexts, layers, config.batch_size)  # (L, C, W, d)
        means = M.class_means(st.reps, torch.from_numpy(walks), graph.n_nodes)
        phi = geometry(means, graph)[config.phi_metric]  # (L, C)
        loss = torch.from_numpy(M.css_loss(st.loss, st.loss.shape[1], config.css_pairing))
        sens = M.context_sensitivity(loss, phi.T)  # (L, W), over the contexts with finite Φ
        dropped = phi.shape[1] - M.finite_contexts(phi.T)  # (L,)
        if dropped.any():  # e.g. an hSBM walk that visits one cluster has no separation
            run.log(
                f"WARNING: step {s}: {int(dropped.max())} of {phi.shape[1]} contexts have a "
                f"non-finite {config.phi_metric} and are left out of Φ and CSS"
            )
        acc.add(
            css=sens.numpy(),
            phi=nanmean(phi.numpy(), axis=1),
            dropped=dropped.numpy(),
            loss=st.loss.nanmean().item(),
        )
        run.log(f"snapshot step {s} done")
    css = acc.stacked("css")  # (S, L, W)
    phi = acc.stacked("phi")  # (S, L)
    abs_css = nanmean(np.abs(css), axis=2)  # (S, L)
    doc = {
        "schema": "icl.stagewise/1",
        "steps": steps,
        "layers": layers,
        "phi_metric": config.phi_metric,
        "phi_mean": to_lists(phi),
        "mean_abs_css": to_lists(abs_css),
        "loss": to_lists(acc.stacked("loss")),
        "n_contexts": config.n_contexts,  # contexts_dropped: (S, L)
        "contexts_dropped": acc.stacked("dropped").tolist(),
    }
    run.save_json("stagewise.json", doc)
    with run.write_artifact("stagewise.npz") as tmp:
        np.savez(tmp, steps=np.array(steps), layers=np.array(layers), css=css, phi=phi)
    plot_lines(
        steps,
        {config.phi_metric: phi.T},
        layers,
        run.artifacts_dir / "stagewise_phi.png",
        "training step",
        "Φ",
        "Φ over training",
        logx=True,
    )
    plot_lines(
        steps,
        {"mean |CSS|": abs_css.T},
        layers,
        run.artifacts_dir / "stagewise_css.png",
        "training step",
        "mean |CSS_t|",
        "context sensitivity over training",
        logx=True,
    )
    dropped = acc.stacked("dropped")  # (S, L)
    res = {
        "phi/first": to_lists(phi[0, -1]),
        "phi/last": to_lists(phi[-1, -1]),
        "loss/first": to_lists(acc.stacked("loss")[0]),
        "loss/last": to_lists(acc.stacked("loss")[-1]),
        "contexts_dropped/max": int(dropped.max()),
        **lm.batch.record(),
    }
    # shown next to the number by analyze and the report (engine-contract: "_flags")
    flags = {
        k: f"{int(dropped[s, -1])} of {config.n_contexts} contexts dropped (non-finite Φ)"
        for k, s in (("phi/first", 0), ("phi/last", -1))
        if dropped[s, -1]
    }
    if flags:
        res["_flags"] = flags
    return res
