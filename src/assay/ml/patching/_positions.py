"""Which positions of a sequence model's activations can reach the readout at all.

A causal LM read at one position wastes most of its last block: the MLP and norms after the
last attention layer only matter at the readout position. This module finds such modules from
the live model, with no architecture-specific code:

1. one forward + backward with a random cotangent on the output, over the probe sample and
   four random token sequences; a position of a module's output whose gradient is exactly
   zero for all of them is taken as unable to influence the readout (structural zeros, as
   from causal masking or a readout that ignores other positions; the random inputs guard
   against a coincidental zero, e.g. every ReLU unit at a position being off);
2. a module is *position-wise* when running it on a subset of positions gives the same
   numbers as running it on all of them and slicing (checked on the sample: MLPs and norms
   pass, attention fails).

The runner then runs such a module only on its influential positions and fills the rest with
zeros, which by (1) never reach the output.
"""

from __future__ import annotations

from typing import Any

import torch

from ._model import LoadedModel
from ._modules import ModuleInfo


def readout_positions(
    model: LoadedModel, sample: torch.Tensor, modules: dict[str, ModuleInfo]
) -> dict[str, tuple[int, ...]]:
    """name -> the positions that matter, for position-wise modules where that is not all."""
    if model.input_kind != "tokens":
        return {}
    candidates = {
        n
        for n, m in modules.items()
        if m.position_axis == 0 and m.calls == 1 and not m.tuple_output and m.shape is not None
    }
    by_name = dict(model.root.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}

    def hook(name: str, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.retain_grad()
            outputs[name] = output
        single = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
        if single and args[0].dim() >= 2 and args[0].shape[1] == probe.shape[1]:
            inputs[name] = args[0].detach()

    # The sample plus random sequences: a zero gradient must hold for different inputs.
    vocab = model.vocab_size or int(sample.max()) + 1
    noise = torch.randint(
        0, vocab, (4, sample.shape[1]), generator=torch.Generator().manual_seed(0)
    )
    probe = torch.cat([sample[:1], noise.to(sample.device)])
    params = list(model.root.parameters())
    flags, grads = [p.requires_grad for p in params], [p.grad for p in params]
    handles = [
        by_name[n].register_forward_hook(
            lambda m, a, k, o, n=n: hook(n, m, a, k, o), with_kwargs=True
        )
        for n in candidates
    ]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            out = model.forward(probe)
            cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
            (out * cotangent.to(out.device)).sum().backward()
    finally:
        for h in handles:
            h.remove()
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad  # leave no trace of the probe on the model

    found: dict[str, tuple[int, ...]] = {}
    for name, output in outputs.items():
        if output.grad is None or name not in inputs:
            continue
        dims = [d for d in range(output.dim()) if d != 1]
        keep = tuple(int(p) for p in output.grad.abs().sum(dim=dims).nonzero().flatten())
        if 0 < len(keep) < output.shape[1] and _positionwise(by_name[name], inputs[name], keep):
            found[name] = keep
    return found


def _positionwise(module: torch.nn.Module, x: torch.Tensor, keep: tuple[int, ...]) -> bool:
    """Does ``module`` treat every position on its own? Checked on two subsets of ``x``."""
    with torch.inference_mode():
        full = module(x)
        if not isinstance(full, torch.Tensor) or full.shape[:2] != x.shape[:2]:
            return False
        for subset in (list(keep), [0]):
            part = module(x[:, subset])
            if part.shape != full[:, subset].shape:
                return False
            if not torch.allclose(part, full[:, subset], rtol=1e-4, atol=1e-5):
                return False
    return True
