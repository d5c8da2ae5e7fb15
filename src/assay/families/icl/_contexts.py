"""Contexts of an experiment (walks turned into words) and per-context result bookkeeping.

    graph, walks = draw_contexts(config.graph, n_contexts, length, seed)   # one Generator
    words = words_of(graph, walks)                                           # [[str]] * C

``Accumulator`` keeps one array per context and metric in the run checkpoint, so a killed sweep
resumes at the first context it had not finished (the unit of work), and summarises them as
mean, standard error, n and the number of non-finite values (shown, never silently dropped).
"""

from __future__ import annotations

import numpy as np
import torch

from assay import Run

from ._graphs import Graph, GraphConfig, build_graph, random_walks


def draw_contexts(graph_config: GraphConfig, n: int, length: int, seed: int):
    """The graph and (n, length) walks, all from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    graph = build_graph(graph_config, rng)
    return graph, random_walks(graph, n, length, rng), rng


def words_of(graph: Graph, walks: np.ndarray) -> list[list[str]]:
    return [[graph.words[i] for i in row] for row in walks]


class Accumulator:
    """Per-context arrays, checkpointed after every context (tensors and lists only).

    ``total`` units (contexts, snapshots) are counted on the run's progress bar, from where a
    resumed run picks up; the counter closes (and is logged) when the last unit is added.
    """

    def __init__(self, run: Run, total: int, unit: str = "context"):
        self.run = run
        self.state = run.load_checkpoint() or {"done": 0, "items": {}}
        self.bar = run.progress(total, unit, start=self.state["done"])

    @property
    def done(self) -> int:
        return self.state["done"]

    def add(self, **arrays) -> None:
        """Record one finished context's arrays and checkpoint."""
        for k, v in arrays.items():
            self.state["items"].setdefault(k, []).append(torch.as_tensor(np.asarray(v)))
        self.state["done"] += 1
        self.run.save_checkpoint(self.state)
        self.bar.update()
        if self.bar.n == self.bar.total:
            self.bar.close()

    def stacked(self, name: str) -> np.ndarray:
        return torch.stack(self.state["items"][name]).numpy()  # (C, ...)


def summarise(values: np.ndarray) -> dict:
    """Over axis 0 (contexts): mean, standard error, finite n and non-finite count per cell."""
    from ._geometry import to_lists

    x = np.asarray(values, np.float64)
    ok = np.isfinite(x)
    n = ok.sum(0)
    xs = np.where(ok, x, 0.0)
    mean = np.where(n > 0, xs.sum(0) / np.maximum(n, 1), np.nan)
    var = np.where(n > 1, ((xs - mean) ** 2 * ok).sum(0) / np.maximum(n - 1, 1), np.nan)
    return {
        "mean": to_lists(mean),
        "sem": to_lists(np.sqrt(var / np.maximum(n, 1))),
        "n": n.tolist(),
        "n_nonfinite": (~ok).sum(0).tolist(),
    }


def nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the finite values along ``axis``; NaN (no numpy warning) where there are none."""
    x = np.asarray(values, np.float64)
    ok = np.isfinite(x)
    n = ok.sum(axis)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(axis) / np.maximum(n, 1), np.nan)


def warn_nonfinite(run: Run, name: str, values: np.ndarray) -> int:
    bad = int((~np.isfinite(values)).sum())
    if bad:
        run.log(
            f"WARNING: {name}: {bad} of {values.size} values are NaN/inf (left out of means,"
            " counted in n_nonfinite)"
        )
    return bad
