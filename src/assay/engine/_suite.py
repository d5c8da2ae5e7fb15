"""Suites: a stage, a base config and a sweep, read from YAML (or JSON/TOML), expanded to runs.

```yaml
stage: example.fit
config: {degree: 3, data: {n_samples: 200}}
sweep:
  grid: {degree: [1, 3, 5]}          # cartesian product
  zip: {a: [1, 2], b: [3, 4]}        # zipped, equal lengths
  variants: [{x: 1}, {x: 2, y: 3}]   # explicit list
  seeds: [0, 1, 2]                   # sets every `seed` field at any depth
```
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..core._config import (
    YamlLoader,
    build_config,
    check_key,
    parse_override,
    set_dotted,
    set_seed_everywhere,
)
from ..core._errors import ConfigError, StageNotFoundError, SuiteError
from ..core._registry import Stage, get_stage, import_modules
from ..core._spec import PlannedRun, plan_config

SUITE_KEYS = ("name", "description", "stage", "config", "sweep", "imports", "sinks")
SWEEP_KEYS = ("grid", "zip", "variants", "seeds")


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    stage: str
    config: dict[str, Any]
    sweep: dict[str, Any]
    imports: tuple[str, ...] = ()
    description: str = ""
    path: Path | None = None
    sinks: tuple[str, ...] = ()  # trackers every run of the suite logs to (``--sink`` adds)


def load_suite(path: str | Path) -> Suite:
    """Read a suite file; malformed files (and duplicate keys) fail with the file, line and
    problem."""
    path = Path(path)
    if not path.exists():
        raise SuiteError(f"suite file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read suite file {str(path)!r}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = _read_yaml(text, path)
    elif suffix == ".json":
        data = _read_json(text, path)
    elif suffix == ".toml":
        try:  # tomllib itself rejects a key defined twice, with its line
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SuiteError(f"malformed TOML in {path}: {exc}") from None
    else:
        raise SuiteError(
            f"suite file {str(path)!r} has suffix {suffix!r}; use .yaml, .yml, .json or .toml"
        )
    return suite_from_dict(data, name=path.stem, path=path)


class _UniqueKeyLoader(YamlLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (plain
    PyYAML keeps the last one silently, so a suite would run something else than it reads)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges are meant to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base class reports it with its line
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first given at line {first.start_mark.line + 1}); "
                    "each key may appear once in a mapping: remove or rename one of them",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, path: Path) -> Any:
    try:
        loader = _UniqueKeyLoader(text)  # safe construction only: plain types, never objects
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(f"malformed YAML at {where}: {problem}") from None
    except ValueError as exc:  # PyYAML builds dates like 2020-02-30 and fails in datetime
        raise SuiteError(
            f"malformed YAML in {path}: {exc}; quote the value if it is not meant as a date"
        ) from None
    except RecursionError:
        raise SuiteError(f"malformed YAML in {path}: nested too deeply") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"malformed JSON at {path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    except _DuplicateKey as dup:
        # json reports no position for a valid-but-duplicated key; JSON is YAML, so the YAML
        # reader finds the line (its message names the first occurrence too).
        try:
            _read_yaml(text, path)
        except SuiteError as exc:
            if "duplicate key" in str(exc):
                raise SuiteError(str(exc).replace("malformed YAML", "malformed JSON")) from None
        raise SuiteError(
            f"malformed JSON in {path}: duplicate key {dup.key!r}; each key may appear once in "
            "an object: remove or rename one of them"
        ) from None
    except RecursionError:
        raise SuiteError(f"malformed JSON in {path}: nested too deeply") from None


def suite_from_dict(data: Any, *, name: str = "suite", path: Path | None = None) -> Suite:
    """A :class:`Suite` from the mapping a suite file holds; its shape is checked here, its keys
    against the stage's config when it is planned (:func:`expand`)."""
    where = str(path) if path else "suite"
    if not isinstance(data, Mapping):
        raise SuiteError(
            f"{where}: a suite is a mapping with keys {', '.join(SUITE_KEYS)}, got "
            f"{_shown(data)}; start from suites/example/polyfit.yaml"
        )
    _check_known(data, SUITE_KEYS, f"{where}: unknown suite key(s)")
    if "stage" not in data:
        raise SuiteError(f"{where}: missing 'stage' (the stage to run, e.g. 'volume.volume')")
    for key in ("name", "description"):
        value = data.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            raise SuiteError(f"{where}: '{key}' must be a string, got {_shown(value)}")
    return Suite(
        name=str(data.get("name") or name),
        stage=_check_stage(data["stage"], where),
        config=_check_config(data.get("config"), where),
        sweep=check_sweep(data.get("sweep"), where),
        imports=_check_imports(data.get("imports"), where),
        description=str(data.get("description") or ""),
        path=path,
        sinks=_check_sinks(data.get("sinks"), where),
    )


