"""Typed stage configs, their content identity, and dotted-key overrides.

A stage's config is a frozen pydantic model that rejects unknown keys. Its *identity* (what the
run id is hashed from) is the canonical JSON of the fields that differ from their defaults, minus
the fields the class declares in ``identity_exclude`` (device, thread counts: things that must not
make a run count as different). Omitting defaults means adding a new field with a default keeps
every recorded run id valid; changing what a default means must bump the stage's version.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import pydantic
import yaml

from ._errors import ConfigError
from ._io import canonical_json

ID_HEX_CHARS = 12  # 48 bits: a collision needs ~16 million runs of one stage


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What the engine reads from a config to set up a run: its seed, device and threads.

    The engine never looks for fields by name (``getattr(config, "seed")``); it calls
    :meth:`StageConfig.runtime`, which :class:`SeededConfig` and ``assay.ml.TorchConfig`` declare.
    """

    seed: int | None = None
    device: str | None = None
    num_threads: int | None = None


class StageConfig(pydantic.BaseModel):
    """Base class of every stage's config: frozen, unknown keys rejected, validated on creation.

    Class attributes:
        identity_exclude: field names that do not enter the run id (e.g. ``device``).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", validate_default=True)
    identity_exclude: ClassVar[frozenset[str]] = frozenset()
    _rid_cache: dict[str, Any] = pydantic.PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # Equal configs are equal whatever is cached on them (pydantic would compare the cache).
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), tuple(_hashable(v) for v in self.__dict__.values())))

    def runtime(self) -> Runtime:
        """The seed, device and thread count the engine sets up for this run (none by default)."""
        return Runtime()

    def upstream(self) -> dict[str, Any]:
        """The upstream stage configs this config depends on, by name.

        Values are a StageConfig, a list of them or a dict of them. The default takes every field
        that holds such values; override it to derive upstream configs from other fields.
        """
        found: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if _holds_stage_configs(value):
                found[name] = value
        return found

    def code_named(self) -> list[str]:
        """What this config would make assay import, call or unpickle on its own word (a
        factory named by an architecture spec, a pickled checkpoint it vouches for): one line
        each, empty by default. A config that arrives through a file (a suite, a file the suite
        names, a run's config.json) and names any is planned only with ``--trust-imports``,
        like a suite's ``imports:``; configs built in the user's own code are not checked.
        """
        return []


class SeededConfig(StageConfig):
    """A config whose runs are seeded: python, numpy and torch are seeded from ``seed``.

    ``seeds:`` in a suite sets every ``seed`` field of a run and of its upstream configs.
    """

    seed: int = pydantic.Field(
        0, description="seeds python, numpy and torch; a suite's seeds: sets it everywhere"
    )

    def runtime(self) -> Runtime:
        return Runtime(seed=self.seed)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _holds_stage_configs(value: Any) -> bool:
    if isinstance(value, StageConfig):
        return True
    if isinstance(value, list | tuple) and value:
        return all(isinstance(v, StageConfig) for v in value)
    if isinstance(value, Mapping) and value:
        return all(isinstance(v, StageConfig) for v in value.values())
    return False


def identity(config: StageConfig) -> dict[str, Any]:
    """The part of ``config`` that defines a run: non-default, non-excluded fields, recursively."""
    out: dict[str, Any] = {}
    cls = type(config)
    for name, field in cls.model_fields.items():
        if name in cls.identity_exclude:
            continue
        value = getattr(config, name)
        if not field.is_required() and _equal_default(value, field):
            continue
        out[name] = _identity_value(value)
    return out


def _equal_default(value: Any, field: Any) -> bool:
    try:
        default = field.get_default(call_default_factory=True, validated_data={})
    except TypeError:  # pydantic < 2.10 has no validated_data argument
        default = field.get_default(call_default_factory=True)
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:  # e.g. arrays whose == is elementwise
        return False


def _identity_value(value: Any) -> Any:
    if isinstance(value, StageConfig):
        return identity(value)
    if isinstance(value, list | tuple):
        return [_identity_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _identity_value(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value  # the common case: skip pydantic's serializer
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    return _ANY.dump_python(value, mode="json")


_ANY = pydantic.TypeAdapter(Any)  # built once: a TypeAdapter per value cost 0.2 ms


def run_id(stage: str, version: int, config: StageConfig) -> str:
    """``<stage>_<12 hex>``: a hash of the stage name, its config version and the identity."""
    # model_copy() and copy.copy() copy the cache along with a *new* field dict: keying on the
    # dict's identity makes a copy with updated fields compute its own id.
    key = (stage, version, id(config.__dict__))
    cache = config._rid_cache
    if cache.get("key") == key:
        return cache["rid"]  # configs are frozen: the id of this object never changes
    payload = f"{stage}\n{version}\n{canonical_json(identity(config))}"
    digest = hashlib.sha256(payload.encode()).hexdigest()[:ID_HEX_CHARS]
    rid = f"{stage.replace('.', '_')}_{digest}"
    cache["key"], cache["rid"] = key, rid
    return rid


# --------------------------------------------------------------------------- validation

BASE_DIR = "assay_base_dir"  # the validation-context key of the folder relative paths start from


def suite_path(path: str | os.PathLike[str], info: pydantic.ValidationInfo | None) -> str:
    """``path`` resolved against the folder of the suite being planned, for a validator.

    A config built from a suite file (``assay run suites/x/s.yaml``) resolves a relative path
    against ``suites/x/``, wherever the command runs; built any other way (Python, a stored
    config) the path is returned as given. Call it from a ``model_validator``/``field_validator``
    that takes ``info``.
    """
    path = os.fspath(path)
    base = (info.context or {}).get(BASE_DIR) if info is not None else None
    if base is None or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))


def build_config(
    cls: type[StageConfig],
    data: Mapping[str, Any],
    *,
    stage: str,
    base_dir: str | os.PathLike[str] | None = None,
) -> StageConfig:
    """Validate ``data`` into ``cls``, turning pydantic's errors into one readable ConfigError.

    ``base_dir``: the folder relative paths in ``data`` are resolved against (a suite file's
    folder); validators read it with :func:`suite_path`.
    """
    context = {BASE_DIR: os.fspath(base_dir)} if base_dir is not None else None
    try:
        return cls.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, cls, stage=stage)) from None


def format_validation_error(
    exc: pydantic.ValidationError, cls: type[pydantic.BaseModel], *, stage: str
) -> str:
    lines = [f"invalid config for stage '{stage}' ({exc.error_count()} problem(s)):"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = model_at(cls, err["loc"][:-1])
            valid = ", ".join(sorted(parent.model_fields)) if parent else "?"
            lines.append(f"  - unknown key '{loc}'; valid keys here: {valid}")
        elif err["type"] == "missing":
            lines.append(f"  - '{loc}' is required but missing; add it to the config")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r:.60})"
            lines.append(f"  - '{loc}': {err['msg']}{shown}")
    return "\n".join(lines)


def model_at(
    cls: type[pydantic.BaseModel], path: Iterable[str | int]
) -> type[pydantic.BaseModel] | None:
    """The pydantic model class reached by following ``path`` (a pydantic error location) from
    ``cls``: field names, and between them the list indices, dict keys and union tags that
    pydantic puts in a location (``filter.cartography.top_fraction``, ``categories.objects``)."""
    parts = list(path)
    current: type[pydantic.BaseModel] | None = cls
    i = 0
    while i < len(parts):
        name = parts[i]
        if current is None or not isinstance(name, str) or name not in current.model_fields:
            return None
        current, i = _enter(current.model_fields[name].annotation, parts, i + 1)
    return current


def _enter(
    annotation: Any, parts: list[Any], i: int
) -> tuple[type[pydantic.BaseModel] | None, int]:
    """The model a field of type ``annotation`` holds, consuming the location parts (index, key,
    union tag) that pydantic writes between the field and that model's fields."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _enter(get_args(annotation)[0], parts, i)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation, i
    if origin in (list, tuple, set, frozenset):
        skip = i < len(parts) and isinstance(parts[i], int)
        return _enter(get_args(annotation)[0], parts, i + skip)
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return _enter(get_args(annotation)[-1], parts, i + 1)  # the next part is the entry's key
    if origin is Union or type(annotation).__name__ == "UnionType":
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _enter(members[0], parts, i)
        tag = parts[i] if i < len(parts) else None
        for member in members:
            if _is_tag(member, tag):
                return _enter(member, parts, i + 1)
        for member in members:  # a union of a model and plain values: no tag in the location
            found, j = _enter(member, parts, i)
            if found is not None:
                return found, j
    return None, i


def _is_tag(member: Any, tag: Any) -> bool:
    """Whether ``tag`` (a location part) names union member ``member``: pydantic writes the
    discriminator's value for a tagged union and the class name otherwise."""
    model = member if isinstance(member, type) and issubclass(member, pydantic.BaseModel) else None
    if model is None or not isinstance(tag, str):
        return False
    if tag == model.__name__:
        return True
    for field in model.model_fields.values():
        if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
            return True
    return False


def _model_in(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The model class inside an annotation like ``Model``, ``Model | None``, ``list[Model]``."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    if get_origin(annotation) in (Union, list, tuple, dict) or type(annotation).__name__ in (
        "UnionType",
    ):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- overrides


# libyaml's parser when PyYAML was built with it: a 20,000-point grid parses 10x faster.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader reading ``1e9`` and ``1e-3`` as floats at any depth (YAML 1.1
    reads them as strings; researchers, and YAML 1.2, mean numbers): suites and overrides."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """Parse an override value as YAML (``3`` -> int, ``1e-3`` -> float, ``[1,2]`` -> list)."""
    try:
        loader = YamlLoader(text)  # safe construction only: plain types, never objects
        try:
            value = loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError):  # ValueError: a date such as 2020-02-30
        return text
    # YAML 1.1 reads "1e-3" as a string; researchers mean a float.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_override(text: str) -> tuple[str, list[Any]]:
    """``a.b=3`` -> ("a.b", [3]); ``a.b=1,2,3`` -> ("a.b", [1, 2, 3]) (a sweep).

    An empty value (``x=``) or an empty item of a list (``x=1,,2``) is an error naming the item:
    write ``null`` for None and ``''`` for an empty string.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"cannot read override {text!r}: write key.sub=value (one value) or key=1,2,3 (a sweep)"
        )
    raw = raw.strip()
    if not raw:
        raise ConfigError(
            f"override {text!r} has no value after '='; write {key}=VALUE ({key}=null for "
            f"None, {key}='' for an empty string) or drop the override"
        )
    if raw.startswith(("[", "{")) or "," not in raw:
        return key, [parse_value(raw)]
    items = [part.strip() for part in raw.split(",")]
    for i, item in enumerate(items):
        if not item:
            kept = ",".join(p for p in items if p) or "VALUE"
            raise ConfigError(
                f"override {text!r}: item {i + 1} of {len(items)} is empty (a stray comma); "
                f"write {key}={kept}, and null for None or '' for an empty string"
            )
    return key, [parse_value(item) for item in items]


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b] = value`` for ``key="a.b"``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"cannot set '{key}': '{where}' holds {child!r:.60}, not a mapping; set "
                f"'{where}' as a whole, or remove its value from the config"
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def check_key(cls: type[StageConfig], key: str, *, stage: str) -> None:
    """Fail with the valid keys when ``key`` names no field of ``cls`` (dotted into submodels)."""
    if not isinstance(key, str) or not key:
        raise ConfigError(
            f"config key {key!r:.60} of stage '{stage}' is not a key name; write a field name "
            f"such as {', '.join(sorted(cls.model_fields)[:3]) or 'x'} (dotted for nested keys)"
        )
    parts = key.split(".")
    current: type[pydantic.BaseModel] = cls
    depth = 0
    while depth < len(parts):
        part = parts[depth]
        if part not in current.model_fields:
            where = ".".join(parts[:depth]) or "the top level"
            valid = ", ".join(sorted(current.model_fields))
            raise ConfigError(
                f"override key '{key}' matches no config key of stage '{stage}': "
                f"'{part}' is not a field at {where}; valid keys there: {valid}"
            )
        if depth == len(parts) - 1:
            return
        annotation = current.model_fields[part].annotation
        nxt = _model_in(annotation)
        if nxt is not None and _dict_of_models(annotation):
            # `categories.<name>.<field>`: the part after a dict of configs is an entry's key
            depth += 1
            if depth == len(parts) - 1:
                return  # the whole entry
        elif nxt is None:
            if _holds_mapping(annotation):
                return  # a dict-valued field: any sub-key is the field's own business
            field = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"override key '{key}' matches no config key of stage '{stage}': '{field}' is "
                f"a {getattr(annotation, '__name__', annotation)} field with no sub-keys; "
                f"write {field}=VALUE"
            )
        current = nxt
        depth += 1


