"""Radii, log-volumes, cutoffs and ranking statistics: pure numpy on cached curves.

Formulas (n = number of perturbed parameters, M = number of counted directions):

    radius       r_j = c_{k*} * ||d_j||, k* the first grid point whose loss exceeds tau
                 (r_j = 0 if the centre already exceeds tau; directions that never cross are
                 dropped, i.e. NaN here, and not counted in M)
    log-volume   log V = logsumexp_j(n * ln r_j) - ln M      (-inf if every r_j = 0)
    cutoff       the first landscape level L at which the model's *unperturbed* mean loss over
                 base ++ pool[:L] exceeds tau: its volume there and beyond is 0.

``n * ln r`` is huge (n is thousands), so volumes only make sense in log space; log V is
dominated by the largest radii, which is why the top radii and their seeds are reported.
"""

from __future__ import annotations

import math

import numpy as np


def first_crossing(curves: np.ndarray, limit: float, kind: str = "loss") -> np.ndarray:
    """(M, C) curves -> (M,) index of the first grid point beyond ``limit``, -1 if none.

    ``kind="loss"``: beyond means loss > limit; ``"accuracy"``: accuracy < limit. NaN entries
    (not evaluated) never count as crossed.
    """
    with np.errstate(invalid="ignore"):
        crossed = curves > limit if kind == "loss" else curves < limit
    first = crossed.argmax(axis=1)
    return np.where(crossed.any(axis=1), first, -1)


def radii_from_curves(curves, coeffs, norms, limit: float, kind: str = "loss") -> np.ndarray:
    """(M, C) curves, (C,) coefficients, (M,) direction norms -> (M,) radii, NaN = dropped."""
    first = first_crossing(curves, limit, kind)
    coeff = np.asarray(coeffs, dtype=np.float64)[np.maximum(first, 0)]
    return np.where(first >= 0, coeff * np.asarray(norms, dtype=np.float64), np.nan)


def log_volume(radii: np.ndarray, n_params: int) -> float:
    """log V = logsumexp(n ln r_j) - ln M over counted (non-NaN) radii; NaN if none counted."""
    r = np.asarray(radii, dtype=np.float64)
    r = r[~np.isnan(r)]
    if len(r) == 0:
        return math.nan
    pos = r[r > 0]
    if len(pos) == 0:
        return -math.inf
    logs = n_params * np.log(pos)  # (M+,)
    top = logs.max()
    return float(top + np.log(np.exp(logs - top).sum()) - np.log(len(r)))


def radius_stats(radii: np.ndarray, seeds: np.ndarray, top_k: int) -> dict:
    """Counts, mean/median/max radius and the ``top_k`` largest radii with their seeds."""
    r = np.asarray(radii, dtype=np.float64)
    ok = ~np.isnan(r)
    counted = r[ok]
    order = np.argsort(-np.where(ok, r, -np.inf))[: min(top_k, int(ok.sum()))]
    return {
        "n_counted": int(ok.sum()),
        "n_dropped": int((~ok).sum()),
        "n_zero": int((counted == 0).sum()),
        "mean_radius": float(counted.mean()) if len(counted) else math.nan,
        "median_radius": float(np.median(counted)) if len(counted) else math.nan,
        "max_radius": float(counted.max()) if len(counted) else math.nan,
        "top_radii": [{"seed": int(seeds[i]), "radius": float(r[i])} for i in order],
    }


def cutoff_level(centre_losses: np.ndarray, base: int, tau: float) -> int | None:
    """First L >= 0 with mean(centre_losses[: base + L]) > tau; None if it never does."""
    running = np.cumsum(centre_losses, dtype=np.float64) / np.arange(1, len(centre_losses) + 1)
    above = np.nonzero(running[base - 1 :] > tau)[0]  # index i <-> L = i
    return int(above[0]) if len(above) else None


# ---------------------------------------------------------------------------------------------
# Ranking statistics within one landscape.


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a)


def spearman(a, b) -> float:
    """Spearman rank correlation; NaN with fewer than 3 finite pairs or a constant input."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3:
        return math.nan
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def ordering_violations(log_vols, test_losses) -> tuple[int, int]:
    """Pairs where the larger volume has the larger test loss, and the number of pairs."""
    v, t = np.asarray(log_vols, dtype=np.float64), np.asarray(test_losses, dtype=np.float64)
    ok = ~(np.isnan(v) | np.isnan(t))
    v, t = v[ok], t[ok]
    bad = total = 0
    for i in range(len(v)):
        for j in range(i + 1, len(v)):
            if v[i] == v[j]:
                continue
            total += 1
            bad += _cmp(v[i], v[j]) * _cmp(t[i], t[j]) > 0
    return int(bad), total


def kendall_tau(a, b) -> float:
    """Kendall's tau-a between two score vectors (same items)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n, s = len(a), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            s += _cmp(a[i], a[j]) * _cmp(b[i], b[j])
    return float(s / (n * (n - 1) / 2)) if n > 1 else math.nan


def _cmp(p: float, q: float) -> int:
    """-1, 0, 1 like sign(p - q), but -inf vs -inf is a tie rather than NaN."""
    return int(p > q) - int(p < q)


def rank_stability(radii: np.ndarray, n_params: int, n_subsets: int, fraction: float, seed: int):
    """Does the model ranking by volume survive random halves of the directions?

    Args:
        radii: (n_models, M) radii of the models evaluated in one landscape (NaN = dropped).
    Returns:
        (fraction of subsets giving the full-set ranking, mean Kendall tau to the full ranking)
    """
    n_models, m = radii.shape
    if n_models < 2:
        return math.nan, math.nan
    full = np.array([log_volume(r, n_params) for r in radii])
    rng = np.random.default_rng(seed)
    size = max(1, round(fraction * m))
    same, taus = 0, []
    for _ in range(n_subsets):
        idx = rng.choice(m, size=size, replace=False)
        sub = np.array([log_volume(r[idx], n_params) for r in radii])
        same += bool(
            np.array_equal(np.argsort(-sub, kind="stable"), np.argsort(-full, kind="stable"))
        )
        taus.append(kendall_tau(sub, full))
    taus = [t for t in taus if not math.isnan(t)]
    return same / n_subsets, float(np.mean(taus)) if taus else math.nan
