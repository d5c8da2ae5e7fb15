"""Every metric against a value computed by hand on small fixed tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from assay.families.icl import _metrics as M

# four class means in 2-d: nodes 0, 1 in cluster 0; nodes 2, 3 in cluster 1
MEANS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 4.0]])
LABELS = torch.tensor([0, 0, 1, 1])
# a path graph 0-1-2-3
PATH = torch.zeros(4, 4, dtype=torch.bool)
for a, b in ((0, 1), (1, 2), (2, 3)):
    PATH[a, b] = PATH[b, a] = True
# squared distances: d01=1, d02=9, d03=16, d12=10, d13=17, d23=1


def test_class_means_average_positions_and_mark_absent_nan():
    reps = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])  # (T=3, d=2)
    means = M.class_means(reps, torch.tensor([0, 0, 2]), 3)
    assert means.dtype == torch.float64
    assert means[0].tolist() == [2.0, 1.0] and means[2].tolist() == [5.0, 5.0]
    assert torch.isnan(means[1]).all()  # class 1 never occurs
    batched = M.class_means(reps.expand(4, 2, 3, 2), torch.tensor([0, 0, 2]), 3)
    assert batched.shape == (4, 2, 3, 2)


def test_consecutive_energy_is_the_mean_squared_step():
    h = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])  # steps of squared length 25, 1
    assert M.consecutive_energy(h).item() == pytest.approx(13.0)


def test_dirichlet_energy_over_present_edges():
    assert M.dirichlet_energy(MEANS, PATH).item() == pytest.approx((1 + 10 + 1) / 3)
    absent = MEANS.clone().double()
    absent[3] = float("nan")  # edge 2-3 no longer counts
    assert M.dirichlet_energy(absent, PATH).item() == pytest.approx((1 + 10) / 2)
    nothing = torch.full_like(MEANS, float("nan"), dtype=torch.float64)
    assert math.isnan(M.dirichlet_energy(nothing, PATH).item())  # NaN, never a silent 0


def test_dirichlet_energy_standardised_and_shuffled_baseline():
    mean_pair = (1 + 9 + 16 + 10 + 17 + 1) / 6
    assert M.dirichlet_energy_standardised(MEANS, PATH).item() == pytest.approx(4 / mean_pair)
    swapped = PATH[[0, 2, 1, 3]][:, [0, 2, 1, 3]]  # path 0-2-1-3: d02 + d12 + d13 = 36
    both = torch.stack([PATH, swapped])
    assert M.dirichlet_energy_shuffled(MEANS, both).item() == pytest.approx((4 + 12) / 2)
    sets = M.shuffled_edge_sets(PATH.numpy(), 5, np.random.default_rng(0))
    assert sets.shape == (5, 4, 4) and (sets.sum((1, 2)) == 6).all()  # 3 edges each


def test_same_cluster_energy_and_distances():
    assert M.same_cluster_energy(MEANS, LABELS).item() == pytest.approx((1 + 1) / 2)
    assert M.within_cluster_distance(MEANS, LABELS).item() == pytest.approx(1.0)
    cross = (3 + 4 + math.sqrt(10) + math.sqrt(17)) / 4
    assert M.cross_cluster_distance(MEANS, LABELS).item() == pytest.approx(cross)
    pairs = torch.tensor([[0, 2]])  # e.g. semantic pairs: only (0, 2)
    assert M.cross_cluster_distance(MEANS, LABELS, pairs).item() == pytest.approx(3.0)
    assert M.cross_within_ratio(MEANS, LABELS).item() == pytest.approx(cross / 1.0)


def test_cross_within_ratio_denominator_is_bounded():
    collapsed = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    assert M.cross_within_ratio(collapsed, LABELS).item() == pytest.approx(1 / M.SEPARATION_EPS)


def test_cluster_separation_bounded_and_unbounded():
    # centroids (0.5, 0) and (0, 3.5): squared distance 0.25 + 12.25 = 12.5; per-dimension
    # unbiased variances: cluster 0 (0.5, 0) -> 0.25, cluster 1 (0, 0.5) -> 0.25
    assert M.cluster_separation(MEANS, LABELS).item() == pytest.approx(12.5 / 0.25)
    collapsed = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    assert math.isinf(M.cluster_separation(collapsed, LABELS).item())
    bounded = M.cluster_separation(collapsed, LABELS, eps=M.SEPARATION_EPS).item()
    assert bounded == pytest.approx(1 / M.SEPARATION_EPS)


def test_between_cluster_variance():
    # cluster means (0.5, 0), (0, 3.5); grand mean (0.25, 1.75): each 0.0625 + 3.0625
    assert M.between_cluster_variance(MEANS, LABELS).item() == pytest.approx(3.125)


def test_representation_coherence_weights():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # cos: (0,1) 1, (0,2) 0, (1,2) 0
    lab = torch.tensor([0, 0, 1])
    assert M.representation_coherence(x, lab).item() == pytest.approx(1 / 3)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert M.representation_coherence(opposite, torch.tensor([0, 1])).item() == pytest.approx(0.5)


def test_context_sensitivity_is_minus_the_population_covariance():
    loss = torch.tensor([[1.0, 2.0], [3.0, 2.0]])  # (C=2, T=2)
    phi = torch.tensor([0.0, 2.0])
    # t=0: cov = ((1-2)(0-1) + (3-2)(2-1)) / 2 = 1 -> CSS -1; t=1: constant loss -> 0
    assert M.context_sensitivity(loss, phi).tolist() == [-1.0, 0.0]
    per_layer = M.context_sensitivity(loss, torch.stack([phi, -phi], 1))  # (C, L=2)
    assert per_layer.tolist() == [[-1.0, 0.0], [1.0, 0.0]]


def test_pca_of_points_on_a_line():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [np.nan, np.nan]])
    coords, ratio = M.pca(x)
    assert ratio[0] == pytest.approx(1.0) and abs(ratio[1]) < 1e-12
    assert np.allclose(np.abs(coords[:3, 0]), [math.sqrt(2), 0, math.sqrt(2)])
    assert np.isnan(coords[3]).all()


def test_metrics_compute_in_float64_from_half_precision():
    big = torch.full((4, 8), 300.0, dtype=torch.float16)  # squares overflow fp16 (max 65504)
    big[1] = -300.0
    e = M.dirichlet_energy(big, PATH)
    assert e.dtype == torch.float64 and math.isfinite(e.item())
