"""Layer structure read from the live model: run one forward with hooks and record what ran.

Nothing is guessed from state-dict key names. For every submodule the probe records its kind
(linear, conv, activation, ...), the per-sample shape of the tensor it outputs, how many units
that tensor has, and when the call started and ended. The start/end order is what lets the
runner reuse the cached prefix of a forward (see ``_runner.py``).

    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    print(structure.table(kinds=("linear", "activation")))
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ._errors import PatchingError
from ._model import LoadedModel
from ._modules import (
    DEFAULT_KINDS,
    KINDS,
    PROBE_BATCH,
    ModuleInfo,
    check_kinds,
    head_count,
    module_kind,
)
from ._positions import readout_positions

# The published tool's name for the network's output (its last layer's output).
OUTPUT_ALIAS = "output_logits"

__all__ = [
    "OUTPUT_ALIAS",
    "PROBE_BATCH",
    "ModuleInfo",
    "Structure",
    "probe_structure",
    "select_modules",
]


@dataclass(frozen=True)
class Structure:
    """All submodules that ran in the probe forward, in the order their calls started."""

    modules: dict[str, ModuleInfo]
    input_kind: str  # "vector" | "tokens"
    seq_len: int | None = None
    _parents: dict[str, str] = field(default_factory=dict, repr=False)
    # Prefixes tried for a name that is not a module: an SB3 DQN's ("q_net.",), so the
    # published tool's names relative to the Q-network (``q_net.0``) resolve.
    prefixes: tuple[str, ...] = ()

    def select(self, kinds: Iterable[str] = DEFAULT_KINDS) -> list[ModuleInfo]:
        """Patchable modules of the given kinds, in execution order."""
        kinds = check_kinds(kinds)
        return [m for m in self.modules.values() if m.patchable and m.kind in kinds]

    def output_module(self) -> str | None:
        """The output layer: the last leaf module (one with no submodule calls) to finish."""
        called = set(self.modules)
        leaves = [
            m
            for m in self.modules.values()
            if m.patchable and not any(n.startswith(m.name + ".") for n in called)
        ]
        return max(leaves, key=lambda m: m.end).name if leaves else None

    def resolve_name(self, name: str) -> str:
        """``name``, or the module it stands for: ``output_logits`` is the output layer (the
        published tool's name), and a name relative to a prefix (``q_net.0`` ->
        ``q_net.q_net.0``). Unknown names fail listing the valid ones."""
        if name in self.modules:
            return name
        if name == OUTPUT_ALIAS:
            out = self.output_module()
            if out is None:
                raise PatchingError("the model has no output layer to patch as output_logits")
            return out
        hits = [p + name for p in self.prefixes if p + name in self.modules]
        if len(hits) == 1:
            return hits[0]
        return self.get(name).name  # raises, listing the valid names

    def n_heads(self, name: str) -> int:
        info = self.get(name)
        if info.n_heads is None:
            raise PatchingError(
                f"{name!r} ({info.type_name}) is not an attention module with a known head "
                "count (an attribute num_heads / n_head / num_attention_heads); heads can only "
                "be patched on attention modules"
            )
        return info.n_heads

    def head_projection(self, name: str) -> tuple[str, int]:
        """(output projection, d_head): the last linear inside attention module ``name``,
        whose input is the heads' outputs z concatenated (B, T, H * d_head)."""
        n_heads = self.n_heads(name)
        inner = [
            (m, m.in_shape)
            for m in self.modules.values()
            if m.name.startswith(name + ".") and m.kind == "linear" and m.in_shape is not None
        ]
        if not inner:
            raise PatchingError(
                f"{name!r} calls no linear submodule, so its heads' outputs z (the input of "
                "its output projection) cannot be located"
            )
        proj, in_shape = max(inner, key=lambda m_in: m_in[0].end)
        width = in_shape[-1]
        if width % n_heads:
            raise PatchingError(
                f"{proj.name!r}'s input width {width} is not a multiple of {n_heads} heads"
            )
        return proj.name, width // n_heads

    def get(self, name: str) -> ModuleInfo:
        """The module called ``name``; unknown or unpatchable names fail listing the valid ones."""
        info = self.modules.get(name)
        if info is None:
            raise PatchingError(
                f"module {name!r} does not exist in this model (or did not run in its forward). "
                f"Valid modules and sizes: {self.valid_names()}. "
                "Fix the definition, or list them with `assay patching structure --model PATH`."
            )
        if info.shape is None:
            raise PatchingError(
                f"module {name!r} ({info.type_name}) does not output a per-sample tensor, so it "
                f"has no units to patch. Valid modules and sizes: {self.valid_names()}"
            )
        if info.calls != 1:
            raise PatchingError(
                f"module {name!r} runs {info.calls} times in one forward (a shared or reused "
                "module), so 'its activation' is ambiguous; patch the modules that consume it."
            )
        return info

    def valid_names(self, limit: int = 40) -> str:
        names = [f"{m.name} [{m.n_units}]" for m in self.modules.values() if m.patchable]
        more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def ancestors(self, name: str) -> list[str]:
        """Dotted-name ancestors of ``name`` that ran (closest first)."""
        parts = name.split(".")
        return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]

    def table(self, kinds: Iterable[str] = KINDS) -> str:
        kinds = check_kinds(kinds)
        rows = [("module", "kind", "type", "output shape", "units")]
        for m in self.modules.values():
            if m.kind in kinds and m.shape is not None:
                rows.append((m.name, m.kind, m.type_name, str(m.shape), str(m.n_units)))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        )

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "name": m.name,
                "kind": m.kind,
                "type": m.type_name,
                "shape": m.shape,
                "units": m.n_units,
                "calls": m.calls,
            }
            for m in self.modules.values()
        ]