def _check_sinks(value: Any, where: str) -> tuple[str, ...]:
    from ..sinks import SinkError, parse_sinks

    try:
        return parse_sinks(value)
    except SinkError as exc:
        raise SuiteError(f"{where}: 'sinks': {exc}") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_known(mapping: Mapping, valid: Sequence[str], what: str) -> None:
    unknown = sorted((k for k in mapping if k not in valid), key=repr)
    if unknown:
        raise SuiteError(f"{what} {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")


def _check_stage(stage: Any, where: str) -> str:
    if not isinstance(stage, str) or not stage.strip():
        raise SuiteError(
            f"{where}: 'stage' must be a stage name such as 'example.fit', got {_shown(stage)}; "
            "`assay stages` lists them"
        )
    return stage


def _check_config(config: Any, where: str) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise SuiteError(
            f"{where}: 'config' must be a mapping of config keys to values, got {_shown(config)}"
        )
    return dict(config)


def _check_imports(imports: Any, where: str) -> tuple[str, ...]:
    if imports is None:
        return ()
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, list | tuple):
        raise SuiteError(
            f"{where}: 'imports' must be a list of module names, got {_shown(imports)}; "
            "write imports: [mypackage.stages]"
        )
    for module in imports:
        check_module_name(module, f"{where}: 'imports'", SuiteError)
    return tuple(imports)


def check_module_name(module: Any, what: str, error: type[Exception] = ConfigError) -> None:
    """Refuse a module name Python cannot import (``5``, ``""``, ``.x``, ``a..b``)."""
    if not isinstance(module, str) or not all(p.isidentifier() for p in module.split(".")):
        raise error(
            f"{what}: {_shown(module)} is not a module name; write dotted Python identifiers "
            "such as 'mypackage.stages' (the module that registers the stage)"
        )


def check_sweep(sweep: Any, where: str = "suite") -> dict[str, Any]:
    """The sweep with its shape checked: ``grid``/``zip`` map key names to non-empty lists
    (``zip``'s of one length), ``variants`` is a non-empty list of mappings, ``seeds`` a
    non-empty list of integers. Keys are checked against a stage by :func:`expand`."""
    if sweep is None:
        return {}
    if not isinstance(sweep, Mapping):
        raise SuiteError(
            f"{where}: 'sweep' must be a mapping with keys {', '.join(SWEEP_KEYS)}, got "
            f"{_shown(sweep)}"
        )
    _check_known(sweep, SWEEP_KEYS, f"{where}: unknown sweep key(s)")
    out: dict[str, Any] = {}
    for part in ("grid", "zip"):
        axes = sweep.get(part)
        if axes is None:
            continue
        if not isinstance(axes, Mapping):
            raise SuiteError(
                f"{where}: sweep '{part}' must be a mapping of config keys to lists of values, "
                f"got {_shown(axes)}; write {part}: {{degree: [1, 3]}}"
            )
        for key, values in axes.items():
            _check_sweep_key(key, f"{where}: sweep '{part}'")
            if not isinstance(values, list) or not values:
                raise SuiteError(
                    f"{where}: sweep {part} '{key}' must be a non-empty list of values, got "
                    f"{_shown(values)}; write {key}: [{_shown(values)}] for one value"
                )
        if part == "zip" and len({len(v) for v in axes.values()}) > 1:
            lengths = {k: len(v) for k, v in axes.items()}
            raise SuiteError(
                f"{where}: sweep 'zip' needs lists of equal length; got lengths {lengths}; "
                "pad the lists or move keys to 'grid'"
            )
        out[part] = dict(axes)
    listed = sweep.get("variants")
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            raise SuiteError(
                f"{where}: sweep 'variants' must be a non-empty list of mappings, got "
                f"{_shown(listed)}; list at least one ({{x: 1}}), or remove 'variants' for "
                "the base config alone"
            )
        for variant in listed:
            if not isinstance(variant, Mapping):
                raise SuiteError(
                    f"{where}: each of sweep 'variants' must be a mapping of config keys to "
                    f"values, got {_shown(variant)}; write variants: [{{x: 1}}, {{x: 2}}]"
                )
            for key in variant:
                _check_sweep_key(key, f"{where}: sweep 'variants'")
        out["variants"] = [dict(v) for v in listed]
    seeds = sweep.get("seeds")
    if seeds is not None:
        out["seeds"] = check_seeds(seeds, where)
    return out


