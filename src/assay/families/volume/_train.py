"""Training loop: AdamW (or SAM around AdamW), full batch by default.

The loop is deliberately plain: the minimum it finds is the object of study, so nothing here
(schedulers, augmentation, early stopping) may silently change it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._models import per_sample_correct, per_sample_loss


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, chunk: int = 4096):
    """Mean loss and accuracy of ``model`` on (x, y), in chunks to bound memory."""
    losses, correct = [], []
    for i in range(0, len(x), chunk):
        logits = model(x[i : i + chunk])
        losses.append(per_sample_loss(logits, y[i : i + chunk], loss))
        correct.append(per_sample_correct(logits, y[i : i + chunk], loss))
    return torch.cat(losses).mean().item(), torch.cat(correct).mean().item()


def sam_step(
    model: nn.Module,
    closure: Callable[[], torch.Tensor],
    opt,
    rho: float,
    adaptive: bool,
    origin: bool = False,
):
    """One SAM step (Foret et al. 2021): ascend to w + e(w), take the gradient there, step at w.

    e(w) = rho * g / ||g||, or with ``adaptive`` (ASAM, Kwon et al. 2021)
    rho * |w|^2 g / || |w| g ||. ``origin``: the published code, whose adaptive step is
    rho * |w| g / || |w| g || (one factor |w| fewer) with the norm over one concatenated vector.
    """
    loss = closure()
    loss.backward()
    with_grad = [(p, p.grad) for p in model.parameters() if p.grad is not None]
    params = [p for p, _ in with_grad]
    with torch.no_grad():
        scaled = [(p.abs() * g) if adaptive else g for p, g in with_grad]
        if origin:
            norm = torch.cat([s.flatten() for s in scaled]).norm(p=2)
            scale = rho / (norm + 1e-12)
            eps = [(p.abs() if adaptive else 1.0) * g * scale for p, g in with_grad]
        else:
            norm = torch.linalg.vector_norm(torch.stack([s.norm() for s in scaled]))
            eps = [
                (p.abs() if adaptive else 1.0) * s * (rho / (norm + 1e-12))
                for p, s in zip(params, scaled, strict=True)
            ]
        for p, e in zip(params, eps, strict=True):
            p.add_(e)
    opt.zero_grad()
    closure().backward()  # gradient at the perturbed point
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.sub_(e)
    opt.step()
    return loss


def batch_mean_loss(logits: torch.Tensor, y: torch.Tensor, loss: str, origin: bool = False):
    """Mean loss of a batch. ``origin``: the published ``BCEWithLogitsLoss()(logits.squeeze(),
    y)`` (mean reduction), whose gradient differs from mean-of-per-sample in the last bits."""
    if origin and loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.squeeze(), y.to(logits.dtype))
    return per_sample_loss(logits, y, loss).mean()


def train_model(
    model: nn.Module, x, y, x_test, y_test, cfg, loss: str, log=None, bar=None
) -> dict:
    """Train in place; returns per-epoch histories (test metrics every ``cfg.eval_every``).

    ``bar``: the run's progress counter (``run.progress(cfg.epochs, "epoch")``), one unit an
    epoch; evaluations are noted on it.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    origin = cfg.sampling == "origin"
    gen = torch.Generator().manual_seed(cfg.seed + 3)  # minibatch order, if not full batch
    n = len(x)
    bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
    hist: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_accuracy")}
    hist |= {"test_epoch": [], "test_loss": [], "test_accuracy": []}
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.arange(n) if bs == n else torch.randperm(n, generator=gen)
        tot_loss = tot_correct = 0.0
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            xb, yb = x[idx], y[idx]
            out: dict[str, torch.Tensor] = {}

            def closure(xb=xb, yb=yb, out=out):
                logits = model(xb)
                out.setdefault("logits", logits.detach())
                return batch_mean_loss(logits, yb, loss, origin)

            opt.zero_grad()
            if cfg.optimizer == "sam":
                batch_loss = sam_step(model, closure, opt, cfg.sam_rho, cfg.sam_adaptive, origin)
            else:
                batch_loss = closure()
                batch_loss.backward()
                opt.step()
            tot_loss += batch_loss.item() * len(idx)
            tot_correct += per_sample_correct(out["logits"], yb, loss).sum().item()
        hist["epoch"].append(epoch)
        hist["train_loss"].append(tot_loss / n)
        hist["train_accuracy"].append(tot_correct / n)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            if bar is not None:
                bar.note("evaluating")
            model.eval()
            test_loss, test_acc = evaluate(model, x_test, y_test, loss)
            hist["test_epoch"].append(epoch)
            hist["test_loss"].append(test_loss)
            hist["test_accuracy"].append(test_acc)
            if log is not None:
                log(epoch, hist["train_loss"][-1], test_loss, test_acc)
        if bar is not None:
            bar.update()
    model.eval()
    return hist
