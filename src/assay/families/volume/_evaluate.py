"""The hot path: training losses of many perturbed copies of one model, batched.

A *point* is (direction j, coefficient c): the parameters theta + c * D_j, with D_j the scaled
direction. The published evaluator runs one forward pass per (landscape, model, direction,
coefficient). Here:

1. Points are batched: Q parameter vectors go through the network at once, as stacked weight
   matrices and ``baddbmm`` for MLPs (``torch.func.vmap`` of ``functional_call`` otherwise).
2. Landscapes are nested (landscape L = the first base+L samples), so one pass over the model's
   own training set gives per-sample losses whose prefix means are every smaller landscape.
3. Exact mode stops a direction once every landscape has exceeded ``loss_cap``: the first grid
   point above any tau <= loss_cap is already known, so the radii equal those of the full grid.
4. Adaptive mode bisects each crossing instead of scanning the grid (about 10 points per
   direction instead of 100); one evaluation refines every landscape whose bracket contains it.
"""

from __future__ import annotations

import torch
from torch import nn

from ._models import per_sample_correct, per_sample_loss

# Activations of one chunk (per thread) are kept near 256K floats (1 MB, one core's L2 cache):
# measured on the swiss-roll MLP, 1 MB chunks run 2x faster than 32 MB ones (memory-bound).
CHUNK_FLOATS = 1 << 18
MIN_CHUNK_POINTS = 16  # below this, per-call overhead outweighs cache misses (digits: 1.5x)
FACTOR_FIRST_LAYER_MIN_IN = 16  # inputs from which the factored first layer pays off


