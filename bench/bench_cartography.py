"""Cartography benchmarks, each against a baseline measured in the same run.

    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_cartography.py

(a) recording overhead: the bag-of-words model on Rotten Tomatoes (10,328 training snippets),
    trained with and without dynamics recording, interleaved, best of 3 each (target <= 5%);
(b) metrics for 100,000 examples x 10 epochs: the vectorised ``compute_metrics`` against the
    reference's per-example Python loop (train_dy_filtering.py), identical results checked.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from assay import configure_torch
from assay.families.cartography._data import DataConfig, load_dataset
from assay.families.cartography._dynamics import DynamicsRecorder
from assay.families.cartography._metrics import compute_metrics, reference_metrics_loop
from assay.families.cartography._models import ModelConfig, build_classifier
from assay.families.cartography._train import ClassificationTask, TrainOptions, train

EPOCHS, REPEATS = 3, 3


def recording_overhead() -> None:
    ds = load_dataset(DataConfig())
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(REPEATS):
        for record in (False, True):
            model, enc = build_classifier(ModelConfig(), ds.train.texts, ds.n_labels, seed=0)
            task = ClassificationTask(model, enc, enc.rows(ds.train.texts), ds.train.labels)
            rec = (
                DynamicsRecorder(ds.train.ids, EPOCHS, ds.n_labels, "multiclass")
                if record
                else None
            )
            opts = TrainOptions(EPOCHS, 32, 5e-3, 0.0, 0, "cpu", "train_pass" if record else None)
            n = len(task)
            t0 = time.perf_counter()
            train(task, opts, np.zeros(n), np.ones(n), rec)
            if rec is not None:
                rec.finish()
            times[record].append(time.perf_counter() - t0)
    off, on = min(times[False]), min(times[True])
    print(
        f"(a) training {len(ds.train)} examples x {EPOCHS} epochs (best of {REPEATS}): "
        f"without recording {off:.2f} s, with {on:.2f} s -> overhead {100 * (on / off - 1):+.1f}% "
        "(target <= 5%)"
    )


def metrics_speed() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((10, 100_000)).astype(np.float32)
    c = rng.random((10, 100_000)) < p
    t0 = time.perf_counter()
    ours = compute_metrics(p, c)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_metrics_loop(p, c)
    slow = time.perf_counter() - t0
    assert np.allclose(ours["confidence"], ref["confidence"])
    assert np.allclose(ours["variability"], ref["variability"], atol=1e-6)
    print(
        f"(b) metrics, 100,000 examples x 10 epochs: vectorised {fast:.3f} s (target <= 1 s), "
        f"per-example Python loop {slow:.2f} s -> {slow / fast:.0f}x"
    )


if __name__ == "__main__":
    configure_torch()
    torch.manual_seed(0)
    recording_overhead()
    metrics_speed()
