"""Architecture specs: build an untrained module from a small JSON-able description.

A checkpoint that holds only weights (a state dict) needs its architecture. assay never guesses
one from key names; the architecture is a spec:

    {"type": "mlp", "sizes": [4, 64, 64, 2], "activation": "relu"}
    {"type": "hf", "config": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, ...}}
    {"type": "factory", "factory": "my_pkg.models:build", "kwargs": {"width": 64}}

Types are a closed table: ``mlp``, ``hf`` and what families register with
``@register_architecture``. ``factory`` imports and calls any function, so it runs code: it is
allowed only when the caller says the spec is trusted (the user typed it, or passed
``--trust-checkpoint``); a spec read from a checkpoint file may not use it otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import MLError

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[..., "nn.Module"]
_TABLE: dict[str, tuple[Builder, str]] = {}  # type -> (builder(**spec), default input kind)
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid", "silu")


class UntrustedArchitectureError(MLError):
    """A spec from a file names code to run (type "factory") without trust being given."""


def register_architecture(
    name: str, *, input_kind: str = "vector"
) -> Callable[[Builder], Builder]:
    """Register ``builder(**spec_fields) -> nn.Module`` as architecture type ``name``."""
    if name == "factory" or not name:
        raise MLError(f"architecture type {name!r} is reserved; choose another name")

    def add(builder: Builder) -> Builder:
        known = _TABLE.get(name)
        if known is not None and known[0] is not builder:
            raise MLError(f"architecture type {name!r} is registered already ({known[0]})")
        _TABLE[name] = (builder, input_kind)
        return builder

    return add


def architectures() -> list[str]:
    """The registered architecture types (``factory`` aside)."""
    return sorted(_TABLE)


@register_architecture("mlp")
def _mlp(sizes: list[int] | None = None, activation: str = "relu") -> nn.Module:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    from torch import nn

    acts = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
        "silu": nn.SiLU,
    }
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(type(s) is int and s > 0 for s in sizes)
        or activation not in acts
    ):
        raise MLError(
            f'mlp arch needs "sizes" (list of >= 2 positive ints) and "activation" in '
            f"{sorted(acts)}; got sizes={sizes!r}, activation={activation!r}"
        )
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(acts[activation]())
    return nn.Sequential(*layers)


@register_architecture("hf", input_kind="tokens")
def _hf(config: dict[str, Any] | None = None) -> nn.Module:
    """A transformers causal LM from a config dict with ``model_type`` (no download)."""
    import transformers

    cfg = dict(config or {})
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise MLError('hf arch needs config.model_type (e.g. "gpt2")')
    if "auto_map" in cfg:  # names code to import: never from a spec (use type "factory")
        raise MLError(
            f"hf arch config has auto_map {cfg['auto_map']!r}: it names code to import, which "
            'an hf spec may not; remove it, or build the model yourself with {"type": "factory"}'
        )
    try:
        built = transformers.AutoConfig.for_model(model_type, **cfg)
        return transformers.AutoModelForCausalLM.from_config(built, trust_remote_code=False)
    except (ValueError, TypeError, RuntimeError) as exc:  # negative or inconsistent sizes
        raise MLError(f"hf arch: {exc}") from None


def _factory(spec: dict[str, Any]) -> nn.Module:
    target = str(spec.get("factory", ""))
    mod, _, name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise MLError(
            f"factory {target!r} cannot be imported ({exc}); write 'pkg.module:function'"
        ) from exc
    return factory(**spec.get("kwargs", {}))


def build_architecture(spec: dict[str, Any], *, trusted: bool = False) -> tuple[nn.Module, str]:
    """(untrained module, input kind "vector" | "tokens") from a spec; see the module doc.

    ``trusted``: the spec comes from the user (command line, their own code) or the user
    vouched for the file; only then may it be of type ``factory``.
    """
    if not isinstance(spec, dict):
        raise MLError(f"an architecture spec is a JSON object, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind == "factory":
        if not trusted:
            raise UntrustedArchitectureError(
                f"the architecture spec names code to run (factory {spec.get('factory')!r}); "
                "a spec read from a file may only use the registered types "
                f"{', '.join(architectures())}. If you trust the file, pass --trust-checkpoint "
                "(trust_checkpoint=True), or give the architecture yourself with --arch"
            )
        return _checked(_factory(spec), spec), spec.get("input_kind", "vector")
    if kind not in _TABLE:
        raise MLError(
            f"unknown arch type {kind!r}; valid: {', '.join(architectures())}, factory (assay "
            "never guesses an architecture from state-dict key names)"
        )
    builder, input_kind = _TABLE[kind]
    fields = {k: v for k, v in spec.items() if k not in ("type", "input_kind")}
    try:
        module = builder(**fields)
    except TypeError as exc:
        raise MLError(f"arch type {kind!r} got fields it does not take: {exc}") from None
    return _checked(module, spec), spec.get("input_kind", input_kind)


def _checked(module: Any, spec: dict[str, Any]) -> nn.Module:
    from torch import nn

    if not isinstance(module, nn.Module):
        raise MLError(
            f"architecture {spec.get('type')!r} built a {type(module).__name__}, not a torch "
            "nn.Module; a builder or factory must return the (untrained) module"
        )
    return module