def _dict_of_models(annotation: Any) -> bool:
    """``dict[str, Model]`` (possibly ``| None``): keys are names, values configs."""
    if get_origin(annotation) in (dict, Mapping) or (
        isinstance(get_origin(annotation), type) and issubclass(get_origin(annotation), Mapping)
    ):
        return True
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        return any(_dict_of_models(a) for a in get_args(annotation))
    return False


def _holds_mapping(annotation: Any) -> bool:
    """Whether a field of this type can hold a mapping (``dict``, ``Mapping``, ``Any``)."""
    if annotation is Any or annotation is object:
        return True
    origin = get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, Mapping | dict):
        return True
    if origin is Union or origin is Annotated or type(annotation).__name__ == "UnionType":
        return any(_holds_mapping(arg) for arg in get_args(annotation))
    return False


def seed_paths(cls: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every field named ``seed`` in ``cls`` and its nested (non-list) models."""
    paths = []
    for name, field in cls.model_fields.items():
        if name == "seed":
            paths.append(prefix + name)
        sub = _model_in(field.annotation)
        if sub is not None and get_origin(field.annotation) not in (list, tuple, dict):
            paths.extend(seed_paths(sub, f"{prefix}{name}."))
    return paths


def set_seed_everywhere(cls: type[StageConfig], data: dict[str, Any], seed: int) -> None:
    """Set every ``seed`` field at any depth: a replicate reseeds its whole pipeline.

    Only configs that are there are seeded: a sub-config given in ``data`` (a mapping, or a
    list or dict of them), or one the field's default builds. An optional sub-config that is
    absent (``cluster: ClusterConfig | None = None``) stays absent: seeding it would plan a run
    nothing asked for.
    """
    if not _reaches_seed(cls):
        raise ConfigError(
            f"the sweep sets seeds, but config {cls.__name__} has no 'seed' field; "
            "remove 'seeds' from the sweep or add a seed field to the config"
        )
    _seed_into(cls, data, seed)


def _reaches_seed(cls: type[pydantic.BaseModel], _seen: frozenset[type] = frozenset()) -> bool:
    """Whether ``cls`` or a model nested in it (lists and dicts too) declares ``seed``."""
    if "seed" in cls.model_fields:
        return True
    for field in cls.model_fields.values():
        sub = _model_in(field.annotation)
        if sub is not None and sub not in _seen and _reaches_seed(sub, _seen | {cls}):
            return True
    return False


def _seed_into(cls: type[pydantic.BaseModel], data: dict[str, Any], seed: int) -> None:
    if "seed" in cls.model_fields:
        data["seed"] = seed
    for name, field in cls.model_fields.items():
        sub = _model_in(field.annotation)
        if sub is None or name == "seed" or not _reaches_seed(sub):
            continue
        if name not in data:
            default = _default_of(field)
            if not _holds_models(default):
                continue  # absent and optional (None, [] or {}): nothing to seed
            data[name] = _ANY.dump_python(default, mode="python")
        value = data[name]
        if isinstance(value, list):
            items = value
        elif isinstance(value, dict) and _dict_of_models(field.annotation):
            items = list(value.values())  # a dict *of* configs
        else:  # one nested config, given as its mapping of fields
            items = [value]
        for item in items:
            if isinstance(item, dict):
                _seed_into(sub, item, seed)


def _default_of(field: Any) -> Any:
    if field.is_required():
        return None
    try:
        return field.get_default(call_default_factory=True, validated_data={})
    except TypeError:  # pydantic < 2.10 has no validated_data argument
        return field.get_default(call_default_factory=True)


def _holds_models(value: Any) -> bool:
    if isinstance(value, pydantic.BaseModel):
        return True
    if isinstance(value, list | tuple) and value:
        return all(isinstance(v, pydantic.BaseModel) for v in value)
    if isinstance(value, Mapping) and value:
        return all(isinstance(v, pydantic.BaseModel) for v in value.values())
    return False


# --------------------------------------------------------------------------- the replicate rule
REPLICATE = "replicate"  # json_schema_extra key: Field(0, json_schema_extra={"replicate": True})
_DECLARED_REPLICATES: dict[str, bool] = {}


def is_replicate(name: str) -> bool:
    """The one replicate rule: whether config field ``name`` identifies a repeat of one
    configuration (pooled by analysis, the report and trackers) rather than what defines it.

    ``seed`` and every ``*_seed`` (``data_seed``, ``perturbation_seed``) are replicates; a field
    declares otherwise with ``Field(..., json_schema_extra={"replicate": False})``, and any
    other field declares itself one with ``{"replicate": True}``. Sweeps' ``seeds:`` set the
    fields named ``seed`` (see :func:`set_seed_everywhere`); every replicate is pooled.
    """
    declared = _DECLARED_REPLICATES.get(name)
    if declared is not None:
        return declared
    return name == "seed" or name.endswith("_seed")


def declare_replicates(
    cls: type[pydantic.BaseModel], _seen: frozenset[type] = frozenset()
) -> None:
    """Record the replicate declarations of ``cls`` and the configs nested in it (called when
    a stage registers, so analysis of flattened ``config.a.b`` columns knows them by name)."""
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and REPLICATE in extra:
            _DECLARED_REPLICATES[name] = bool(extra[REPLICATE])
        sub = _model_in(field.annotation)
        if sub is not None and sub not in _seen:
            declare_replicates(sub, _seen | {cls})
