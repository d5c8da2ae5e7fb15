"""Experiment definitions: which units of which modules to patch.

A definitions file is a JSON list; each definition maps a module name to the units to patch,
exactly the shape the public tool used, so existing files load unchanged:

    [{"q_net.q_net.0": [3]}, {"q_net.q_net.2": "all"}, {"q_net.q_net.0": [1, 2], "q_net.q_net.2": [5]}]

Sequence models may also say *where* to patch: a module's value can be an object with optional
``positions`` (token indices, negative counts from the end; default every position):

    [{"transformer.h.0.mlp.act": {"units": [17], "positions": [-1]}}]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core._io import atomic_path
from ._errors import PatchingError
from ._modules import ModuleInfo
from ._structure import Structure

DEFINITION_TYPES = ("single_neuron", "layer", "neuron_groups", "custom")


@dataclass(frozen=True)
class Patch:
    """Replace ``units`` (None = all) at ``positions`` (None = all) of one site of a module.

    ``site``: ``output`` (default), ``input`` (the module's first positional input), ``z``
    (heads' outputs before the attention's output projection; resolved to that projection's
    input), ``pattern`` (attention probabilities; units are heads, positions are queries).
    ``heads`` keeps the head indices of ``z``/``pattern`` patches for labels and files;
    ``named`` the name the definition used when resolution changed it (``q_net.0``,
    ``output_logits``, an attention module for ``z``).
    """

    module: str
    units: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    site: str = "output"
    heads: tuple[int, ...] | None = None
    named: str | None = None

    @property
    def key(self) -> str:
        return self.named or self.module

    def to_json(self) -> Any:
        units = "all" if self.units is None else list(self.units)
        if self.heads is not None:
            value: dict[str, Any] = {"heads": list(self.heads)}
            if self.site == "pattern":
                value["site"] = "pattern"
        elif self.site in ("output",):
            if self.positions is None:
                return units
            value = {"units": units}
        else:
            value = {"units": units, "site": self.site}
        if self.positions is not None:
            value["positions"] = list(self.positions)
        return value

    def label(self) -> str:
        if self.heads is not None:
            what = ".pattern" if self.site == "pattern" else ".z"
            units = "h" + ",".join(map(str, self.heads))
        else:
            what = "" if self.site == "output" else f".{self.site}"
            units = _units_label(self.units)
        pos = "" if self.positions is None else "@" + ",".join(map(str, self.positions))
        return f"{self.key}{what}[{units}]{pos}"


def _units_label(units: tuple[int, ...] | None) -> str:
    if units is None:
        return "all"
    if len(units) <= 3:
        return ",".join(map(str, units))
    return f"{units[0]}..{units[-1]}({len(units)})"


@dataclass(frozen=True)
class Definition:
    """One experiment: a set of patches applied together in a single forward."""

    patches: tuple[Patch, ...]

    def to_json(self) -> dict[str, Any]:
        return {p.key: p.to_json() for p in self.patches}

    def label(self) -> str:
        return " + ".join(p.label() for p in self.patches)

    @property
    def modules(self) -> list[str]:
        return [p.module for p in self.patches]

    def single_unit(self) -> tuple[str, int] | None:
        """(module, unit) when this definition patches exactly one output unit (or one head:
        (module, head)), else None."""
        if len(self.patches) != 1:
            return None
        p = self.patches[0]
        if p.heads is not None:
            return (p.key, p.heads[0]) if len(p.heads) == 1 else None
        if p.site == "output" and p.units and len(p.units) == 1:
            return p.module, p.units[0]
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
        patches.append(_parse_patch(module, value, f"{where}, module {module!r}"))
    return Definition(tuple(patches))


_VALUE_KEYS = {"units", "positions", "heads", "site"}
_USER_SITES = ("output", "input", "z", "pattern")


def _parse_patch(module: str, value: Any, at: str) -> Patch:
    positions, site, heads = None, "output", None
    if isinstance(value, dict):
        extra = set(value) - _VALUE_KEYS
        if extra or not ({"units", "heads"} & set(value)):
            raise PatchingError(
                f'{at}: an object value needs "units" (or "heads") and may have "positions" '
                f'and "site" ({", ".join(_USER_SITES)}); got keys {sorted(value)}'
            )
        if value.get("positions", "all") != "all":
            positions = _int_list(value["positions"], "positions", at)
        site = value.get("site", "z" if "heads" in value else "output")
        if site not in _USER_SITES:
            raise PatchingError(f"{at}: unknown site {site!r}; valid: {', '.join(_USER_SITES)}")
        if "heads" in value:
            if "units" in value or site not in ("z", "pattern"):
                raise PatchingError(
                    f'{at}: "heads" selects a head\'s output z or its attention pattern '
                    f'(site "z" or "pattern"), without "units"; got {value!r}'
                )
            heads = _int_list(value["heads"], "heads", at)
            if len(set(heads)) != len(heads):
                raise PatchingError(f"{at}: heads {list(heads)} contain duplicates")
            return Patch(module, None, positions, site, heads)
        if site in ("z", "pattern"):
            raise PatchingError(f'{at}: site {site!r} needs "heads", e.g. {{"heads": [0]}}')
        value = value["units"]
    units = None if value == "all" else _int_list(value, "units", at)
    if units is not None and len(set(units)) != len(units):
        raise PatchingError(f"{at}: units {list(units)} contain duplicates")
    return Patch(module, units, positions, site)


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
        try:
            where, text = str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PatchingError(
                f"definitions file {text!r} is not readable JSON text ({exc}); write a JSON list "
                'such as [{"q_net.q_net.0": [3]}]'
            ) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatchingError(f"{where} is not valid JSON: {exc}") from None
    return parse_definitions(obj)


def save_definitions(definitions: Sequence[Definition], path: str | Path) -> None:
    """One definition per line: diffable, and still the plain JSON list the public tool read."""
    lines = ",\n".join("  " + json.dumps(d.to_json()) for d in definitions)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text("[\n" + lines + "\n]\n")
    except OSError as exc:  # a parent that is a file, a folder in the way, no permission
        raise PatchingError(
            f"cannot write definitions to {str(path)!r} ({exc.strerror or exc}); give a file "
            "path whose parent is a folder you can write"
        ) from None


def resolve(definitions: Sequence[Definition], structure: Structure) -> list[Definition]:
    """Definitions in the model's own terms: aliases and heads replaced by modules and units.

    Names resolve through ``Structure.resolve_name`` (the published tool's names relative to
    the Q-network, ``output_logits`` for the output layer). A ``z`` patch of heads of an
    attention module becomes an ``input`` patch of its output projection at those heads'
    units; a ``pattern`` patch keeps the attention module, with the heads as units.
    """
    out = []
    for i, definition in enumerate(definitions):
        patches = []
        for patch in definition.patches:
            try:
                name = structure.resolve_name(patch.module)
            except PatchingError as exc:
                raise PatchingError(f"definition {i} ({definition.label()}): {exc}") from None
            named = patch.named or (patch.module if name != patch.module else None)
            if patch.heads is None:
                patches.append(dataclasses.replace(patch, module=name, named=named))
                continue
            n_heads = structure.n_heads(name)
            bad = [h for h in patch.heads if not 0 <= h < n_heads]
            if bad:
                raise PatchingError(
                    f"definition {i}: head(s) {bad} of {name!r} out of range: it has {n_heads} "
                    f"heads (valid 0..{n_heads - 1})"
                )
            if patch.site == "pattern":
                patches.append(
                    Patch(name, patch.heads, patch.positions, "pattern", patch.heads, named)
                )
                continue
            proj, d_head = structure.head_projection(name)
            units = tuple(u for h in patch.heads for u in range(h * d_head, (h + 1) * d_head))
            patches.append(
                Patch(proj, units, patch.positions, "input", patch.heads, patch.named or name)
            )
        out.append(Definition(tuple(patches)))
    return out


def site_shape(patch: Patch, info: ModuleInfo) -> tuple[tuple[int, ...], int, int | None]:
    """(per-sample shape, unit axis, position axis) of the tensor ``patch`` writes."""
    if patch.site == "input":
        if info.in_shape is None:
            raise PatchingError(
                f"{info.name!r} has no per-sample tensor input to patch; patch its output"
            )
        shape = info.in_shape
        pos = 0 if info.position_axis is not None and len(shape) >= 2 else None
        return shape, len(shape) - 1, pos
    if patch.site == "pattern":
        axis, dims = info.position_axis, info.shape
        t = dims[axis] if axis is not None and dims is not None else None
        if t is None or info.n_heads is None:
            raise PatchingError(f"{info.name!r} is not an attention layer over a sequence")
        return (info.n_heads, t, t), 0, 1  # (H, Tq, Tk): units are heads, positions queries
    assert info.shape is not None and info.unit_axis is not None
    return info.shape, info.unit_axis, info.position_axis


def validate(definitions: Sequence[Definition], structure: Structure) -> None:
    """Every module must exist and be patchable, every unit and position in range. No skipping.

    Takes resolved definitions (``resolve``); the runner resolves before validating.
    """
    if not definitions:
        raise PatchingError(
            "there are no definitions to run (an empty list); write some with "
            "`assay patching define --type single_neuron --model PATH -o defs.json`"
        )
    for i, definition in enumerate(definitions):
        for patch in definition.patches:
            try:
                info = structure.get(patch.module)
            except PatchingError as exc:
                raise PatchingError(f"definition {i} ({definition.label()}): {exc}") from None
            shape, unit_axis, position_axis = site_shape(patch, info)
            n_units = shape[unit_axis]
            if patch.units is not None:
                bad = [u for u in patch.units if not 0 <= u < n_units]
                if bad:
                    raise PatchingError(
                        f"definition {i}: unit(s) {bad} of {patch.key!r} out of range: it has "
                        f"{n_units} units (valid 0..{n_units - 1})"
                    )
            if patch.positions is not None:
                if position_axis is None:
                    raise PatchingError(
                        f"definition {i}: {patch.key!r} has no sequence-position axis "
                        f'(output shape {info.shape}); drop "positions" for this module'
                    )
                t = shape[position_axis]
                bad = [p for p in patch.positions if not -t <= p < t]
                if bad:
                    raise PatchingError(
                        f"definition {i}: position(s) {bad} of {patch.key!r} out of range for "
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
