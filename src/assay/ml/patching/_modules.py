"""One submodule as the structure probe saw it, and the kinds modules are classified into.

Shared by the probe (``_structure.py``) and the readout-position analysis (``_positions.py``),
which both describe modules with :class:`ModuleInfo`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import PatchingError

if TYPE_CHECKING:
    import torch

KINDS = (
    "linear",
    "conv",
    "activation",
    "attention",
    "block",
    "norm",
    "embedding",
    "hook",
    "other",
)
DEFAULT_KINDS = ("linear", "conv", "activation")
# The probe runs this many copies of the sample: a batch size unlikely to equal any other
# dimension, so "dim 0 == PROBE_BATCH" reliably marks which output tensors are per-sample.
PROBE_BATCH = 5


@dataclass(frozen=True)
class ModuleInfo:
    """One submodule as seen in a forward pass.

    ``shape`` is the per-sample shape of the patchable tensor (the output, or its first element
    when the module returns a tuple, as attention layers do); ``None`` when the output is not a
    per-sample tensor. ``layout`` says, for a tensor/tuple output, which leaves are per-sample
    (used to replay cached outputs); ``None`` when the output cannot be replayed.
    """

    name: str
    kind: str
    type_name: str
    shape: tuple[int, ...] | None
    unit_axis: int | None  # axis of ``shape`` that indexes units
    position_axis: int | None  # axis of ``shape`` that indexes sequence positions
    calls: int
    start: int  # sequence number of the pre-hook (first call)
    end: int  # sequence number of the forward hook (last call)
    layout: tuple[bool, ...] | None
    tuple_output: bool
    # Where the output is used: the innermost module (or "" for top-level code) whose forward
    # ran a torch op on it, or returned it. Lets the runner skip replaying unused outputs.
    consumers: frozenset[str] = frozenset()
    # Token models: the only positions of this output that can reach the readout, when the
    # module is position-wise and that is not all of them (see _positions.py); else None.
    readout_positions: tuple[int, ...] | None = None
    # Per-sample shape of the first positional input (for ``input`` sites), when a tensor.
    in_shape: tuple[int, ...] | None = None
    # Attention modules: the number of heads (from the module's attributes), else None.
    n_heads: int | None = None

    @property
    def n_units(self) -> int:
        if self.shape is None or self.unit_axis is None:
            return 0
        return self.shape[self.unit_axis]

    @property
    def patchable(self) -> bool:
        return self.shape is not None and self.calls == 1

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.name} ({self.type_name}: output is not a per-sample tensor)"
        pos = (
            f", {self.shape[self.position_axis]} positions"
            if self.position_axis is not None
            else ""
        )
        calls = f", called {self.calls}x" if self.calls != 1 else ""
        return f"{self.name} ({self.kind}, {self.n_units} units{pos}{calls})"


def check_kinds(kinds: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    kinds = tuple(kinds)
    if kinds == ("all",):
        return KINDS
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise PatchingError(
            f"unknown module kind(s) {bad or kinds!r}; valid kinds: {', '.join(KINDS)} or 'all' "
            f"(default {','.join(DEFAULT_KINDS)})"
        )
    return kinds


_HEAD_ATTRS = ("num_heads", "n_head", "num_attention_heads", "n_heads")


def head_count(module: torch.nn.Module) -> int | None:
    """Heads of an attention module, from its attributes or its config; None if not found."""
    for owner in (module, getattr(module, "config", None)):
        for attr in _HEAD_ATTRS:
            value = getattr(owner, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def module_kind(module: torch.nn.Module, parent: torch.nn.Module | None) -> str:
    """Classify a module by its class; HF GPT-2's ``Conv1D`` is a Linear with transposed weight."""
    from torch import nn  # lazy: configs validate kinds with check_kinds without loading torch

    name = type(module).__name__
    home = type(module).__module__
    if isinstance(module, (nn.Linear, nn.Bilinear)) or name == "Conv1D":
        return "linear"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.MultiheadAttention) or "Attention" in name:
        return "attention"
    if home.startswith(("torch.nn.modules.activation", "transformers.activations")):
        return "activation"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if "Norm" in name:
        return "norm"
    if name == "HookPoint":
        return "hook"
    if isinstance(parent, nn.ModuleList):
        return "block"  # transformer blocks: their output is the residual stream
    return "other"
