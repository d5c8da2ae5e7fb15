"""The Python API: plan and run suites, run one config. The CLI is a thin layer over this."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._cluster import parse_cluster_params
from ._config import StageConfig
from ._executors import make_executor
from ._progress import ProgressDisplay
from ._run import RunRecord, RunStatus
from ._runner import Outcome, Runner, RunOptions
from ._store import Store, resolve_store
from ._suite import PlannedRun, Suite, expand, load_suite, select


@dataclasses.dataclass(frozen=True)
class PlanRow:
    """A row of ``assay run --dry-run``: a run and its state in the store."""

    index: int
    id: str
    stage: str
    params: dict[str, Any]
    state: str  # done | failed | running | pending | reused (an upstream run already done)
    upstream: bool = False


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    suite: Suite
    outcomes: list[Outcome]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(o.status for o in self.outcomes))

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status.startswith("failed")]


def as_suite(suite: Suite | str | Path) -> Suite:
    return suite if isinstance(suite, Suite) else load_suite(suite)


def plan_suite(
    suite: Suite | str | Path,
    overrides: Sequence[str] = (),
    *,
    seeds: Sequence[int] | None = None,
    shard: str | None = None,
    start_index: int | None = None,
    end_index: int | None = None,
) -> list[PlannedRun]:
    """The suite's runs (after overrides), restricted to a shard or index range."""
    runs = expand(as_suite(suite), overrides, seeds)
    return select(runs, shard=shard, start=start_index, end=end_index)


def plan_rows(runs: Sequence[PlannedRun], store: Store | None) -> list[PlanRow]:
    """Every planned run, upstream runs first, with its state in ``store`` (for --dry-run)."""
    ids = {r.id for top in runs for r in top.closure()}
    known = store.get_many(ids) if store is not None else {}
    rows: list[PlanRow] = []
    seen: set[str] = set()
    for top in runs:
        for r in top.closure():
            if r.id in seen:
                continue
            seen.add(r.id)
            rec = known.get(r.id)
            state = rec.status.value if rec else RunStatus.PENDING.value
            is_up = r is not top
            if is_up and state == RunStatus.DONE.value:
                state = "reused"
            rows.append(PlanRow(r.index, r.id, r.stage, r.params, state, upstream=is_up))
    return rows


def run_suite(
    suite: Suite | str | Path,
    overrides: Sequence[str] = (),
    *,
    root: str | Path = "runs",
    store: str | None = None,
    workers: int = 1,
    seeds: Sequence[int] | None = None,
    shard: str | None = None,
    start_index: int | None = None,
    end_index: int | None = None,
    retry_failed: bool = False,
    retries: int = 0,
    timeout_s: float | None = None,
    stop_on_error: bool = False,
    stale_after_s: float = 120.0,
    heartbeat_s: float = 10.0,
    progress: bool = False,
    executor: str = "local",
    cluster: Mapping[str, Any] | Sequence[str] = (),
) -> SuiteResult:
    """Run every run of ``suite`` that is not finished yet; return what happened to each.

    Finished runs are skipped, failed ones reported (rerun with ``retry_failed=True``), and runs
    held by another live process are waited for. See :class:`RunOptions` for the options.
    """
    suite = as_suite(suite)
    runs = plan_suite(suite, overrides, seeds=seeds, shard=shard, start_index=start_index,
                      end_index=end_index)  # fmt: skip
    options = RunOptions(
        root=Path(root), store=store, retry_failed=retry_failed, retries=retries,
        timeout_s=timeout_s, workers=workers, stop_on_error=stop_on_error,
        stale_after_s=stale_after_s, heartbeat_s=heartbeat_s, executor=executor,
        cluster=parse_cluster_params(executor, cluster),
    )  # fmt: skip
    display = ProgressDisplay(len(runs), enabled=progress)
    outcomes: list[Outcome] = []
    try:
        for outcome in make_executor(options, suite.imports).map(runs):
            outcomes.append(outcome)
            display.update(outcome)
    finally:
        display.close()
    return SuiteResult(suite, outcomes)


def run_config(
    config: StageConfig,
    *,
    root: str | Path = "runs",
    store: str | Store | None = None,
    retry_failed: bool = False,
    timeout_s: float | None = None,
) -> RunRecord:
    """Run one config (its upstream first), or return its finished record if it already ran."""
    options = RunOptions(root=Path(root), retry_failed=retry_failed, timeout_s=timeout_s,
                         store=store if isinstance(store, str) else None)  # fmt: skip
    opened = resolve_store(store, root)
    runner = Runner(options, store=opened)
    try:
        return runner.record_for(config)
    finally:
        if not isinstance(store, Store):
            opened.close()
