"""Read and write module outputs with forward hooks; every hook is removed on exit.

    with capture_activations(model, ["transformer.h.0.mlp", "transformer.h.1"]) as acts:
        model(ids)
    acts["transformer.h.1"]          # (B, T, D): the output (first element of a tuple output)

    with patch_output(model, "transformer.h.0.mlp", source, positions=[-1], units=[3, 7]):
        patched = model(ids)         # those units at the last position come from ``source``

For many patches over many inputs at once (K definitions a forward, cached prefixes) use the
batched engine in ``assay.ml.patching``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from ._errors import MLError


def get_modules(model: torch.nn.Module, names: Sequence[str]) -> dict[str, torch.nn.Module]:
    """name -> submodule; an unknown name fails listing some valid ones."""
    by_name = dict(model.named_modules())
    missing = [n for n in names if n not in by_name]
    if missing:
        valid = [n for n in by_name if n][:30]
        raise MLError(
            f"module(s) {missing} not in {type(model).__name__}; valid names include {valid} "
            "(all of them: [n for n, _ in model.named_modules()])"
        )
    return {n: by_name[n] for n in names}


def _main(output: Any) -> torch.Tensor:
    """The tensor a module "outputs": itself, or the first element of a tuple/list."""
    main = output[0] if isinstance(output, tuple | list) else output
    if not isinstance(main, torch.Tensor):
        raise MLError(f"module output is a {type(main).__name__}, not a tensor")
    return main


def _replace_main(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new


@contextmanager
def capture_activations(
    model: torch.nn.Module,
    module_names: Sequence[str],
    *,
    detach: bool = True,
    clone: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict filled during forwards: name -> that module's latest output tensor.

    ``detach=False`` keeps the graph (to backpropagate through an activation); ``clone=True``
    protects the stored tensor from later in-place ops (``ReLU(inplace=True)``).
    """
    modules = get_modules(model, module_names)
    acts: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def store(module: torch.nn.Module, args: Any, output: Any) -> None:
            t = _main(output)
            t = t.detach() if detach else t
            acts[name] = t.clone() if clone else t

        return store

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


@contextmanager
def edit_outputs(
    model: torch.nn.Module, edits: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]
) -> Iterator[None]:
    """While inside, module ``name``'s output tensor ``t`` is replaced by ``edits[name](t)``."""
    modules = get_modules(model, list(edits))

    def hook(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
        def replace(module: torch.nn.Module, args: Any, output: Any) -> Any:
            return _replace_main(output, fn(_main(output)))

        return replace

    handles = [modules[n].register_forward_hook(hook(fn)) for n, fn in edits.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def patch_mask(
    shape: Sequence[int],
    *,
    positions: Sequence[int] | None = None,
    units: Sequence[int] | None = None,
    position_axis: int = 1,
) -> torch.Tensor:
    """Bool mask broadcastable to an output of ``shape`` (B, T, ..., C): True where patched.

    ``units`` index the last axis, ``positions`` the ``position_axis`` (negative counts from
    the end); None means all of them.
    """
    mask_shape = [1] * len(shape)
    mask = torch.ones(mask_shape, dtype=torch.bool)
    if units is not None:
        u = torch.zeros(shape[-1], dtype=torch.bool)
        u[list(units)] = True
        view = [1] * len(shape)
        view[-1] = shape[-1]
        mask = mask & u.view(view)
    if positions is not None:
        if len(shape) < 2 or position_axis >= len(shape) - 1:
            raise MLError(
                f"positions given but an output of shape {tuple(shape)} has no position axis"
            )
        p = torch.zeros(shape[position_axis], dtype=torch.bool)
        p[list(positions)] = True
        view = [1] * len(shape)
        view[position_axis] = shape[position_axis]
        mask = mask & p.view(view)
    return mask


@contextmanager
def patch_output(
    model: torch.nn.Module,
    name: str,
    source: torch.Tensor,
    *,
    positions: Sequence[int] | None = None,
    units: Sequence[int] | None = None,
) -> Iterator[None]:
    """Replace ``units`` at ``positions`` of module ``name``'s output with ``source``'s values.

    ``source`` has the output's shape (or broadcasts to it, e.g. (1, T, C) for every row).
    Everything not selected keeps the value the forward computed.
    """

    def replace(output: torch.Tensor) -> torch.Tensor:
        try:
            src = source.to(output.device, output.dtype).expand_as(output)
        except RuntimeError:
            raise MLError(
                f"patch source of shape {tuple(source.shape)} does not fit {name!r}'s output "
                f"of shape {tuple(output.shape)}"
            ) from None
        mask = patch_mask(output.shape, positions=positions, units=units).to(output.device)
        return torch.where(mask, src, output)

    with edit_outputs(model, {name: replace}):
        yield
