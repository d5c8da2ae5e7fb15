"""The executor contract and registry: where planned runs execute.

An executor is one class with one method, :meth:`Executor.map` (planned runs in, outcomes out as
they finish), and a table of the ``--cluster`` parameters it accepts. Executors register through
the ``assay.executors`` entry-point group, assay's own included, so a new backend is one module
and one line of ``pyproject.toml``.

Executors sit below the engine and never import it: the engine hands each executor its worker
entry (:class:`WorkerEntry`) through the constructor, and executors import only ``assay.core``
and the store (the medium workers coordinate through: claims, a dead worker's run, a SLURM
job's records).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from ..core._errors import ConfigError
from ..core._options import RunOptions, split_pair
from ..core._plugins import PluginRegistry
from ..core._run import Outcome
from ..core._spec import PlannedRun

ENTRY_POINT_GROUP = "assay.executors"


@dataclasses.dataclass(frozen=True)
class WorkerEntry:
    """The engine's worker entry, handed to every executor (executors never import the engine).

    Attributes:
        execute_chunk: ``execute_chunk(runs, options, modules) -> outcomes``: execute planned
            runs in this process (a pool worker, a SLURM job, a Ray task) after importing
            ``modules``. A module-level function, so it pickles by reference into any process.
        run_inline: ``run_inline(runs, options) -> outcomes``: execute in this process, each
            outcome yielded as its run finishes.
    """

    execute_chunk: Callable[[Sequence[PlannedRun], RunOptions, Sequence[str]], list[Outcome]]
    run_inline: Callable[[Sequence[PlannedRun], RunOptions], Iterator[Outcome]]


class Executor(abc.ABC):
    """Runs planned runs; yields one :class:`Outcome` per top-level run as it finishes.

    Subclasses set ``name`` and ``params`` (parameter -> (meaning, type)) and write ``map``.
    Every executor sends the planned runs themselves to its workers, which execute them through
    ``worker.execute_chunk`` (the engine's :func:`assay.engine._worker.execute_chunk`), the one
    worker entry.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, tuple[str, type]]] = {}

    def __init__(
        self, options: RunOptions, worker: WorkerEntry, modules: Sequence[str] = ()
    ) -> None:
        self.options = options
        self.worker = worker
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


EXECUTORS: PluginRegistry[Executor] = PluginRegistry(ENTRY_POINT_GROUP, Executor, "executor")


def executor_names() -> list[str]:
    """Every registered executor name (from the ``assay.executors`` entry points)."""
    return EXECUTORS.names()


def executor_class(name: str) -> type[Executor]:
    """The executor registered as ``name``; an unknown name fails with the valid ones."""
    return EXECUTORS.get(name)


def make_executor(
    options: RunOptions, worker: WorkerEntry, modules: Sequence[str] = ()
) -> Executor:
    """The executor named by ``options.executor``, executing through ``worker``."""
    return executor_class(options.executor)(options, worker, modules)
