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

from ._config import (
    StageConfig,
    build_config,
    check_key,
    parse_override,
    run_id,
    set_dotted,
    set_seed_everywhere,
)
from ._errors import ConfigError, StageNotFoundError, SuiteError
from ._registry import Stage, get_stage, import_modules
from ._spec import PlannedRun, plan_config

SUITE_KEYS = ("name", "description", "stage", "config", "sweep", "imports")
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


def load_suite(path: str | Path) -> Suite:
    """Read a suite file; malformed files fail with the file, line and problem."""
    path = Path(path)
    if not path.exists():
        raise SuiteError(f"suite file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise SuiteError(
                f"suite file {str(path)!r} has suffix {suffix!r}; use .yaml, .yml, .json or .toml"
            )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(f"malformed YAML at {where}: {problem}") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"malformed JSON at {path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"malformed TOML in {path}: {exc}") from None
    return suite_from_dict(data, name=path.stem, path=path)


def suite_from_dict(data: Any, *, name: str = "suite", path: Path | None = None) -> Suite:
    where = str(path) if path else "suite"
    if not isinstance(data, Mapping):
        raise SuiteError(f"{where}: a suite is a mapping with keys {', '.join(SUITE_KEYS)}")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise SuiteError(
            f"{where}: unknown suite key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(SUITE_KEYS)}"
        )
    if "stage" not in data:
        raise SuiteError(f"{where}: missing 'stage' (the stage to run, e.g. 'volume.volume')")
    sweep = data.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise SuiteError(f"{where}: 'sweep' must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    bad = sorted(set(sweep) - set(SWEEP_KEYS))
    if bad:
        raise SuiteError(
            f"{where}: unknown sweep key(s) {', '.join(map(repr, bad))}; "
            f"valid keys: {', '.join(SWEEP_KEYS)}"
        )
    config = data.get("config") or {}
    if not isinstance(config, Mapping):
        raise SuiteError(f"{where}: 'config' must be a mapping of config keys to values")
    imports = data.get("imports") or []
    if isinstance(imports, str):
        imports = [imports]
    return Suite(
        name=str(data.get("name") or name),
        stage=str(data["stage"]),
        config=dict(config),
        sweep=dict(sweep),
        imports=tuple(imports),
        description=str(data.get("description") or ""),
        path=path,
    )


def resolve_stage(suite: Suite, imports: Sequence[str] = (), trust_imports: bool = False) -> Stage:
    """The suite's stage. The suite file's ``imports:`` are user code: they are imported only
    when the user names them too (``--import``) or passes ``--trust-imports``."""
    import_modules(list(imports))
    trusted = [m for m in suite.imports if trust_imports or m in imports]
    import_modules(trusted)
    try:
        return get_stage(suite.stage)
    except StageNotFoundError:
        untrusted = [m for m in suite.imports if m not in trusted]
        if not untrusted:
            raise
        flags = " ".join(f"--import {m}" for m in untrusted)
        raise SuiteError(
            f"{suite.path or suite.name}: stage {suite.stage!r} comes from the suite's "
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
    entry = resolve_stage(suite, imports, trust_imports)
    cls = entry.config_cls
    sweep = copy.deepcopy(suite.sweep)
    base = copy.deepcopy(suite.config)
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
        sweep["seeds"] = list(seeds)
    seed_list = sweep.get("seeds")
    if seed_list is not None and (
        not isinstance(seed_list, list) or not all(type(s) is int for s in seed_list)
        or not seed_list
    ):
        raise SuiteError(f"sweep 'seeds' must be a non-empty list of integers, got {seed_list!r}")
    _check_size(suite, grid, sweep, len(seed_list or [None]), max_runs)
    variants = _variants(grid, sweep, entry)

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
            config = build_config(cls, data, stage=entry.name)
            run = plan_config(config, index=len(planned), params=shown, _cache=shared)
            if run.id not in seen:  # two sweep points giving one config are one run
                seen.add(run.id)
                planned.append(run)
    return planned


def _check_size(
    suite: Suite, grid: Mapping[str, Any], sweep: Mapping[str, Any], n_seeds: int,
    max_runs: int | None,
) -> None:
    """Refuse a sweep whose product exceeds ``max_runs`` before building a single config."""
    if max_runs is None:
        return
    n = n_seeds
    for values in grid.values():
        n *= len(values) if isinstance(values, list) else 1
    zipped = sweep.get("zip") or {}
    if isinstance(zipped, Mapping) and zipped:
        first = next(iter(zipped.values()))
        n *= len(first) if isinstance(first, list) else 1
    listed = sweep.get("variants")
    n *= len(listed) if isinstance(listed, list) and listed else 1
    if n > max_runs:
        raise SuiteError(
            f"{suite.path or suite.name}: the sweep plans {n:,} runs, above the limit of "
            f"{max_runs:,}; narrow the sweep, split it into several suites, or raise the limit "
            "with --max-runs"
        )


def _variants(grid: Mapping[str, Any], sweep: Mapping[str, Any], entry: Stage) -> list[dict]:
    for key, values in grid.items():
        check_key(entry.config_cls, key, stage=entry.name)
        if not isinstance(values, list) or not values:
            raise SuiteError(f"sweep grid '{key}' must be a non-empty list, got {values!r}")
    axes = [[(k, v) for v in values] for k, values in grid.items()]
    grid_points = [dict(p) for p in itertools.product(*axes)] if axes else [{}]

    zipped = sweep.get("zip") or {}
    zip_points: list[dict] = [{}]
    if zipped:
        lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in zipped.items()}
        if len(set(lengths.values())) != 1 or -1 in lengths.values():
            raise SuiteError(
                f"sweep 'zip' needs lists of equal length; got lengths {lengths}; "
                "pad the lists or move keys to 'grid'"
            )
        for key in zipped:
            check_key(entry.config_cls, key, stage=entry.name)
        n = next(iter(lengths.values()))
        zip_points = [{k: zipped[k][i] for k in zipped} for i in range(n)]

    listed = sweep.get("variants") or [{}]
    if not isinstance(listed, list) or not all(isinstance(v, Mapping) for v in listed):
        raise SuiteError(f"sweep 'variants' must be a list of mappings, got {listed!r}")
    for variant in listed:
        for key in variant:
            check_key(entry.config_cls, key, stage=entry.name)
    return [{**g, **z, **dict(v)} for g in grid_points for z in zip_points for v in listed]


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
