"""An unbatched reference: one plain forward per (definition, input), indices set in loops.

Deliberately shares nothing with the batched runner but the metric formulas, so agreement
means the batching, masking and cached-prefix replay are right.
"""

from __future__ import annotations

import torch

from assay.ml.patching import Definition, InputPairs, LoadedModel, compute_metrics


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def reference_patch(
    model: LoadedModel,
    definitions: list[Definition],
    pairs: InputPairs,
    direction: str = "denoising",
    logit_diff: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    modules = dict(model.root.named_modules())
    source, target = (
        (pairs.clean, pairs.corrupted)
        if direction == "denoising"
        else (pairs.corrupted, pairs.clean)
    )
    results: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for j in range(len(pairs)):
            src_x, tgt_x = source[j : j + 1], target[j : j + 1]
            acts = {}
            handles = [
                modules[name].register_forward_hook(
                    lambda m, a, o, name=name, acts=acts: acts.__setitem__(name, _first(o).clone())
                )
                for d in definitions
                for name in d.modules
            ]
            src_out = model.forward(src_x)
            for h in handles:
                h.remove()
            base_out = model.forward(tgt_x)
            clean_out = src_out if direction == "denoising" else base_out
            for i, d in enumerate(definitions):
                handles = []
                for patch in d.patches:

                    def hook(m, a, o, patch=patch, acts=acts):
                        act = _first(o).clone()  # (1, C) | (1, T, C) | (1, C, H, W)
                        s = acts[patch.module]
                        n_units = act.shape[-1] if model.input_kind == "tokens" else act.shape[1]
                        units = range(n_units) if patch.units is None else patch.units
                        for u in units:
                            if model.input_kind == "tokens":
                                t = act.shape[1]
                                positions = (
                                    range(t) if patch.positions is None else patch.positions
                                )
                                for p in positions:
                                    act[0, p, u] = s[0, p, u]
                            else:
                                act[0, u] = s[0, u]
                        return (act, *o[1:]) if isinstance(o, tuple) else act

                    handles.append(modules[patch.module].register_forward_hook(hook))
                patched = model.forward(tgt_x)
                for h in handles:
                    h.remove()
                values = compute_metrics(patched[None], base_out, src_out, clean_out, logit_diff)
                for name, v in values.items():
                    results.setdefault(
                        name,
                        torch.full((len(definitions), len(pairs)), float("nan"), dtype=v.dtype),
                    )
                    results[name][i, j] = v[0, 0]
    return results
