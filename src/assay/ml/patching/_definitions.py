"""Experiment definitions: which units of which modules to patch.

A definitions file is a JSON list; each definition maps a module name to the units to patch,
exactly the shape the public tool used, so existing files load unchanged:

    [{"q_net.q_net.0": [3]}, {"q_net.q_net.2": "all"}, {"q_net.q_net.0": [1, 2], "q_net.q_net.2": [5]}]

Sequence models may also say *where* to patch: a module's value can be an object with optional
``positions`` (token indices, negative counts from the end; default every position):

    [{"transformer.h.0.mlp.act": {"units": [17], "positions": [-1]}}]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._io import atomic_path
from ._errors import PatchingError
from ._modules import ModuleInfo
from ._structure import Structure

DEFINITION_TYPES = ("single_neuron", "layer", "neuron_groups", "custom")


@dataclass(frozen=True)
class Patch:
    """Replace ``units`` (None = all) at ``positions`` (None = all) of one module's output."""

    module: str
    units: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None

    def to_json(self) -> Any:
        units = "all" if self.units is None else list(self.units)
        if self.positions is None:
            return units
        return {"units": units, "positions": list(self.positions)}

    def label(self) -> str:
        if self.units is None:
            units = "all"
        elif len(self.units) <= 3:
            units = ",".join(map(str, self.units))
        else:
            units = f"{self.units[0]}..{self.units[-1]}({len(self.units)})"
        pos = "" if self.positions is None else "@" + ",".join(map(str, self.positions))
        return f"{self.module}[{units}]{pos}"


@dataclass(frozen=True)
class Definition:
    """One experiment: a set of patches applied together in a single forward."""

    patches: tuple[Patch, ...]

    def to_json(self) -> dict[str, Any]:
        return {p.module: p.to_json() for p in self.patches}

    def label(self) -> str:
        return " + ".join(p.label() for p in self.patches)

    @property
    def modules(self) -> list[str]:
        return [p.module for p in self.patches]

    def single_unit(self) -> tuple[str, int] | None:
        """(module, unit) when this definition patches exactly one unit, else None."""
        if len(self.patches) == 1 and self.patches[0].units and len(self.patches[0].units) == 1:
            return self.patches[0].module, self.patches[0].units[0]
        return None


def _int_list(value: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise PatchingError(
            f'{where}: {what} must be a non-empty list of integers or "all", got {value!r}'
        )
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise PatchingError(f"{where}: {what} must be integers, got {bad[:5]!r} in {value!r}")
    return tuple(value)


def parse_definition(obj: Any, index: int = 0) -> Definition:
    """One definition from its JSON form; errors name the definition's index and key."""
    where = f"definition {index}"
    if not isinstance(obj, dict) or not obj:
        raise PatchingError(
            f'{where} must be a non-empty object mapping module name -> unit list or "all", '
            f'e.g. {{"q_net.q_net.0": [3]}}; got {obj!r}'
        )
    patches = []
    for module, value in obj.items():
        at = f"{where}, module {module!r}"
        positions = None
        if isinstance(value, dict):
            extra = set(value) - {"units", "positions"}
            if extra or "units" not in value:
                raise PatchingError(
                    f'{at}: an object value needs "units" and may have "positions"; '
                    f"got keys {sorted(value)}"
                )
            if value.get("positions", "all") != "all":
                positions = _int_list(value["positions"], "positions", at)
            value = value["units"]
        units = None if value == "all" else _int_list(value, "units", at)
        if units is not None and len(set(units)) != len(units):
            raise PatchingError(f"{at}: units {list(units)} contain duplicates")
        patches.append(Patch(module, units, positions))
    return Definition(tuple(patches))


def parse_definitions(obj: Any) -> list[Definition]:
    if isinstance(obj, dict):
        obj = [obj]  # a single definition object is accepted as a list of one
    if not isinstance(obj, list):
        raise PatchingError(
            f"definitions must be a JSON list of objects, got {type(obj).__name__}; "
            'write e.g. [{"q_net.q_net.0": [3]}]'
        )
    return [parse_definition(o, i) for i, o in enumerate(obj)]


def load_definitions(source: str | Path) -> list[Definition]:
    """From a JSON file, or from a JSON string (anything starting with ``[`` or ``{``)."""
    text = str(source)
    if text.lstrip().startswith(("[", "{")):
        where = "the JSON string"
    else:
        path = Path(text)
        if not path.is_file():
            raise PatchingError(
                f"definitions file {text!r} does not exist; pass a path or a JSON string"
            )
        where, text = str(path), path.read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatchingError(f"{where} is not valid JSON: {exc}") from exc
    return parse_definitions(obj)


def save_definitions(definitions: Sequence[Definition], path: str | Path) -> None:
    """One definition per line: diffable, and still the plain JSON list the public tool read."""
    lines = ",\n".join("  " + json.dumps(d.to_json()) for d in definitions)
    with atomic_path(path) as tmp:
        tmp.write_text("[\n" + lines + "\n]\n")


def validate(definitions: Sequence[Definition], structure: Structure) -> None:
    """Every module must exist and be patchable, every unit and position in range. No skipping."""
    for i, definition in enumerate(definitions):
        for patch in definition.patches:
            try:
                info = structure.get(patch.module)
            except PatchingError as exc:
                raise PatchingError(f"definition {i} ({definition.label()}): {exc}") from None
            if patch.units is not None:
                bad = [u for u in patch.units if not 0 <= u < info.n_units]
                if bad:
                    raise PatchingError(
                        f"definition {i}: unit(s) {bad} of {patch.module!r} out of range: it has "
                        f"{info.n_units} units (valid 0..{info.n_units - 1})"
                    )
            if patch.positions is not None:
                if info.position_axis is None or info.shape is None:
                    raise PatchingError(
                        f"definition {i}: {patch.module!r} has no sequence-position axis "
                        f'(output shape {info.shape}); drop "positions" for this module'
                    )
                t = info.shape[info.position_axis]
                bad = [p for p in patch.positions if not -t <= p < t]
                if bad:
                    raise PatchingError(
                        f"definition {i}: position(s) {bad} of {patch.module!r} out of range for "
                        f"sequences of length {t} (valid {-t}..{t - 1})"
                    )


def generate(
    kind: str,
    modules: Iterable[ModuleInfo],
    *,
    group_size: int = 8,
    positions: Sequence[int] | None = None,
) -> list[Definition]:
    """``single_neuron``: one unit each; ``layer``: "all" units; ``neuron_groups``: runs of
    ``group_size`` consecutive units (the last group may be shorter)."""
    if kind not in DEFINITION_TYPES or kind == "custom":
        raise PatchingError(
            f"unknown definition type {kind!r}; valid: {', '.join(DEFINITION_TYPES)}"
        )
    if kind == "neuron_groups" and group_size < 1:
        raise PatchingError(f"--group-size must be >= 1, got {group_size}")
    pos = tuple(positions) if positions else None
    out = []
    for m in modules:
        n = m.n_units
        if pos is not None and m.position_axis is None:
            raise PatchingError(f"--positions given but {m.name!r} has no position axis")
        if kind == "single_neuron":
            out += [Definition((Patch(m.name, (u,), pos),)) for u in range(n)]
        elif kind == "layer":
            out.append(Definition((Patch(m.name, None, pos),)))
        else:
            for a in range(0, n, group_size):
                units = tuple(range(a, min(a + group_size, n)))
                out.append(Definition((Patch(m.name, units, pos),)))
    return out
