"""Plan-time checks: a stage's ``check`` hook runs for every planned run before any run starts.

A config's types and ranges are validated when it is built; what needs the world outside the
config (a model folder's ``config.json``, a data file's shape, an upstream run's recorded
results) is a stage's ``check(config)`` or ``check(config, plan)``. The engine calls it once per
planned run, upstream runs included, for ``assay run`` and ``assay run --dry-run`` alike, so a
value that can never work is refused with exit 2 and nothing recorded, instead of becoming a
failed run to ``--retry-failed`` in vain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._config import StageConfig, run_id
from ..core._errors import AssayError, ConfigError
from ..core._registry import get_stage, stage_for_config
from ..core._run import RunRecord, RunStatus
from ..store import Store, resolve_store

if TYPE_CHECKING:
    from ..core._spec import PlannedRun


class PlanCheckError(ConfigError):
    """A planned run's check refused its config; nothing was run or recorded."""


@dataclasses.dataclass(frozen=True)
class PlanContext:
    """What a check may read besides the config: the store's records of other runs.

    Attributes:
        store: the run store, or None when nothing was ever recorded under the root.
    """

    store: Store | None = None

    def record(self, config: StageConfig) -> RunRecord | None:
        """The recorded run of ``config`` (an upstream config, typically), or None."""
        if self.store is None:
            return None
        entry = stage_for_config(config)
        return self.store.get(run_id(entry.name, entry.version, config))

    def finished(self, config: StageConfig) -> RunRecord | None:
        """The record of ``config``'s run if it is done, else None (it will run first)."""
        rec = self.record(config)
        return rec if rec is not None and rec.status is RunStatus.DONE else None


def check_plan(runs: Iterable[PlannedRun], store: Store | None = None) -> int:
    """Run every planned run's stage check (each run once, upstream runs first).

    Returns the number of runs checked. Raises :class:`PlanCheckError` naming the run, its stage
    and the check's message at the first refusal; a check's ``ValueError`` counts as one.
    """
    context = PlanContext(store)
    seen: set[str] = set()
    checked = 0
    for top in runs:
        for run in top.closure():
            if run.id in seen:
                continue
            seen.add(run.id)
            entry = get_stage(run.stage)
            if entry.check is None:
                continue
            checked += 1
            try:
                if entry.check_takes_plan:
                    entry.check(run.config, context)
                else:
                    entry.check(run.config)
            except (AssayError, ValueError) as exc:
                raise PlanCheckError(_message(run, top, exc)) from None
    return checked


def _message(run: PlannedRun, top: PlannedRun, exc: Exception) -> str:
    where = f"run {run.index} ({_params(top.params) or top.id})"
    if run is not top:
        where += f", upstream {run.stage} run {run.id}"
    return (
        f"stage '{run.stage}' refuses its config ({where}): {exc}\n"
        "nothing was run or recorded; fix the suite or the override and run again"
    )


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def plan_store(store_url: str | None, root: str | Path) -> Store | None:
    """The store a check reads, or None when nothing was recorded yet (none is created)."""
    if store_url is None and not (Path(root) / "assay.db").exists():
        return None
    return resolve_store(store_url, root)
