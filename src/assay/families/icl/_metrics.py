"""Geometry metrics of in-context representations: pure, vectorised, float64.

    from assay.families.icl._metrics import class_means, dirichlet_energy
    means = class_means(hidden, nodes, n_nodes)   # (L, B, T, d), (B, T) -> (L, B, N, d)
    energy = dirichlet_energy(means, graph.edges)  # (L, B)

Every function takes any leading batch dimensions (layers, contexts, left-out variants) and
computes in float64 whatever the input dtype (fp16 activations gave -inf energies in the
published code). A class absent from the window is a NaN row of ``means``: metrics skip it,
and a metric with nothing to average (no present edge, fewer than two clusters) is NaN, never a
silent 0. Names are distinct on purpose: the published code called three formulas "Dirichlet
energy"; here they are ``consecutive_energy``, ``dirichlet_energy`` and ``same_cluster_energy``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

Tensor = torch.Tensor
SEPARATION_EPS = 1e-3  # bounded variants: denominator >= eps * numerator, so values <= 1/eps


def _f64(x) -> Tensor:
    return torch.as_tensor(x).to(torch.float64)


def class_means(reps: Tensor, nodes: Tensor, n_classes: int) -> Tensor:
    """μ_i = mean of reps[t] over positions t with nodes[t] = i; NaN where i never occurs.

    Args:
        reps: (..., T, d) representations; nodes: (T,) or (..., T) class of each position.
    Returns:
        (..., N, d) float64.
    """
    x = _f64(reps)
    t, d = x.shape[-2:]
    idx = torch.as_tensor(nodes).long().expand(x.shape[:-1]).reshape(-1, t)  # (B', T)
    if len(idx) and (idx.min() < 0 or idx.max() >= n_classes):
        raise ValueError(f"class ids must lie in 0..{n_classes - 1}")
    # one scatter-add over all leading dims: row b, class i -> slot b * N + i
    slot = (torch.arange(len(idx)).unsqueeze(1) * n_classes + idx).reshape(-1)  # (B' T,)
    sums = x.new_zeros(len(idx) * n_classes, d).index_add_(0, slot, x.reshape(-1, d))
    counts = torch.bincount(slot, minlength=len(idx) * n_classes).unsqueeze(-1)
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.nan)
    return means.reshape(*x.shape[:-2], n_classes, d)


def _present(means: Tensor) -> Tensor:
    return ~torch.isnan(means).any(-1)  # (..., N)


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """D_ij = ||x_i - x_j||², (..., N, d) -> (..., N, N), float64 (NaN rows -> NaN)."""
    x = _f64(x)
    x = x - torch.nan_to_num(x).mean(-2, keepdim=True)  # centring keeps the Gram form exact
    sq = (x * x).sum(-1)
    return (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * x @ x.transpose(-1, -2)).clamp(min=0)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    mask = mask & ~torch.isnan(values)
    n = mask.sum((-1, -2))
    total = torch.where(mask, values, 0).sum((-1, -2))
    return torch.where(n > 0, total / n.clamp(min=1), torch.nan)


def _pair_mask(pairs: Tensor) -> Tensor:
    """The pairs i < j of ``pairs`` (..., N, N). Absent classes need no mask of their own: their
    rows of ``means`` are NaN, so is every pairwise value computed from them, and
    ``_masked_mean`` skips NaN values."""
    upper = torch.ones(pairs.shape[-2:], dtype=torch.bool).triu(1)
    return pairs.bool() & upper


def consecutive_energy(reps: Tensor) -> Tensor:
    """E_seq = 1/(T-1) Σ_t ||h_{t+1} - h_t||² over consecutive positions, (..., T, d) -> (...).

    (The published code summed instead of averaging, so its value grew with context length.)
    """
    h = _f64(reps)
    return ((h[..., 1:, :] - h[..., :-1, :]) ** 2).sum(-1).mean(-1)


def _sq(means: Tensor, sq: Tensor | None) -> Tensor:
    return pairwise_sq_distances(means) if sq is None else sq


def dirichlet_energy(means: Tensor, edges: Tensor, sq: Tensor | None = None) -> Tensor:
    """Park et al.: E = Σ_{(i,j)∈E'} ||μ_i - μ_j||² / |E'|, E' = graph edges (i < j) with
    both classes present. (..., N, d), (N, N) bool -> (...)."""
    return _masked_mean(_sq(means, sq), _pair_mask(torch.as_tensor(edges)))


def dirichlet_energy_standardised(
    means: Tensor, edges: Tensor, sq: Tensor | None = None
) -> Tensor:
    """E / mean_{i<j present} ||μ_i - μ_j||²: scale-free; 1 = edges no closer than any pair."""
    all_pairs = torch.ones(means.shape[-2], means.shape[-2], dtype=torch.bool)
    sq = _sq(means, sq)
    return dirichlet_energy(means, edges, sq) / _masked_mean(sq, _pair_mask(all_pairs))


def dirichlet_energy_shuffled(means: Tensor, shuffled_edges: Tensor) -> Tensor:
    """Baseline: mean over S node-permuted graphs π of E(μ; π(E)). shuffled_edges: (S, N, N).
    E / E_shuffled < 1 says the representation follows this graph more than a random relabel."""
    d = pairwise_sq_distances(means).unsqueeze(-3)  # (..., 1, N, N)
    masks = _pair_mask(torch.as_tensor(shuffled_edges))  # (..., S, N, N)
    return _masked_mean(d, masks).mean(-1)


def shuffled_edge_sets(edges: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, N, N) bool: ``edges`` under n random node permutations drawn from ``rng``."""
    perms = np.stack([rng.permutation(len(edges)) for _ in range(n)])
    return np.stack([edges[np.ix_(p, p)] for p in perms])


def same_cluster_energy(means: Tensor, labels: Tensor, sq: Tensor | None = None) -> Tensor:
    """E_same = mean_{i<j present, c(i)=c(j)} ||μ_i - μ_j||² (the published LOO "energy")."""
    lab = torch.as_tensor(labels)
    return _masked_mean(_sq(means, sq), _pair_mask(lab[:, None] == lab))


def within_cluster_distance(means: Tensor, labels: Tensor, sq: Tensor | None = None) -> Tensor:
    """d_w = mean_{i<j present, c(i)=c(j)} ||μ_i - μ_j|| (Euclidean, not squared)."""
    lab = torch.as_tensor(labels)
    return _masked_mean(_sq(means, sq).sqrt(), _pair_mask(lab[:, None] == lab))


def cross_cluster_distance(
    means: Tensor, labels: Tensor, pairs: Tensor | None = None, sq: Tensor | None = None
) -> Tensor:
    """d_c = mean ||μ_i - μ_j|| over present pairs in different clusters, or over ``pairs``
    ((P, 2) node pairs, e.g. same-semantic-group pairs of the semantic-conflict graph)."""
    lab = torch.as_tensor(labels)
    n = len(lab)
    if pairs is None:
        mask = lab[:, None] != lab
    else:
        p = torch.as_tensor(pairs).long()
        mask = torch.zeros(n, n, dtype=torch.bool)
        mask[p[:, 0], p[:, 1]] = mask[p[:, 1], p[:, 0]] = True
    return _masked_mean(_sq(means, sq).sqrt(), _pair_mask(mask))


def cross_within_ratio(
    means: Tensor,
    labels: Tensor,
    pairs: Tensor | None = None,
    eps: float = SEPARATION_EPS,
    sq: Tensor | None = None,
) -> Tensor:
    """R = d_c / max(d_w, eps · d_c): cross over within distance, denominator bounded below so
    R <= 1/eps when a cluster collapses to a point (the published LOO "ratio")."""
    dc = cross_cluster_distance(means, labels, pairs, sq)
    dw = within_cluster_distance(means, labels, sq)
    return dc / torch.maximum(dw, (eps * dc).clamp(min=1e-300))


def cluster_separation(
    items: Tensor, labels: Tensor | np.ndarray, eps: float | None = None
) -> Tensor:
    """S = mean_{k<l} ||c_k - c_l||² / max(V̄, eps · that mean), where c_k is the centroid of
    cluster k's present items and V̄ the mean over clusters (with >= 2 items) of the per-dimension
    unbiased variance averaged over dimensions. eps=None: unbounded; eps=1e-3: bounded (<= 1000).
    items: (..., M, d) (tokens or class means; NaN rows skipped), labels (M,) -> (...)."""
    x = _f64(items)
    ok = _present(x).to(torch.float64)  # (..., M)
    oh = torch.nn.functional.one_hot(torch.as_tensor(labels).long()).to(torch.float64)  # (M, K)
    w = oh * ok.unsqueeze(-1)  # (..., M, K)
    n = w.sum(-2)  # (..., K)
    x0 = torch.nan_to_num(x)
    cent = (w.transpose(-1, -2) @ x0) / n.clamp(min=1).unsqueeze(-1)  # (..., K, d)
    # Σ_m w_mk ||x_m - c_k||² = Σ_m w_mk ||x_m||² - n_k ||c_k||² (no (M, K, d) intermediate)
    ss = (w * (x0 * x0).sum(-1).unsqueeze(-1)).sum(-2) - n * (cent * cent).sum(-1)  # (..., K)
    var = ss.clamp(min=0) / x.shape[-1] / (n - 1).clamp(min=1)  # unbiased, mean over dims
    has_var = n >= 2
    v_bar = torch.where(has_var, var, 0).sum(-1) / has_var.sum(-1)
    inter = _masked_mean(pairwise_sq_distances(cent), _pair_mask_counts(n))
    if eps is not None:
        v_bar = torch.maximum(v_bar, (eps * inter).clamp(min=1e-300))
    return inter / v_bar


def _pair_mask_counts(n: Tensor) -> Tensor:
    p = n > 0
    upper = torch.ones(n.shape[-1], n.shape[-1], dtype=torch.bool).triu(1)
    return upper & p.unsqueeze(-1) & p.unsqueeze(-2)


def between_cluster_variance(means: Tensor, labels: Tensor) -> Tensor:
    """Φ_B = 1/K' Σ_k ||m_k - m̄||², m_k = mean of cluster k's present class means, m̄ the mean of
    the K' present m_k (the published LOO-CSS Φ)."""
    x = _f64(means)
    ok = _present(x).to(torch.float64)
    oh = torch.nn.functional.one_hot(torch.as_tensor(labels).long()).to(torch.float64)
    w = oh * ok.unsqueeze(-1)
    n = w.sum(-2)  # (..., K)
    m = (w.transpose(-1, -2) @ torch.nan_to_num(x)) / n.clamp(min=1).unsqueeze(-1)
    has = (n > 0).to(torch.float64)
    gbar = (m * has.unsqueeze(-1)).sum(-2) / has.sum(-1, keepdim=True)
    return (((m - gbar.unsqueeze(-2)) ** 2).sum(-1) * has).sum(-1) / has.sum(-1)


def representation_coherence(items: Tensor, labels: Tensor) -> Tensor:
    """C = Σ_{i<j} w_ij cos(x_i, x_j) / #pairs, w = 1 for same-cluster pairs and -1/2 otherwise
    (the published weights), over present items. (..., M, d), (M,) -> (...)."""
    x = _f64(items)
    unit = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    cos = unit @ unit.transpose(-1, -2)
    lab = torch.as_tensor(labels)
    weight = torch.where(lab[:, None] == lab, 1.0, -0.5).to(torch.float64)
    all_pairs = torch.ones(len(lab), len(lab), dtype=torch.bool)
    return _masked_mean(cos * weight, _pair_mask(all_pairs))


def context_sensitivity(loss: Tensor, phi: Tensor) -> Tensor:
    """CSS_t = -cov_c(ℓ_{c,t}, Φ_c) = -(1/C') Σ_c (ℓ_{c,t} - ℓ̄_t)(Φ_c - Φ̄), the population
    covariance over the C' contexts whose Φ is finite (counted by ``finite_contexts``): one
    context with a NaN Φ (a walk that visits one cluster has no cluster separation) is left out
    of its column rather than voiding it; fewer than two finite contexts give NaN.
    loss: (C, T); phi: (C,) or (C, ...) -> (..., T)."""
    ell = _f64(loss)
    p = _f64(phi).reshape(phi.shape[0], -1)  # (C, K)
    ok = torch.isfinite(p)
    if bool(ok.all()):
        ell = ell - ell.mean(0)
        p = p - p.mean(0)
        css = -(p.T @ ell) / ell.shape[0]  # (K, T)
    else:
        w = ok.T.to(torch.float64).unsqueeze(-1)  # (K, C, 1): the contexts each column uses
        n = w.sum(1)  # (K, 1)
        ell_k = torch.where(w > 0, ell.unsqueeze(0), 0.0)  # (K, C, T)
        p_k = torch.where(ok, p, 0.0).T.unsqueeze(-1)  # (K, C, 1)
        ell_c = ell_k - ell_k.sum(1, keepdim=True) / n.clamp(min=1).unsqueeze(1)
        p_c = p_k - p_k.sum(1, keepdim=True) / n.clamp(min=1).unsqueeze(1)
        css = -(w * p_c * ell_c).sum(1) / n.clamp(min=1)  # (K, T)
        css = torch.where(n >= 2, css, torch.nan)
    return css.reshape(*phi.shape[1:], ell.shape[1])


CssPairing = Literal["of_word", "next_word"]
CSS_PAIRINGS = get_args(CssPairing)


def css_loss(loss: np.ndarray | Tensor, length: int, pairing: str = "of_word") -> np.ndarray:
    """The losses CSS pairs with positions 0..length-1 of a context, (C, T) -> (C, length).

    ``of_word``: position t gets the loss *of* word t, -log p(w_t | w_<t) (the default here).
    ``next_word``: position t gets the loss of predicting word t + 1 from the first t + 1 words,
    as the published code did; the last position predicts nothing inside the context (NaN).
    """
    x = np.asarray(loss, np.float64)
    if pairing == "of_word":
        return x[:, :length]
    if pairing != "next_word":
        raise ValueError(f"unknown CSS pairing {pairing!r}; valid: {', '.join(CSS_PAIRINGS)}")
    out = np.full((x.shape[0], length), np.nan)
    out[:, : length - 1] = x[:, 1:length]
    return out


def finite_contexts(phi: Tensor) -> Tensor:
    """How many contexts (axis 0) of ``phi`` (C, ...) are finite: the C' of each CSS column."""
    return torch.isfinite(_f64(phi)).sum(0)


def pca(means: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA of class means: (N, d) -> coordinates (N, k) (NaN for absent rows) and the explained
    variance ratio of each of the k components, float64 SVD of the centred present rows."""
    x = np.asarray(means, np.float64)
    ok = ~np.isnan(x).any(1)
    coords, ratio = np.full((len(x), k), np.nan), np.full(k, np.nan)
    if ok.sum() < 2:
        return coords, ratio  # nothing to project: NaN, not a silent 0
    xc = x[ok] - x[ok].mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    kk = min(k, len(s))
    coords[ok, :kk] = xc @ vt[:kk].T
    ratio[:kk] = s[:kk] ** 2 / max((s**2).sum(), 1e-300)
    return coords, ratio