def _leaves(output: Any) -> tuple[Any, ...]:
    return output if isinstance(output, tuple) else (output,)


def _layout(output: Any, batch: int) -> tuple[tuple[bool, ...] | None, Any, bool]:
    """(per-sample leaves, the patchable tensor or None, whether the output is a tuple)."""
    if isinstance(output, torch.Tensor):
        batched = output.dim() > 0 and output.shape[0] == batch
        return (batched,), output if batched else None, False
    if isinstance(output, tuple) and all(o is None or isinstance(o, torch.Tensor) for o in output):
        leaves = tuple(o is not None and o.dim() > 0 and o.shape[0] == batch for o in output)
        first = output[0] if output and leaves[0] else None
        return leaves, first, True
    return None, None, False


def probe_structure(model: LoadedModel, sample: torch.Tensor) -> Structure:
    """Run ``model`` once on ``sample`` (batch of PROBE_BATCH) and record every submodule call."""
    root = model.root
    batch = sample.shape[0]
    seq_len = sample.shape[1] if model.input_kind == "tokens" else None
    counter = itertools.count()
    seen: dict[str, dict[str, Any]] = {}
    parents = {}
    by_name = dict(root.named_modules())
    for name in by_name:
        if name:
            parents[name] = name.rpartition(".")[0]

    # Data flow at module granularity: which module produced each tensor, who used it.
    stack: list[str] = []
    producers: dict[int, list[str]] = {}
    keep: list[Any] = []  # holds produced tensors so their id()s are not reused
    consumers: dict[str, set[str]] = {}
    quiet = [False]  # our own hook code must not count as a use

    def use(tensor: Any, where: str) -> None:
        for name in producers.get(id(tensor), ()):
            consumers.setdefault(name, set()).add(where)

    class Uses(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if not quiet[0]:
                for leaf in torch.utils._pytree.tree_leaves((args, kwargs or {})):
                    if isinstance(leaf, torch.Tensor):
                        use(leaf, stack[-1] if stack else "")
            return func(*args, **(kwargs or {}))

    def pre(name: str, module: torch.nn.Module, args: Any) -> None:
        rec = seen.setdefault(name, {"calls": 0, "start": next(counter)})
        rec["calls"] += 1
        stack.append(name)

    def post(name: str, module: torch.nn.Module, args: Any, output: Any) -> None:
        quiet[0] = True
        stack.pop()
        rec = seen[name]
        rec["end"] = next(counter)
        rec["layout"], tensor, rec["tuple"] = _layout(output, batch)
        rec["shape"] = tuple(tensor.shape[1:]) if tensor is not None else None
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.dim() > 1 and first.shape[0] == batch:
            rec["in_shape"] = tuple(first.shape[1:])
        for leaf in _leaves(output):
            if isinstance(leaf, torch.Tensor):
                use(leaf, name)  # returning a child's output is a use by this module
                producers.setdefault(id(leaf), []).append(name)
                keep.append(leaf)
        quiet[0] = False

    handles = []
    for name, module in by_name.items():
        if not name:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: pre(n, m, a)))
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: post(n, m, a, o)))
    try:
        with torch.inference_mode(), Uses():
            model.forward(sample)
    except PatchingError:
        raise
    except Exception as exc:  # the model rejected the input: say what we fed it
        raise PatchingError(
            f"the model ({model.description}) failed on a sample input of shape "
            f"{tuple(sample.shape)} and dtype {sample.dtype}: {type(exc).__name__}: {exc}. "
            f"Check that the inputs match the model (expected: {model.input_hint})."
        ) from exc
    finally:
        for h in handles:
            h.remove()

    modules = {}
    for name, rec in sorted(seen.items(), key=lambda kv: kv[1]["start"]):
        shape = rec.get("shape")
        unit_axis = position_axis = None
        if shape is not None and len(shape) > 0:
            if seq_len is not None and len(shape) >= 2 and shape[0] == seq_len:
                position_axis, unit_axis = 0, len(shape) - 1  # (T, C): units are features
            elif seq_len is None and len(shape) >= 2:
                unit_axis = 0  # (C, H, W): units are channels
            else:
                unit_axis = len(shape) - 1
        parent = by_name.get(parents.get(name, ""))
        kind = module_kind(by_name[name], parent)
        modules[name] = ModuleInfo(
            name=name,
            kind=kind,
            type_name=type(by_name[name]).__name__,
            shape=shape if unit_axis is not None else None,
            unit_axis=unit_axis,
            position_axis=position_axis,
            calls=rec["calls"],
            start=rec["start"],
            end=rec.get("end", rec["start"]),
            layout=rec.get("layout"),
            tuple_output=rec.get("tuple", False),
            consumers=frozenset(consumers.get(name, ())),
            in_shape=rec.get("in_shape"),
            n_heads=head_count(by_name[name]) if kind == "attention" else None,
        )
    for name, positions in readout_positions(model, sample, modules).items():
        modules[name] = dataclasses.replace(modules[name], readout_positions=positions)
    return Structure(
        modules=modules,
        input_kind=model.input_kind,
        seq_len=seq_len,
        _parents=parents,
        prefixes=tuple(model.name_prefixes),
    )


def select_modules(
    structure: Structure,
    *,
    kinds: Sequence[str] | str = DEFAULT_KINDS,
    layers: Sequence[str] | None = None,
    include_output: bool = False,
) -> list[ModuleInfo]:
    """Modules to generate definitions for: by kind, optionally by name or glob pattern."""
    import fnmatch

    chosen = structure.select(kinds)
    if layers:
        picked: list[ModuleInfo] = []
        for pattern in layers:
            if pattern in structure.modules:
                picked.append(structure.get(pattern))  # explicit names may be of any kind
                continue
            hits = [m for m in chosen if fnmatch.fnmatchcase(m.name, pattern)]
            if not hits:
                raise PatchingError(
                    f"--layers entry {pattern!r} matches no module of kinds {check_kinds(kinds)}. "
                    f"Valid modules and sizes: {structure.valid_names()}"
                )
            picked.extend(hits)
        unique: dict[str, ModuleInfo] = {}
        for m in picked:
            unique.setdefault(m.name, m)  # the first of each name, in order
        return sorted(unique.values(), key=lambda m: m.start)
    if not include_output:
        out = structure.output_module()
        chosen = [m for m in chosen if m.name != out]
    return chosen
