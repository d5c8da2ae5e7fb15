"""`sampling: origin` reproduces a published log-volume to every printed digit.

Published: rfangit/minima-volume-project, `experiments/swiss roll/example - low data/
model_32x5_1000/model_6_data_16/data_0/loss_0.05/results.json`, `log_exp_r_n_values[0]` (the
k = 0 model on landscape 0): 9495.498923527373. Every crossing was already identical; the last
4e-4 was the direction norm, which the published code takes in float32.
"""

from __future__ import annotations

import numpy as np
import torch

import assay
from assay.families.volume._stage_perturb import direction_norms
from assay.families.volume.stages import PerturbConfig, TrainConfig, VolumeConfig

PUBLISHED_K0 = 9495.498923527373


def test_origin_norms_are_the_published_float32_norms_native_float64():
    raw = torch.randn(3, 4353, generator=torch.Generator().manual_seed(0))
    published = [float(torch.norm(torch.cat([r[:100], r[100:]]), p=2).item()) for r in raw]
    assert direction_norms(raw, origin=True).tolist() == published
    native = direction_norms(raw, origin=False)
    assert native.dtype == np.float64 and native.tolist() != published
    np.testing.assert_allclose(native, published, rtol=1e-6)


def test_origin_gives_the_published_log_volume_of_model_6_data_16(tmp_path):
    torch.set_num_threads(1)
    train = TrainConfig(
        sampling="origin",
        dataset="swiss_roll",
        base_size=20,
        pool_size=780,
        extra_points=1000,
        test_size=4000,
        epochs=500,
        lr=1e-3,
        weight_decay=0.01,
        seed=6,
        data_seed=16,
        num_threads=1,
    )
    # levels (0, 780): the k = 0 model alone needs only 780 = max(levels) for the published split
    perturb = PerturbConfig(
        train=train,
        levels=(0, 780),
        landscapes=(0,),
        n_directions=1000,
        perturbation_seed=1,
        num_threads=1,
    )
    rec = assay.run_config(VolumeConfig(perturb=perturb, threshold=0.05), root=tmp_path)
    assert rec.status is assay.RunStatus.DONE, rec.error
    assert repr(rec.results["log_volume/L0/k0"]) == repr(PUBLISHED_K0)  # every printed digit