def check_seeds(seeds: Any, where: str = "suite") -> list[int]:
    if not isinstance(seeds, list | tuple) or not seeds or any(type(s) is not int for s in seeds):
        raise SuiteError(
            f"{where}: sweep 'seeds' must be a non-empty list of integers, got {_shown(seeds)}; "
            "write seeds: [0, 1, 2]"
        )
    return list(seeds)


def _check_sweep_key(key: Any, what: str) -> None:
    if not isinstance(key, str) or not key:
        raise SuiteError(
            f"{what}: key {_shown(key)} is not a config key name; keys are strings such as "
            "'degree' or 'data.n_train' (quote numbers)"
        )


def resolve_stage(suite: Suite, imports: Sequence[str] = (), trust_imports: bool = False) -> Stage:
    """The suite's stage. The suite file's ``imports:`` are user code: they are imported only
    when the user names them too (``--import``) or passes ``--trust-imports``."""
    where = str(suite.path or suite.name)
    for module in imports:
        check_module_name(module, "--import")
    suite_imports = _check_imports(suite.imports, where)
    import_modules(list(imports))
    trusted = [m for m in suite_imports if trust_imports or m in imports]
    import_modules(trusted)
    try:
        return get_stage(_check_stage(suite.stage, where))
    except StageNotFoundError:
        untrusted = [m for m in suite_imports if m not in trusted]
        if not untrusted:
            raise
        flags = " ".join(f"--import {m}" for m in untrusted)
        raise SuiteError(
            f"{where}: stage {suite.stage!r} comes from the suite's "
            f"imports: {', '.join(untrusted)}. assay imports user code only when you name it: "
            f"rerun with {flags} (or --trust-imports to accept every module the suite lists)"
        ) from None


def expand(
    suite: Suite,
    overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    *,
    imports: Sequence[str] = (),
    trust_imports: bool = False,
    max_runs: int | None = None,
) -> list[PlannedRun]:
    """Every run of ``suite`` with ``overrides`` applied, each with its upstream runs.

    A plan of more than ``max_runs`` runs is refused before any run is built.
    """
    where = str(suite.path or suite.name)
    entry = resolve_stage(suite, imports, trust_imports)
    cls = entry.config_cls
    # A Suite may be built in Python, not read from a file: check its shape here as well.
    sweep = check_sweep(copy.deepcopy(suite.sweep), where)
    base = _check_config(copy.deepcopy(suite.config), where)
    fixed: dict[str, Any] = {}
    grid = dict(sweep.get("grid") or {})
    for text in overrides:
        key, values = parse_override(text)
        check_key(cls, key, stage=entry.name)
        if len(values) == 1:
            fixed[key] = values[0]
            grid.pop(key, None)
        else:
            grid[key] = values
    if seeds is not None:
        sweep["seeds"] = check_seeds(seeds, "--seeds")
    seed_list = sweep.get("seeds")
    _check_size(where, grid, sweep, len(seed_list or [None]), max_runs)
    variants = _variants(grid, sweep, entry)
    # relative paths in the config (a data file, a model folder) are the suite file's neighbours
    base_dir = suite.path.resolve().parent if suite.path is not None else None

    planned: list[PlannedRun] = []
    seen: set[str] = set()
    shared: dict[str, PlannedRun] = {}  # upstream runs common to many sweep points
    for params in variants:
        for seed in seed_list if seed_list is not None else [None]:
            data = copy.deepcopy(base)
            for key, value in {**params, **fixed}.items():
                set_dotted(data, key, value)
            shown = dict(params)
            if seed is not None:
                set_seed_everywhere(cls, data, seed)
                shown["seed"] = seed
            config = build_config(cls, data, stage=entry.name, base_dir=base_dir)
            run = plan_config(config, index=len(planned), params=shown, _cache=shared)
            if not trust_imports:
                _refuse_named_code(run, where)
            if run.id not in seen:  # two sweep points giving one config are one run
                seen.add(run.id)
                planned.append(run)
    return planned


