"""The executor contract and registry: where planned runs execute.

An executor is one class with one method, :meth:`Executor.map` (planned runs in, outcomes out as
they finish), and a table of the ``--cluster`` parameters it accepts. Executors register through
the ``assay.executors`` entry-point group, assay's own included, so a new backend is one module
and one line of ``pyproject.toml``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from .._engine._errors import ConfigError
from .._engine._run import Outcome
from .._engine._spec import PlannedRun

if TYPE_CHECKING:
    from .._engine._options import RunOptions

ENTRY_POINT_GROUP = "assay.executors"


class Executor(abc.ABC):
    """Runs planned runs; yields one :class:`Outcome` per top-level run as it finishes.

    Subclasses set ``name`` and ``params`` (parameter -> (meaning, type)) and write ``map``.
    Every executor sends the planned runs themselves to its workers, which execute them through
    :func:`assay._engine._worker.execute_chunk`, the one worker entry.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, tuple[str, type]]] = {}

    def __init__(self, options: RunOptions, modules: Sequence[str] = ()) -> None:
        self.options = options
        self.modules = tuple(modules)

    @abc.abstractmethod
    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]: ...

    @classmethod
    def parse_params(cls, items: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
        """Check ``key=value`` parameters against ``params`` and convert them."""
        pairs = items.items() if isinstance(items, Mapping) else [split_pair(i) for i in items]
        out = {}
        for key, value in pairs:
            if key not in cls.params:
                valid = ", ".join(f"{k} ({v[0]})" for k, v in cls.params.items()) or "none"
                raise ConfigError(
                    f"unknown --cluster key {key!r} for executor {cls.name!r}; valid: {valid}"
                )
            kind = cls.params[key][1]
            try:
                out[key] = value if isinstance(value, kind) else kind(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"--cluster {key}={value!r}: expected a {kind.__name__} ({cls.params[key][0]})"
                ) from None
        return out


def split_pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"cannot read --cluster {item!r}; write key=value, e.g. partition=gpu")
    return key.strip(), value.strip()


_CLASSES: dict[str, type[Executor]] = {}


def executor_names() -> list[str]:
    """Every registered executor name (from the ``assay.executors`` entry points)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def executor_class(name: str) -> type[Executor]:
    """The executor registered as ``name``; an unknown name fails with the valid ones."""
    if name in _CLASSES:
        return _CLASSES[name]
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ConfigError(
            f"unknown executor {name!r}; valid: {', '.join(executor_names()) or 'none'} "
            "(a package adds one through the 'assay.executors' entry-point group)"
        )
    cls = found[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ConfigError(f"executor {name!r} ({found[0].value}) is not an assay Executor class")
    _CLASSES[name] = cls
    return cls


def make_executor(options: RunOptions, modules: Sequence[str] = ()) -> Executor:
    """The executor named by ``options.executor``."""
    return executor_class(options.executor)(options, modules)
