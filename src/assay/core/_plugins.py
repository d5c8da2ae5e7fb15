"""Plug-ins by name through an entry-point group: one lookup for executors and sinks alike.

A plug-in family (``assay.executors``, ``assay.sinks``) is a base class and an entry-point group;
assay's own backends register the same way a third-party one does. Listing reads the entry
points; looking one up by name loads it once, checks it is a subclass of the base, and fails
with the valid names when it is unknown.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, cast

from ._errors import ConfigError

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """The plug-ins of one entry-point ``group``, each a subclass of ``base``.

    Args:
        group: the entry-point group (``assay.executors``).
        base: the class every plug-in derives from.
        what: the word the messages use (``executor``).
        hint: how a user names one, shown after the valid names (``e.g. --sink wandb,mlflow``).
        error: the exception raised for an unknown or broken name.
    """

    def __init__(
        self,
        group: str,
        base: type,
        what: str,
        *,
        hint: str = "",
        error: type[ConfigError] = ConfigError,
    ) -> None:
        self.group, self.base, self.what, self.hint, self.error = group, base, what, hint, error
        self._classes: dict[str, type[T]] = {}  # loaded ones, and any added in-process

    def names(self) -> list[str]:
        """Every registered name (the entry points and any added in-process)."""
        return sorted({ep.name for ep in entry_points(group=self.group)} | set(self._classes))

    def add(self, name: str, cls: type[T]) -> None:
        """Register ``cls`` as ``name`` in this process (tests, notebooks)."""
        self._classes[name] = cls

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name fails with the valid ones."""
        if name in self._classes:
            return self._classes[name]
        found = [ep for ep in entry_points(group=self.group) if ep.name == name]
        if not found:
            hint = f"{self.hint}; " if self.hint else ""
            raise self.error(
                f"unknown {self.what} {name!r}; valid: {', '.join(self.names()) or 'none'} "
                f"({hint}a package adds one through the {self.group!r} entry-point group)"
            )
        cls: Any = found[0].load()
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise self.error(
                f"{self.what} {name!r} ({found[0].value}) is not an assay "
                f"{self.base.__name__} class"
            )
        plugin = cast("type[T]", cls)
        self._classes[name] = plugin
        return plugin