def _refuse_named_code(run: PlannedRun, where: str) -> None:
    """A config read from a file may not name code to run unless the user vouches for the file
    (``--trust-imports``), exactly as for the suite's ``imports:`` (``StageConfig.code_named``)."""
    named = [f"{r.stage}: {line}" for r in run.closure() for line in r.config.code_named()]
    if named:
        raise SuiteError(
            f"{where}: the config names code to run ({'; '.join(named)}). assay runs code named "
            "by a file only on your word: if you trust the file, rerun with --trust-imports; "
            "otherwise remove it from the config"
        )


def _check_size(
    where: str,
    grid: Mapping[str, list],
    sweep: Mapping[str, Any],
    n_seeds: int,
    max_runs: int | None,
) -> None:
    """Refuse a sweep whose product exceeds ``max_runs`` before building a single config."""
    if max_runs is None:
        return
    n = n_seeds
    for values in grid.values():
        n *= len(values)
    zipped = sweep.get("zip") or {}
    n *= len(next(iter(zipped.values()))) if zipped else 1
    n *= len(sweep.get("variants") or [{}])
    if n > max_runs:
        raise SuiteError(
            f"{where}: the sweep plans {n:,} runs, above the limit of "
            f"{max_runs:,}; narrow the sweep, split it into several suites, or raise the limit "
            "with --max-runs"
        )


def _variants(grid: Mapping[str, list], sweep: Mapping[str, Any], entry: Stage) -> list[dict]:
    """The sweep points (before seeds): grid x zip x variants, their keys checked."""
    zipped = sweep.get("zip") or {}
    listed = sweep.get("variants") or [{}]
    for key in [*grid, *zipped, *(k for v in listed for k in v)]:
        check_key(entry.config_cls, key, stage=entry.name)
    axes = [[(k, v) for v in values] for k, values in grid.items()]
    grid_points = [dict(p) for p in itertools.product(*axes)] if axes else [{}]
    n_zip = len(next(iter(zipped.values()))) if zipped else 0
    zip_points = [{k: zipped[k][i] for k in zipped} for i in range(n_zip)] if zipped else [{}]
    return [{**g, **z, **v} for g in grid_points for z in zip_points for v in listed]


def select(runs: list[PlannedRun], *, shard: str | None, start: int | None, end: int | None):
    """The runs of one invocation: ``--start-index A --end-index B`` then ``--shard i/n``."""
    n = len(runs)
    lo = 0 if start is None else start
    hi = n if end is None else end
    if not (0 <= lo <= n) or not (lo <= hi):
        raise ConfigError(
            f"index range [{start}, {end}) is invalid for a suite of {n} runs; "
            f"use 0 <= start-index <= end-index (end-index may exceed {n})"
        )
    chosen = [r for r in runs if lo <= r.index < hi]
    if shard is not None:
        i, n_shards = parse_shard(shard)
        chosen = [r for r in chosen if r.index % n_shards == i]
    return chosen


def parse_shard(spec: str) -> tuple[int, int]:
    """``i/n`` with 0 <= i < n: this invocation runs every run whose index % n == i."""
    try:
        i_text, n_text = spec.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError(f"cannot read shard {spec!r}; write i/n, e.g. --shard 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(
            f"shard {spec!r} is out of range: with n={n} shards the index i must be in "
            f"0..{max(n - 1, 0)} (shards are numbered from 0), e.g. --shard 0/{max(n, 1)}"
        )
    return i, n
