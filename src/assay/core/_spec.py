"""The run spec: everything a worker needs to execute one run, planned once.

Planning computes each run's stage, id, config and upstream tree a single time. The frozen
:class:`PlannedRun` then crosses every boundary as it is (threads, the process pool, submitit
jobs, Ray tasks, the timeout child): it pickles to its canonical config JSON, and a worker
validates that JSON back into the typed config once, on first use. Nothing downstream recomputes
an id or walks a config for its upstream runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from ._config import StageConfig, run_id
from ._errors import ConfigError
from ._registry import get_stage, stage_for_config


@dataclasses.dataclass(frozen=True)
class UpstreamLink:
    """One upstream run of a spec and where it goes in ``run.upstream``.

    ``key`` is None for a single config (``run.upstream[name]``), an int for a list entry and a
    string for a dict entry.
    """

    name: str
    key: str | int | None
    run: PlannedRun


@dataclasses.dataclass(frozen=True, eq=False)
class PlannedRun:
    """One run of a plan: index in the suite, id, stage, config, what varies, upstream runs."""

    index: int
    id: str
    stage: str
    params: dict[str, Any]
    upstream: tuple[UpstreamLink, ...] = ()
    _config: StageConfig | None = dataclasses.field(default=None, repr=False, compare=False)
    _config_json: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def config(self) -> StageConfig:
        """The typed config, validated from its JSON once per process."""
        if self._config is None:
            cls = get_stage(self.stage).config_cls
            object.__setattr__(self, "_config", cls.model_validate_json(self.config_json))
        return self._config  # type: ignore[return-value]

    @property
    def config_json(self) -> str:
        """The full config as JSON, serialised once, when first needed (a dry run never)."""
        if self._config_json is None:
            object.__setattr__(self, "_config_json", self.config.model_dump_json())
        return self._config_json  # type: ignore[return-value]

    def closure(self) -> list[PlannedRun]:
        """Upstream runs first (depth-first, each once), then this run."""
        out: list[PlannedRun] = []
        seen: set[str] = set()
        for run in self._walk():
            if run.id not in seen:
                seen.add(run.id)
                out.append(run)
        return out

    def _walk(self) -> Iterator[PlannedRun]:
        for link in self.upstream:
            yield from link.run._walk()
        yield self

    def __getstate__(self) -> dict[str, Any]:
        # Only JSON crosses a process boundary: the worker validates it into its own config.
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state.update(_config=None, _config_json=self.config_json)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlannedRun) and (self.id, self.index) == (other.id, other.index)

    def __hash__(self) -> int:
        return hash((self.id, self.index))


def plan_config(
    config: StageConfig,
    *,
    index: int = 0,
    params: dict[str, Any] | None = None,
    _cache: dict[str, PlannedRun] | None = None,
) -> PlannedRun:
    """The planned run of one config, its upstream configs planned recursively.

    ``_cache`` shares upstream specs between the runs of one plan (a data stage used by every
    run of a sweep is planned once).
    """
    entry = stage_for_config(config)
    rid = run_id(entry.name, entry.version, config)
    links: list[UpstreamLink] = []
    for name, value in config.upstream().items():
        for key, sub in _upstream_items(value, name):
            sub_entry = stage_for_config(sub)
            sub_id = run_id(sub_entry.name, sub_entry.version, sub)
            planned = _cache.get(sub_id) if _cache is not None else None
            if planned is None:
                planned = plan_config(sub, index=index, _cache=_cache)
                if _cache is not None:
                    _cache[sub_id] = planned
            links.append(UpstreamLink(name, key, planned))
    return PlannedRun(
        index=index,
        id=rid,
        stage=entry.name,
        params=dict(params or {}),
        upstream=tuple(links),
        _config=config,
    )


def _upstream_items(value: Any, name: str) -> list[tuple[str | int | None, StageConfig]]:
    if isinstance(value, StageConfig):
        return [(None, value)]
    if isinstance(value, list | tuple):
        items: list[tuple[str | int | None, Any]] = list(enumerate(value))
    elif isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        items = [(None, value)]
    if not all(isinstance(v, StageConfig) for _, v in items):
        raise ConfigError(
            f"upstream {name!r} must be a stage config, or a list or dict of them; got {value!r:.80}"
        )
    return items
