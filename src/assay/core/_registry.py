"""Stages and families: what can be run, found by name.

A *stage* is a named function ``run(config, run) -> results`` with a config class. A *family*
groups stages and registers through the ``assay.families`` entry-point group; its modules are
imported only when one of its stages is looked up, so ``import assay`` stays fast.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from ._config import SeededConfig, StageConfig, declare_replicates
from ._errors import AssayError, FamilyNotFoundError, StageNotFoundError

logger = logging.getLogger("assay")

ENTRY_POINT_GROUP = "assay.families"


@dataclasses.dataclass(frozen=True)
class Stage:
    """A registered stage. Build with the :func:`stage` decorator."""

    name: str
    fn: Callable[..., Mapping[str, Any] | None]
    config_cls: type[StageConfig]
    version: int = 1
    smoke: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    isolate: bool = False
    description: str = ""
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    check: Callable[..., None] | None = None
    check_takes_plan: bool = False  # check(config, plan) rather than check(config)

    @property
    def module(self) -> str:
        return self.fn.__module__


_STAGES: dict[str, Stage] = {}
_BY_CONFIG: dict[type[StageConfig], Stage] = {}


def stage(
    name: str,
    *,
    config: type[StageConfig],
    version: int = 1,
    smoke: Mapping[str, Any] | None = None,
    isolate: bool = False,
    resources: Mapping[str, Any] | None = None,
    check: Callable[..., None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(config, run) -> dict`` as stage ``name``.

    Args:
        name: stable dotted name, ``<family>.<step>``; it is stored with every run.
        config: the stage's :class:`StageConfig` subclass (one class per stage).
        version: bump when the code or a default's meaning changes results; part of the run id.
        smoke: overrides of the config defaults that make a run finish in seconds.
        isolate: the stage must run in a process of its own.
        resources: what one run needs on a cluster (``cpus``, ``gpus``, ``mem_gb``,
            ``timeout_min``, ``partition``); ``--cluster key=value`` overrides.
        check: ``check(config)`` or ``check(config, plan)``, run for every planned run of the
            stage before any run starts (``--dry-run`` too); it raises ``ValueError`` or an
            ``AssayError`` whose message names the value, the valid choices and the fix. It may
            read cheap metadata (a model folder's config.json, a file's header) and, through
            ``plan.finished(upstream_config)``, an upstream run's record. See assay.engine._checks.
    """
    if not (isinstance(config, type) and issubclass(config, StageConfig)):
        raise TypeError(f"stage {name!r}: config must be a StageConfig subclass, got {config!r}")
    if "seed" in config.model_fields and not issubclass(config, SeededConfig):
        raise AssayError(
            f"stage {name!r}: config {config.__name__} declares 'seed' but derives from plain "
            "StageConfig, so nothing would be seeded from it; derive it from assay.SeededConfig "
            "(or assay.ml.TorchConfig), which declares seed and seeds python, numpy and torch "
            "before each run, or rename the field if it is not a replicate seed"
        )
    takes_plan = _check_arity(name, check)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        entry = Stage(
            name=name,
            fn=fn,
            config_cls=config,
            version=version,
            smoke=dict(smoke or {}),
            isolate=isolate,
            description=(fn.__doc__ or "").strip().split("\n")[0],
            resources=dict(resources or {}),
            check=check,
            check_takes_plan=takes_plan,
        )
        old = _STAGES.get(name)
        if old is not None and (old.module, old.fn.__qualname__) != (
            entry.module,
            fn.__qualname__,
        ):
            raise AssayError(
                f"stage name {name!r} is registered twice: by {old.module}.{old.fn.__qualname__} "
                f"and by {entry.module}.{fn.__qualname__}; stage names must be unique"
            )
        other = _BY_CONFIG.get(config)
        if other is not None and other.name != name:
            raise AssayError(
                f"config class {config.__name__} serves stages {other.name!r} and {name!r}; "
                "give each stage a config class of its own"
            )
        _STAGES[name] = entry
        _BY_CONFIG[config] = entry
        declare_replicates(config)  # the one replicate rule learns this config's declarations
        return fn

    return register