class Evaluator:
    """Mean loss/accuracy of perturbed copies of ``model`` on nested prefixes of (x, y).

    Args:
        model: the trained model (its structure; parameters come from ``theta``).
        theta: (P,) trained parameters, flat.
        directions: (M, P) scaled directions.
        x, y: the model's training set ordered base ++ pool[:k] (N samples).
        sizes: landscape sizes (number of leading samples), each <= N.
        loss: "bce" | "ce" | "mse".
        grid_dtype: the dtype in which theta + c * D is formed before it is rounded once to the
            model's dtype. float64 (default) gives the parameters the grid point names, exact to
            the model's precision; the model's own dtype reproduces the earlier float32 grid.
    """

    def __init__(
        self,
        model,
        theta,
        directions,
        x,
        y,
        sizes,
        loss,
        chunk_floats=CHUNK_FLOATS,
        grid_dtype=torch.float64,
    ):
        self.model, self.theta, self.dirs = model, theta, directions
        self.grid_dtype = grid_dtype
        self.theta_grid = theta.to(grid_dtype)
        self.x, self.y, self.loss = x, y, loss
        self.sizes = torch.as_tensor(sizes, dtype=torch.long, device=theta.device)  # (nL,)
        self.n = int(self.sizes.max())  # samples actually needed: the largest landscape
        self.layers = _mlp_layers(model)  # None -> generic vmap path
        per_point = self.n * _widest(model, x)
        budget = chunk_floats * torch.get_num_threads() // per_point
        self.chunk = max(MIN_CHUNK_POINTS, budget)
        self.forward_passes = 0  # points evaluated; for benchmarks
        self.counter = None  # a run's progress counter of points evaluated, when one is shown
        # First layer of a wide-input MLP: x (W + c D) + (b + c db) = A + c B_d with A = x W^T + b
        # computed once and B_d = x D^T + db once per direction in a chunk (shared by its
        # coefficients). Digits (64 inputs) saves ~45% of the FLOPs; for 2-D swiss-roll inputs
        # the layer is negligible and the plain path stays.
        self.first_a = None
        if self.layers is not None and self.layers[0][0].shape[1] >= FACTOR_FIRST_LAYER_MIN_IN:
            w = self.layers[0][0]
            out, inp = w.shape
            with torch.no_grad():
                self.first_a = (
                    x[: self.n].reshape(self.n, -1) @ theta[: out * inp].view(out, inp).T
                )
                self.first_a += theta[out * inp : out * inp + out]  # (n, out)

    def at(self, dir_idx: torch.Tensor, coeff: torch.Tensor):
        """Points (dir_idx[q], coeff[q]) -> mean loss and accuracy per landscape, each (Q, nL).

        Computes on the device of ``theta``; returns CPU tensors (the bookkeeping stays there).
        """
        dev = self.theta.device
        dir_idx, coeff = dir_idx.to(dev), coeff.to(dev, self.grid_dtype)
        losses, accs = [], []
        for i in range(0, len(dir_idx), self.chunk):
            d, c = dir_idx[i : i + self.chunk], coeff[i : i + self.chunk]
            dirs = self.dirs[d].to(self.grid_dtype)  # (q, P)
            params = torch.addcmul(self.theta_grid, c[:, None], dirs).to(self.theta.dtype)
            c = c.to(self.theta.dtype)
            logits = self._forward(params, d, c)  # (q, n, out)
            y = self.y[: self.n]
            losses.append(_prefix_means(per_sample_loss(logits, y, self.loss), self.sizes))
            accs.append(_prefix_means(per_sample_correct(logits, y, self.loss), self.sizes))
            self.forward_passes += len(d)
            if self.counter is not None:
                self.counter.update(len(d))
        return torch.cat(losses).cpu(), torch.cat(accs).cpu()

    def _forward(self, params: torch.Tensor, d: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.x[: self.n]
        if self.layers is None:
            return _vmap_forward(self.model, params, x)
        q = len(params)
        h = x.reshape(1, self.n, -1).expand(q, -1, -1)  # (q, n, in)
        off = 0
        for i, (w, relu) in enumerate(self.layers):
            out, inp = w.shape
            if i == 0 and self.first_a is not None:
                h = self._first_layer(d, c, out, inp)
            else:
                weight = params[:, off : off + out * inp].view(q, out, inp)
                bias = params[:, off + out * inp : off + out * inp + out]  # (q, out)
                # (q, n, in) @ (q, in, out) + bias -> (q, n, out)
                h = torch.baddbmm(bias[:, None, :], h, weight.transpose(1, 2))
            off += out * inp + out
            if relu:
                h = h.relu_()
        return h

    def _first_layer(self, d: torch.Tensor, c: torch.Tensor, out: int, inp: int) -> torch.Tensor:
        uniq, inv = torch.unique(d, return_inverse=True)  # (U,), (q,)
        dw = self.dirs[uniq, : out * inp].reshape(len(uniq) * out, inp)  # (U*out, in)
        db = self.dirs[uniq, out * inp : out * inp + out]  # (U, out)
        x = self.x[: self.n].reshape(self.n, -1)  # (n, in)
        b = (x @ dw.T).view(self.n, len(uniq), out).transpose(0, 1) + db[:, None, :]  # (U, n, out)
        return torch.addcmul(self.first_a, c[:, None, None], b[inv])  # (q, n, out)


def _prefix_means(values: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(Q, N) per-sample values -> (Q, nL) means over the first sizes[l] samples."""
    csum = values.cumsum(dim=1)  # (Q, N)
    return csum[:, sizes - 1] / sizes


def _mlp_layers(model: nn.Module):
    """[(weight, relu_after)] if ``model`` is a Sequential of Linear/ReLU (fast bmm path)."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list = []
    for m in model:
        if isinstance(m, nn.Linear) and m.bias is not None:
            layers.append([m.weight, False])
        elif isinstance(m, nn.ReLU) and layers and not layers[-1][1]:
            layers[-1][1] = True
        else:
            return None
    return [tuple(x) for x in layers]


def _widest(model: nn.Module, x: torch.Tensor) -> int:
    """Largest per-sample activation size of ``model`` (for chunk sizing)."""
    sizes = [x[:1].numel()]
    h = x[:1]
    with torch.no_grad():
        for m in model.children() if isinstance(model, nn.Sequential) else [model]:
            h = m(h)
            sizes.append(h.numel())
    return max(sizes)


def _vmap_forward(model: nn.Module, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    split = params.split([s.numel() for s in shapes], dim=1)

    def one(*flat):
        state = {n: f.view(s) for n, f, s in zip(names, flat, shapes, strict=True)}
        return torch.func.functional_call(model, state, (x,))

    return torch.vmap(one)(*split)  # (q, n, out)


# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def grid_curves(ev: Evaluator, coeffs: torch.Tensor, loss_cap=None, acc_floor=None, block=4):
    """Exact mode: loss and accuracy curves on the coefficient grid, (nL, M, C) each.

    With ``loss_cap``, a direction stops once every landscape has had a grid point with loss >
    loss_cap (and, with ``acc_floor``, accuracy < acc_floor); its later entries stay NaN. The
    first crossing of any tau <= loss_cap (accuracy threshold >= acc_floor) is unchanged.
    """
    m, c, nl = len(ev.dirs), len(coeffs), len(ev.sizes)
    coeffs = coeffs.cpu()
    loss = torch.full((nl, m, c), float("nan"))
    acc = torch.full((nl, m, c), float("nan"))
    active = torch.arange(m)
    seen_loss = torch.zeros(m, nl, dtype=torch.bool)
    seen_acc = torch.zeros(m, nl, dtype=torch.bool) if acc_floor is not None else None
    for i0 in range(0, c, block):
        if len(active) == 0:
            break
        cols = torch.arange(i0, min(c, i0 + block))
        b = len(cols)
        lm, am = ev.at(active.repeat_interleave(b), coeffs[cols].repeat(len(active)))
        lm, am = lm.view(len(active), b, nl), am.view(len(active), b, nl)  # (A, b, nL)
        loss[:, active[:, None], cols[None, :]] = lm.permute(2, 0, 1)
        acc[:, active[:, None], cols[None, :]] = am.permute(2, 0, 1)
        if loss_cap is None:
            continue
        seen_loss[active] |= (lm > loss_cap).any(dim=1)
        done = seen_loss[active].all(dim=1)
        if seen_acc is not None:
            seen_acc[active] |= (am < acc_floor).any(dim=1)
            done &= seen_acc[active].all(dim=1)
        active = active[~done]
    return loss, acc


@torch.no_grad()
def adaptive_crossings(ev: Evaluator, criteria, coeff_max: float, power: float, tol: float):
    """Adaptive mode: bisect where each direction first crosses each criterion.

    Works in u = (c / coeff_max) ** (1 / power), the variable in which the exact grid is evenly
    spaced, so ``tol`` is in grid units (1/(K-1) is one grid step).

    Args:
        criteria: [("loss", tau) | ("accuracy", a)]: crossed when loss > tau / accuracy < a.
    Returns:
        (nL, T, M) crossing u (upper end of the final bracket): 0.0 where the centre already
        crosses, NaN where the direction has not crossed at u = 1 (the end of the grid).
    """
    m, nl, t = len(ev.dirs), len(ev.sizes), len(criteria)
    kind = torch.tensor([k == "loss" for k, _ in criteria])  # (T,)
    value = torch.tensor([float(v) for _, v in criteria])  # (T,)

    def crossed(lm, am):  # (Q, nL) each -> (Q, nL, T)
        return torch.where(kind, lm[..., None] > value, am[..., None] < value)

    centre = crossed(*ev.at(torch.zeros(1, dtype=torch.long), torch.zeros(1)))[0]  # (nL, T)
    lo = torch.zeros(m, nl, t)
    hi = torch.ones(m, nl, t)
    live = (~centre).expand(m, nl, t).clone()  # (M, nL, T) brackets still to refine
    while True:
        width = torch.where(live, hi - lo, 0.0)
        w_max, target = width.view(m, -1).max(dim=1)  # widest bracket per direction
        dirs = torch.nonzero(w_max > tol).squeeze(1)
        if len(dirs) == 0:
            break
        flat_lo = lo.view(m, -1)[dirs, target[dirs]]
        flat_hi = hi.view(m, -1)[dirs, target[dirs]]
        u = (flat_lo + flat_hi) / 2  # (A,)
        hit = crossed(*ev.at(dirs, coeff_max * u.double() ** power))  # (A, nL, T)
        uu = u[:, None, None]
        inside = live[dirs] & (lo[dirs] < uu) & (uu < hi[dirs])
        hi[dirs] = torch.where(inside & hit, uu, hi[dirs])
        lo[dirs] = torch.where(inside & ~hit, uu, lo[dirs])
    # brackets that never saw a crossing still end at u = 1: check the end of the grid only for
    # those directions (most directions cross long before; checking all would cost M points)
    unsure = torch.nonzero((live & (hi == 1.0)).view(m, -1).any(dim=1)).squeeze(1)
    never = torch.zeros(m, nl, t, dtype=torch.bool)
    if len(unsure):
        end = crossed(
            *ev.at(unsure, torch.full((len(unsure),), coeff_max, dtype=torch.float64))
        )  # (A, nL, T)
        never[unsure] = live[unsure] & (hi[unsure] == 1.0) & ~end
    out = torch.where(never, float("nan"), hi)
    out = torch.where(centre[None], 0.0, out)
    return out.permute(1, 2, 0).contiguous()  # (nL, T, M)


@torch.no_grad()
def centre_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """(N,) per-sample losses of the unperturbed model (for the volume cutoff)."""
    return torch.cat(
        [
            per_sample_loss(model(x[i : i + 4096]), y[i : i + 4096], loss)
            for i in range(0, len(x), 4096)
        ]
    )
