"""Where a patch reads and writes: a module's output, its input, or an attention pattern.

A *site* is ``(module, kind)``:

    output   the module's output (the first element of a tuple output)        (B, *shape)
    input    the module's first positional input: a head's ``z`` is the input of the
             attention's output projection (GPT-2 ``attn.c_proj``, Llama ``o_proj``)  (B, T, H*dh)
    pattern  the attention probabilities computed inside an attention module: the output of
             the one softmax its forward calls                                  (B, H, Tq, Tk)

``edit_sites(model, {site: fn})`` runs ``fn`` on each site's tensor during forwards and uses
what it returns (return the argument to only observe). Hooks and modes are removed on exit.
Patterns need the eager attention path (a fused kernel has no softmax to see); an HF model's
``config._attn_implementation`` is set to ``"eager"`` while inside and restored after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ._errors import PatchingError

SITES = ("output", "input", "pattern")
Site = tuple[str, str]  # (module name, site kind)
Edit = Callable[[torch.Tensor], torch.Tensor]
_SOFTMAX = {torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax}


class _Softmax(TorchFunctionMode):
    """Inside one attention module's forward: hand every softmax result to ``fn``."""

    def __init__(self, fn: Edit) -> None:
        super().__init__()
        self.fn, self.calls = fn, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _SOFTMAX:
            self.calls += 1
            out = self.fn(out)
        return out


@contextmanager
def eager_attention(model: torch.nn.Module, needed: bool) -> Iterator[None]:
    """Switch an HF model to eager attention while inside (so patterns exist), if ``needed``."""
    config = getattr(model, "config", None)
    old = getattr(config, "_attn_implementation", None)
    if not needed or config is None or old in (None, "eager"):
        yield
        return
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = old


def _output_hook(fn: Edit) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return hook


def _input_hook(fn: Edit, name: str) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: Any) -> Any:
        if not args or not isinstance(args[0], torch.Tensor):
            raise PatchingError(
                f"{name!r} is not called with its input as a positional tensor, so its input "
                "cannot be patched; patch its output or its parent's output instead"
            )
        return (fn(args[0]), *args[1:])

    return hook


@contextmanager
def edit_sites(model: torch.nn.Module, edits: Mapping[Site, Edit]) -> Iterator[None]:
    """While inside, each site's tensor ``t`` is replaced by ``edits[site](t)`` in forwards."""
    modules = dict(model.named_modules())
    missing = [name for name, _ in edits if name not in modules]
    if missing:
        raise PatchingError(f"module(s) {missing} not in {type(model).__name__}")
    needs_eager = any(kind == "pattern" for _, kind in edits)
    with ExitStack() as stack:
        stack.enter_context(eager_attention(model, needs_eager))
        for (name, kind), fn in edits.items():
            module = modules[name]
            if kind == "output":
                stack.callback(module.register_forward_hook(_output_hook(fn)).remove)
            elif kind == "input":
                stack.callback(module.register_forward_pre_hook(_input_hook(fn, name)).remove)
            elif kind == "pattern":
                _pattern_hooks(module, name, fn, stack)
            else:
                raise PatchingError(f"unknown site {kind!r}; valid: {', '.join(SITES)}")
        yield


def _pattern_hooks(module: torch.nn.Module, name: str, fn: Edit, stack: ExitStack) -> None:
    state: dict[str, _Softmax] = {}

    def enter(mod: torch.nn.Module, args: Any) -> None:
        state["mode"] = _Softmax(fn)
        state["mode"].__enter__()

    def leave(mod: torch.nn.Module, args: Any, output: Any) -> None:
        mode = state.pop("mode")
        mode.__exit__(None, None, None)
        if mode.calls != 1:
            raise PatchingError(
                f"{name!r} called softmax {mode.calls} times in one forward, so its attention "
                "pattern is not one tensor; patch the pattern of a module that computes exactly "
                "one (an attention layer on the eager attention path)"
            )

    stack.callback(module.register_forward_pre_hook(enter).remove)
    stack.callback(module.register_forward_hook(leave).remove)


def capture_sites(
    model: torch.nn.Module, sites: list[Site], *, grad: bool = False
) -> tuple[dict[Site, list[torch.Tensor]], Any]:
    """Edits that record each site's tensor per forward (a list per site, one entry a call).

    With ``grad=True`` each recorded tensor requires grad and the forward continues from a
    copy of it, so ``torch.autograd.grad(measure, recorded)`` is the total derivative through
    everything downstream (later recorded sites included), and in-place ops downstream
    (``ReLU(inplace=True)``) cannot touch the recorded tensor.
    """
    store: dict[Site, list[torch.Tensor]] = {site: [] for site in sites}

    def recorder(site: Site) -> Edit:
        def record(t: torch.Tensor) -> torch.Tensor:
            if grad:
                leaf = t if t.requires_grad else t.detach().requires_grad_(True)
                store[site].append(leaf)
                return leaf.clone()
            store[site].append(t.detach().clone())
            return t

        return record

    return store, {site: recorder(site) for site in sites}