def _check_arity(name: str, check: Callable[..., None] | None) -> bool:
    """Whether ``check`` takes ``(config, plan)``; it must take ``(config)`` or that."""
    if check is None:
        return False
    if not callable(check):
        raise TypeError(f"stage {name!r}: check must be a function check(config), got {check!r}")
    params = [
        p
        for p in inspect.signature(check).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(params) not in (1, 2):
        raise TypeError(
            f"stage {name!r}: check must take (config) or (config, plan), "
            f"not {len(params)} arguments"
        )
    return len(params) == 2


@dataclasses.dataclass(frozen=True)
class Family:
    """A group of stages shipped together and found through the ``assay.families`` entry point.

    Attributes:
        name: the family's name; its stages are named ``<name>.<step>``.
        description: one line shown by ``assay families``.
        modules: modules that register the family's stages when imported.
        cli: optional ``"module:function"``; ``function(parser)`` adds ``assay <name> ...`` commands.
        analyze: optional ``"module:function"``; ``function(records, out_dir)`` adds
            family-specific output to ``assay analyze`` for the family's runs.
        report: optional ``"module:function"``; ``function(records)`` returns a list of
            ``assay.report.ReportSection`` for ``assay report`` (without it the report embeds
            what the analyze hook prints and writes).
    """

    name: str
    description: str
    modules: tuple[str, ...] | list[str] = ()
    cli: str | None = None
    analyze: str | None = None
    report: str | None = None

    def load(self) -> None:
        for module in self.modules:
            importlib.import_module(module)

    def resolve(self, attr: str) -> Callable[..., Any] | None:
        spec = getattr(self, attr)
        if spec is None:
            return None
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)


_FAMILIES: dict[str, Family] | None = None
_BROKEN: dict[str, str] = {}


def families() -> dict[str, Family]:
    """All installed families by name. A family that fails to load is skipped with a log line."""
    global _FAMILIES
    if _FAMILIES is None:
        found: dict[str, Family] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                fam = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                _BROKEN[ep.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("skipping family %r: cannot load %s (%s)", ep.name, ep.value, exc)
                continue
            if not isinstance(fam, Family):
                _BROKEN[ep.name] = f"{ep.value} is a {type(fam).__name__}, not an assay.Family"
                logger.warning("skipping family %r: %s", ep.name, _BROKEN[ep.name])
                continue
            found[fam.name] = fam
        _FAMILIES = found
    return _FAMILIES


def broken_families() -> dict[str, str]:
    families()
    return dict(_BROKEN)


def get_family(name: str) -> Family:
    fams = families()
    if name not in fams:
        raise FamilyNotFoundError(
            f"unknown family {name!r}; installed families: {', '.join(sorted(fams)) or 'none'}"
        )
    return fams[name]


def get_stage(name: str) -> Stage:
    """Look a stage up by name, importing its family's modules on first use."""
    if name in _STAGES:
        return _STAGES[name]
    family_name = name.split(".", 1)[0]
    fams = families()
    if family_name in fams:
        fams[family_name].load()
        if name in _STAGES:
            return _STAGES[name]
    raise StageNotFoundError(
        f"unknown stage {name!r}; available stages: {', '.join(all_stage_names()) or 'none'}"
    )


def all_stage_names() -> list[str]:
    """Every stage name, loading each family (a family that fails to import is skipped)."""
    for fam in families().values():
        try:
            fam.load()
        except Exception as exc:
            logger.warning("skipping family %r: %s", fam.name, exc)
    return sorted(_STAGES)


def stage_for_config(config: StageConfig) -> Stage:
    entry = _BY_CONFIG.get(type(config))
    if entry is None:
        raise StageNotFoundError(
            f"config class {type(config).__name__} is not registered to any stage; "
            "decorate the stage function with @assay.stage(name, config=...)"
        )
    return entry


def import_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules that register stages (``imports:`` in a suite, ``--import``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise StageNotFoundError(
                f"cannot import module {module!r} named in 'imports' ({exc}); "
                "check the name and that its folder is on PYTHONPATH or the working directory"
            ) from None


list_families = families  # the public name: `assay.families` is the package of our families
