"""Random perturbation directions and their filter scaling.

Direction j is drawn from its own generator seeded with ``perturbation_seed + j``: d_j ~ N(0, I)
over every weight and bias, in ``model.parameters()`` order. So direction j is the same for every
model of the same architecture, every landscape and every run, and any subset can be regenerated.

Directions are handled flat: a model's parameters become one vector theta of length P (in
parameter order), direction sets are (M, P) matrices.
"""

from __future__ import annotations

import torch
from torch import nn

SCALINGS = ("filter", "filter_unit")


def flatten_params(model: nn.Module) -> torch.Tensor:
    """(P,) all parameters in ``model.parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def param_shapes(model: nn.Module) -> list[torch.Size]:
    return [p.shape for p in model.parameters()]


def random_directions(shapes: list[torch.Size], n: int, seed: int, start: int = 0) -> torch.Tensor:
    """(n, P) raw directions ``start .. start+n-1``; row i uses seed ``seed + start + i``."""
    size = sum(s.numel() for s in shapes)
    out = torch.empty(n, size)
    for i in range(n):
        gen = torch.Generator().manual_seed(seed + start + i)
        # one randn per parameter tensor, in order: the same stream torch.manual_seed(seed)
        # followed by randn_like(p) for each p would give (the published code's recipe)
        out[i] = torch.cat([torch.randn(s, generator=gen).reshape(-1) for s in shapes])
    return out


def scale_directions(raw: torch.Tensor, model: nn.Module, scaling: str) -> torch.Tensor:
    """(M, P) raw directions -> (M, P) directions scaled to ``model``'s filters.

    ``filter``: each row of a 2-D weight (each output filter of a 4-D conv weight) is multiplied
    by the norm of that row in the trained model; 1-D parameters (biases) by 1.
    ``filter_unit``: Li et al. (2018) filter normalisation: each direction row is first scaled to
    unit norm, then multiplied by the trained row's norm; biases by 1.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; valid: {', '.join(SCALINGS)}")
    out = torch.empty_like(raw)
    off = 0
    for p in model.parameters():
        n = p.numel()
        block = raw[:, off : off + n]  # (M, numel)
        if p.ndim >= 2:
            rows = p.shape[0]
            d = block.reshape(len(raw), rows, -1)  # (M, rows, fan_in)
            w_norm = p.detach().reshape(rows, -1).norm(dim=1)  # (rows,)
            if scaling == "filter_unit":
                d = d / d.norm(dim=2, keepdim=True).clamp_min(1e-12)
            block = (d * w_norm[None, :, None]).reshape(len(raw), n)
        out[:, off : off + n] = block
        off += n
    return out
