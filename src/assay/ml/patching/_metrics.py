"""Metrics per (definition, input), computed as tensors over a whole (K, n) block at once.

"base" is the unpatched run of the target input (corrupted when denoising, clean when
noising), "source" the run whose activations are patched in. Probabilities are the softmax of
the outputs (for Q-values: a Boltzmann policy at temperature 1).

    delta_chosen        patched - base at the base's chosen (argmax) output
    l2                  ||patched - base||_2
    action_changed      1 if the argmax differs from the base's, else 0
    prob_delta_chosen   p_patched - p_base at the base's chosen output
    max_abs_prob_delta  max_o |p_patched(o) - p_base(o)|
    kl_base_patched     KL(p_base || p_patched);  kl_patched_base: the other way
    hellinger           Hellinger distance between p_base and p_patched
    margin_change       change of (out[i1] - out[i2]) for the base's top-2 outputs i1, i2
    cosine              cos(patched, base)
    cosine_to_source    cos(patched - base, source - base): does the patch move toward the source?
    logit_diff[_delta]  patched[a] - patched[b] for the two named outputs (and its change)
    restored            m(patched) - m(base), m = logit_diff if given, else the output at the
                        clean run's argmax;  gap: m(source) - m(base) (same for every definition)
    normalised          restored / gap: the fraction of the clean-corrupted difference restored
                        for this input; NaN where the gap is ~0. Per definition, records also
                        carry normalised_score = mean(restored) / mean(gap), which a few inputs
                        with tiny gaps cannot dominate.

Undefined values are NaN, never noise. ``cosine``, ``cosine_to_source``, ``restored``, ``gap``
and ``normalised`` are computed (and kept) in float64 from the outputs, and a direction or ratio is marked
undefined (NaN) where the vectors involved are below the model's rounding noise: a change
``||d||`` is noise when ``||d|| <= NOISE_ULPS * eps(model dtype) * ||base||`` (float32:
~1.2e-4 of the output's norm; float64: ~2e-13), a gap when ``|gap| <= max(NORMALISE_EPS,
NOISE_ULPS * eps * (|m(source)| + |m(base)|))``. ``undefined_counts`` counts them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

METRICS = (
    "delta_chosen",
    "l2",
    "action_changed",
    "prob_delta_chosen",
    "max_abs_prob_delta",
    "kl_base_patched",
    "kl_patched_base",
    "hellinger",
    "margin_change",
    "cosine",
    "cosine_to_source",
    "restored",
    "gap",
    "normalised",
)
LOGIT_DIFF_METRICS = ("logit_diff", "logit_diff_delta")
PROB_METRICS = {
    "prob_delta_chosen",
    "max_abs_prob_delta",
    "kl_base_patched",
    "kl_patched_base",
    "hellinger",
}
# |m(source) - m(base)| below this means clean and corrupted agree: restoration is undefined.
NORMALISE_EPS = 1e-6
# A float32 forward's outputs carry rounding errors of up to ~1e-5 of their size (several
# layers of accumulated roundoff, and different batchings round differently). 1000 ulps
# (1.2e-4 relative in float32) sits above that. Measured on the 64x64 CartPole DQN (258
# single units x 256 pairs): where both call it defined, float32 and float64 runs agree on
# cosine_to_source to 5e-4 and on normalised to 0.03; without the rule they differ by up to
# 0.28 and 0.78 (tests/patching/test_patching_metrics.py checks a smaller one).
NOISE_ULPS = 1e3
# Metrics that are NaN where undefined (rather than never): counted per definition.
UNDEFINED_METRICS = ("cosine", "cosine_to_source", "normalised", "margin_change")


def _at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (..., n, O) at per-input output index (n,) -> (..., n)."""
    idx = index.view(*([1] * (x.dim() - 2)), -1, 1).expand(*x.shape[:-1], 1)
    return x.gather(-1, idx).squeeze(-1)


