"""The store interface: the few methods a backend writes; conveniences are built on them."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core._errors import RunNotFoundError
from ..core._run import RunRecord, RunStatus


class Store(abc.ABC):
    """Indexes every run: identity, status, config, results, timings, attempts and heartbeat.

    Concurrency contract: :meth:`claim` is atomic. Of any number of processes (on any number of
    machines sharing the store) calling it for the same run, at most one gets an attempt number;
    the others get None. A backend implements it as compare-and-swap on the row. :meth:`finish`
    is fenced: it changes the row only while ``owner`` still holds that attempt, so a process
    whose run was taken over can never record a result.

    Run directories are stored relative to ``root`` (the run root the store was opened for), so
    a root can be moved or synced to another machine; records come back with absolute paths.
    """

    url: str
    root: Path | None = None

    @abc.abstractmethod
    def ensure(self, run_id: str, stage: str, config: str, dir: str) -> None:
        """Record the run as pending unless it is already recorded.

        ``config`` is the run's canonical JSON text, as planned (``PlannedRun.config_json``):
        a backend stores it as it is and returns it parsed (a dict) in :class:`RunRecord`.
        """

    @abc.abstractmethod
    def claim(
        self,
        run_id: str,
        owner: str,
        *,
        retry_failed: bool,
        stale_after_s: float,
        liveness: Callable[[str], bool | None],
        ensure: tuple[str, str, str] | None = None,
    ) -> int | None:
        """Take the run for ``owner``; return its attempt number, or None if it is not claimable.

        ``ensure``: ``(stage, config JSON text, dir)``; record the run as pending first if it
        is new (as :meth:`ensure` does).

        Claimable: pending; failed when ``retry_failed``; running when ``liveness(old_owner)``
        is False (its process is known dead), or is None (unknown: another host) and the
        heartbeat is older than ``stale_after_s``. A running run whose owner is known alive
        (True: a live process on this host, even one stopped or swapping) is never taken.
        """

    @abc.abstractmethod
    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Refresh the run's heartbeat; False when ``owner`` no longer holds the run."""

    @abc.abstractmethod
    def finish(
        self,
        run_id: str,
        owner: str,
        status: RunStatus,
        *,
        attempt: int | None = None,
        results: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of ``owner``'s attempt (done, failed, or back to pending).

        Changes the row only while it is running, held by ``owner`` and (when given) at
        ``attempt``; returns False, changing nothing, when the run was taken over.
        """

    @abc.abstractmethod
    def query(
        self,
        *,
        ids: Iterable[str] | None = None,
        stage: str | None = None,
        status: RunStatus | None = None,
        light: bool = False,
    ) -> list[RunRecord]:
        """Records matching every given filter, oldest first.

        ``light``: leave config and results out (``{}`` and None): listing 20,000 runs'
        states should not parse 20,000 configs.
        """

    @abc.abstractmethod
    def put(self, record: RunRecord) -> None:
        """Insert or replace a record as it is (used by ``assay reindex``)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- conveniences ------------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord | None:
        found = self.query(ids=[run_id])
        return found[0] if found else None

    def get_many(self, ids: Iterable[str], *, light: bool = False) -> dict[str, RunRecord]:
        return {r.id: r for r in self.query(ids=list(ids), light=light)}

    def states(self, ids: Iterable[str]) -> dict[str, RunStatus]:
        """The status of each recorded run among ``ids`` (a plan's states in one query)."""
        return {r.id: r.status for r in self.query(ids=list(ids), light=True)}

    def find(self, id_or_prefix: str) -> RunRecord:
        """The run whose id is or starts with ``id_or_prefix`` (unique prefix required)."""
        exact = self.get(id_or_prefix)
        if exact is not None:
            return exact
        matches = [r for r in self.query() if r.id.startswith(id_or_prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFoundError(
                f"no run with id or prefix {id_or_prefix!r} in {self.url}; `assay ls` lists runs"
            )
        raise RunNotFoundError(
            f"{id_or_prefix!r} matches {len(matches)} runs "
            f"({', '.join(r.id for r in matches[:5])}...); give more of the id"
        )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
