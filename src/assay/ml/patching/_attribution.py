"""Attribution patching: every definition's effect estimated from one backward pass.

    outcome = attribution_patch(model, structure, definitions, pairs, "denoising", (3, 5))
    outcome.metrics["restored"]      # (D, N) estimates of m(patched) - m(base)

The gradient approximation of activation patching (Nanda 2023, "Attribution patching"):
with m the measure the exact runner restores (the logit difference if given, else the output
at the clean run's argmax) and a a site's activation,

    m(patched) - m(base)  ~=  sum over the patched elements of (a_source - a_target) * dm/da,

the gradient taken on the target run. It costs one source forward (to cache a_source), one
target forward and one backward, for every unit of every module at once; exact patching
costs a forward per definition. The estimate is exact where m is linear in a (the output
layer's units, or anything after the last nonlinearity) and approximate elsewhere: check it
against ``BatchedPatcher`` on a sample before trusting a ranking (bench_patching.py prints
the correlation on the GPT-2 example).

Metrics: ``restored`` (the estimate), ``gap`` (exact: m(source) - m(base)) and ``normalised``
(estimate / gap, NaN where the gap is below the noise floor, as in ``_metrics.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ._definitions import Definition, Patch, site_shape
from ._metrics import NOISE_ULPS, NORMALISE_EPS
from ._model import InputPairs, LoadedModel
from ._runner import BatchedPatcher, PatchOutcome
from ._sites import Site, capture_sites, eager_attention, edit_sites
from ._structure import Structure

ATTRIBUTION_METRICS = ("restored", "gap", "normalised")


def _measure(out: torch.Tensor, clean: torch.Tensor, logit_diff: tuple[int, int] | None):
    """m per row: out (n, O) -> (n,)."""
    if logit_diff is not None:
        return out[:, logit_diff[0]] - out[:, logit_diff[1]]
    return out.gather(1, clean.argmax(-1, keepdim=True)).squeeze(1)


def attribution_patch(
    model: LoadedModel,
    structure: Structure,
    definitions: Sequence[Definition],
    pairs: InputPairs,
    direction: str = "denoising",
    logit_diff: tuple[int, int] | None = None,
    *,
    max_batch_rows: int = 16384,
) -> PatchOutcome:
    """Estimated ``restored`` of every definition over every pair (see the module docstring)."""
    checker = BatchedPatcher(model, structure, max_batch_rows=max_batch_rows)  # its checks
    source, target, lengths = checker.oriented(pairs, direction)
    definitions = checker.prepare(list(definitions), pairs, logit_diff)
    sites: list[Site] = sorted({(p.module, p.site) for d in definitions for p in d.patches})
    n = len(pairs)
    step = max(1, max_batch_rows // checker.rows_per_input(target))
    effects: dict[Site, list[torch.Tensor]] = {site: [] for site in sites}
    outs: dict[str, list[torch.Tensor]] = {"source": [], "base": []}
    t0 = time.perf_counter()
    params = list(model.root.parameters())
    flags = [param.requires_grad for param in params]
    with eager_attention(model.root, any(kind == "pattern" for _, kind in sites)):
        try:
            for param in params:
                param.requires_grad_(False)  # gradients for activations only
            for a in range(0, n, step):
                rows = None if lengths is None else lengths[a : a + step]
                src_store, recorders = capture_sites(model.root, sites)
                with torch.no_grad(), edit_sites(model.root, recorders):
                    source_out = model.forward(source[a : a + step], rows)  # (b, O)
                tgt_store, recorders = capture_sites(model.root, sites, grad=True)
                with torch.enable_grad(), edit_sites(model.root, recorders):
                    base_out = model.forward(target[a : a + step], rows)
                    clean = source_out if direction == "denoising" else base_out.detach()
                    m = _measure(base_out, clean, logit_diff).sum()  # rows are independent
                    acts = [tgt_store[s][0] for s in sites]
                    grads = torch.autograd.grad(m, acts, allow_unused=True)
                for site, act, grad in zip(sites, acts, grads, strict=True):
                    diff = src_store[site][0] - act.detach()  # (b, *site shape)
                    zero = torch.zeros_like(diff)
                    effects[site].append(diff * (grad if grad is not None else zero))
                outs["source"].append(source_out.detach())
                outs["base"].append(base_out.detach())
        finally:
            for param, flag in zip(params, flags, strict=True):
                param.requires_grad_(flag)
    per_site = {site: torch.cat(parts) for site, parts in effects.items()}  # (N, *shape)
    source_out, base_out = torch.cat(outs["source"]), torch.cat(outs["base"])
    t_grad = time.perf_counter() - t0

    t1 = time.perf_counter()
    estimate = torch.zeros(len(definitions), n, dtype=torch.float64)
    per_unit: dict[Site, torch.Tensor] = {}  # site -> (N, units): summed over positions

    def unit_sums(site: Site, patch: Patch) -> torch.Tensor:
        if site not in per_unit:
            e = per_site[site].double()  # (N, *shape)
            _, unit_axis, _ = site_shape(patch, structure.modules[patch.module])
            dims = [k for k in range(1, e.dim()) if k != 1 + unit_axis]
            per_unit[site] = (e.sum(dims) if dims else e).cpu()  # (N, C)
        return per_unit[site]

    # Single units at every position (a sweep): one gather per site instead of a loop.
    singles: dict[Site, list[tuple[int, int]]] = {}
    rest = []
    for i, d in enumerate(definitions):
        p = d.patches[0]
        if len(d.patches) == 1 and p.positions is None and p.units and len(p.units) == 1:
            singles.setdefault((p.module, p.site), []).append((i, p.units[0]))
        else:
            rest.append((i, d))
    for site, members in singles.items():
        rows, units = zip(*members, strict=True)
        patch = definitions[rows[0]].patches[0]
        estimate[list(rows)] = unit_sums(site, patch)[:, list(units)].T
    for i, d in rest:
        for patch in d.patches:
            site = (patch.module, patch.site)
            if patch.positions is None:
                cols = list(patch.units) if patch.units is not None else slice(None)
                estimate[i] += unit_sums(site, patch)[:, cols].sum(-1)
            else:
                mask = checker.site_mask(site, [patch], lengths)[0]  # (1|N, *mask shape)
                estimate[i] += (per_site[site].double() * mask).reshape(n, -1).sum(-1).cpu()
    clean_out = source_out if direction == "denoising" else base_out
    m_s = _measure(source_out.double(), clean_out, logit_diff).cpu()
    m_b = _measure(base_out.double(), clean_out, logit_diff).cpu()
    gap = (m_s - m_b).expand(len(definitions), n)
    eps = torch.finfo(base_out.dtype).eps
    floor = (NOISE_ULPS * eps * (m_s.abs() + m_b.abs())).clamp_min(NORMALISE_EPS)
    normalised = (estimate / gap).masked_fill(gap.abs() <= floor, float("nan"))
    return PatchOutcome(
        definitions=definitions,
        direction=direction,
        ids=list(pairs.ids),
        metrics={"restored": estimate, "gap": gap.clone(), "normalised": normalised},
        base_out=base_out.cpu(),
        source_out=source_out.cpu(),
        n_forwards=2 * ((n + step - 1) // step),
        timings={"grad_s": t_grad, "reduce_s": time.perf_counter() - t1},
    )