def _cos_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last dim; NaN where either vector is zero (undefined, not 0)."""
    cos = F.cosine_similarity(a, b, dim=-1)
    zero = (a.norm(dim=-1) == 0) | (b.norm(dim=-1) == 0)
    return cos.masked_fill(zero, float("nan"))


def check_metric_names(names: Iterable[str] | None) -> tuple[str, ...] | None:
    """None (= all) or the requested names; unknown names fail listing the valid ones."""
    if names is None:
        return None
    names = tuple(names)
    bad = [n for n in names if n not in METRICS + LOGIT_DIFF_METRICS]
    if bad:
        raise ValueError(
            f"unknown metric(s) {bad}; valid: {', '.join(METRICS + LOGIT_DIFF_METRICS)} "
            "(leave unset for all)"
        )
    return names


def compute_metrics(
    patched: torch.Tensor,
    base: torch.Tensor,
    source: torch.Tensor,
    clean: torch.Tensor,
    logit_diff: tuple[int, int] | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """patched (K, n, O); base, source, clean (n, O) -> {metric: (K, n)}.

    ``names`` selects metrics (default all); restored, gap and normalised are always computed.
    """
    want = set(METRICS if names is None else names) | {"restored", "gap", "normalised"}
    if logit_diff is not None and names is None:
        want |= set(LOGIT_DIFF_METRICS)
    eps = torch.finfo(patched.dtype).eps if patched.is_floating_point() else 0.0
    # float64 keeps KL/Hellinger exact for small outputs (actions); vocabularies stay float32.
    dtype = torch.float64 if patched.shape[-1] <= 64 else patched.dtype
    p64, b64, s64, c64 = (t.double() for t in (patched, base, source, clean))
    patched, base, source, clean = (t.to(dtype) for t in (patched, base, source, clean))
    chosen = base.argmax(-1)  # (n,)
    delta = patched - base  # (K, n, O)
    out: dict[str, torch.Tensor] = {}
    if "delta_chosen" in want:
        out["delta_chosen"] = _at(delta, chosen)
    if "l2" in want:
        out["l2"] = delta.norm(dim=-1)
    if "action_changed" in want:
        out["action_changed"] = (patched.argmax(-1) != chosen).to(dtype)
    if want & PROB_METRICS:
        log_p = F.log_softmax(patched, -1)  # (K, n, O)
        log_q = F.log_softmax(base, -1).unsqueeze(0)  # (1, n, O)
        p, q = log_p.exp(), log_q.exp()
        prob = {
            "prob_delta_chosen": lambda: _at(p - q, chosen),
            "max_abs_prob_delta": lambda: (p - q).abs().amax(-1),
            "kl_base_patched": lambda: (q * (log_q - log_p)).sum(-1),
            "kl_patched_base": lambda: (p * (log_p - log_q)).sum(-1),
            "hellinger": lambda: (0.5 * ((p.sqrt() - q.sqrt()) ** 2).sum(-1)).clamp_min(0).sqrt(),
        }
        out.update({name: fn() for name, fn in prob.items() if name in want})
    if "cosine" in want:
        out["cosine"] = _cos_nan(p64, b64.expand_as(p64))  # float64 like its siblings
    if "cosine_to_source" in want:
        d, towards = p64 - b64, (s64 - b64).expand_as(p64)  # (K, n, O) in float64
        tol = NOISE_ULPS * eps * b64.norm(dim=-1)  # (n,): the forward's rounding noise
        noise = (d.norm(dim=-1) <= tol) | (towards.norm(dim=-1) <= tol)
        out["cosine_to_source"] = _cos_nan(d, towards).masked_fill(noise, float("nan"))
    if "margin_change" in want:
        if base.shape[-1] >= 2:
            top2 = base.topk(2, dim=-1).indices  # (n, 2)
            margin = _at(patched, top2[:, 0]) - _at(patched, top2[:, 1])
            out["margin_change"] = margin - (_at(base, top2[:, 0]) - _at(base, top2[:, 1]))
        else:
            out["margin_change"] = torch.full_like(delta[..., 0], float("nan"))

    if logit_diff is not None:
        a, b = logit_diff

        def measure(x: torch.Tensor) -> torch.Tensor:
            return x[..., a] - x[..., b]

        if "logit_diff" in want:
            out["logit_diff"] = measure(patched)
        if "logit_diff_delta" in want:
            out["logit_diff_delta"] = measure(patched) - measure(base)
    else:
        answer = clean.argmax(-1)

        def measure(x: torch.Tensor) -> torch.Tensor:
            return _at(x, answer)

    m_source, m_base = measure(s64), measure(b64)  # (n,) float64
    gap = m_source - m_base
    restored = measure(p64) - m_base  # (K, n)
    floor = (NOISE_ULPS * eps * (m_source.abs() + m_base.abs())).clamp_min(NORMALISE_EPS)
    out["restored"] = restored
    out["gap"] = gap.expand_as(restored)
    out["normalised"] = (restored / gap).masked_fill(gap.abs() <= floor, float("nan"))
    return {
        k: v.float() if v.dtype != torch.float64 or k not in EXACT else v for k, v in out.items()
    }


# Kept in float64 in the results: the ratios and differences the noise rules are about.
EXACT = frozenset({"cosine", "cosine_to_source", "restored", "gap", "normalised"})


def undefined_counts(metrics: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many (definition, input) values of each metric are undefined (NaN)."""
    return {
        name: int(torch.isnan(values).sum())
        for name, values in metrics.items()
        if name in UNDEFINED_METRICS and torch.isnan(values).any()
    }


def aggregate(values: torch.Tensor) -> dict[str, torch.Tensor]:
    """values (D, N) -> {mean, std, min, max, n} each (D,), over the finite entries only.

    std is the population std; a definition with no finite value gets NaN and n = 0.
    """
    finite = torch.isfinite(values)
    n = finite.sum(-1)
    zeros = torch.where(finite, values, torch.zeros_like(values))
    mean = zeros.sum(-1) / n.clamp_min(1)
    var = (torch.where(finite, values - mean[:, None], torch.zeros_like(values)) ** 2).sum(-1)
    std = (var / n.clamp_min(1)).sqrt()
    inf = torch.tensor(float("inf"), dtype=values.dtype)
    lo = torch.where(finite, values, inf).amin(-1)
    hi = torch.where(finite, values, -inf).amax(-1)
    empty = n == 0
    nan = float("nan")
    return {
        "mean": mean.masked_fill(empty, nan),
        "std": std.masked_fill(empty, nan),
        "min": lo.masked_fill(empty, nan),
        "max": hi.masked_fill(empty, nan),
        "n": n,
    }
