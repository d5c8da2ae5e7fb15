"""The Python API: plan and run suites, run one config. The CLI is a thin layer over this."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core._config import StageConfig
from ..core._options import RunOptions, Selection
from ..core._run import Outcome, RunRecord, RunStatus
from ..core._spec import PlannedRun, plan_config
from ..core._stale import find_stale, retire
from ..executors import make_executor
from ..store import Store, resolve_store
from ._checks import check_plan, plan_store
from ._options import build_options, split_options
from ._progress import ProgressDisplay
from ._runner import Runner
from ._suite import Suite, expand, load_suite, select
from ._worker import WORKER


@dataclasses.dataclass(frozen=True)
class PlanRow:
    """A row of ``assay run --dry-run``: a run and its state in the store."""

    index: int
    id: str
    stage: str
    params: dict[str, Any]
    state: RunStatus
    upstream: bool = False  # an upstream run of the suite's runs (shown in parentheses)


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    suite: Suite
    outcomes: list[Outcome]
    # finished runs produced by other code than is installed now: {id: reason} (kept as they
    # are), and the ids of those rerun because of --rerun-stale
    stale: dict[str, str] = dataclasses.field(default_factory=dict)
    reran_stale: list[str] = dataclasses.field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Outcomes by label: ``done``/``failed`` ran here, ``skipped`` had finished before,
        ``done-elsewhere`` another process ran meanwhile (see :attr:`Outcome.label`)."""
        return dict(Counter(o.label for o in self.outcomes))

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]


def as_suite(suite: Suite | str | Path) -> Suite:
    return suite if isinstance(suite, Suite) else load_suite(suite)


def plan_suite(
    suite: Suite | str | Path,
    overrides: Sequence[str] = (),
    *,
    imports: Sequence[str] = (),
    trust_imports: bool = False,
    **selection: Any,
) -> list[PlannedRun]:
    """The suite's runs (after overrides), restricted by :class:`Selection` keywords
    (``seeds``, ``shard``, ``start_index``, ``end_index``, ``max_runs``)."""
    sel = selection.pop("selection", None) or build_options(Selection, selection)
    runs = expand(
        as_suite(suite),
        overrides,
        sel.seeds,
        imports=imports,
        trust_imports=trust_imports,
        max_runs=sel.max_runs,
    )
    return select(runs, shard=sel.shard, start=sel.start_index, end=sel.end_index)


def plan_rows(
    runs: Sequence[PlannedRun],
    store: Store | None,
    states: Mapping[str, RunStatus] | None = None,
) -> list[PlanRow]:
    """Every planned run, upstream runs first, with its state in ``store`` (for --dry-run);
    ``states``: the store's states of these runs when the caller has just read them."""
    if states is None:
        ids = {r.id for top in runs for r in top.closure()}
        states = store.states(ids) if store is not None else {}
    known = states
    rows: list[PlanRow] = []
    seen: set[str] = set()
    for top in runs:
        for r in top.closure():
            if r.id in seen:
                continue
            seen.add(r.id)
            state = known.get(r.id, RunStatus.PENDING)
            rows.append(PlanRow(r.index, r.id, r.stage, r.params, state, upstream=r is not top))
    return rows


def run_suite(
    suite: Suite | str | Path,
    overrides: Sequence[str] = (),
    *,
    progress: bool = False,
    imports: Sequence[str] = (),
    trust_imports: bool = False,
    **options: Any,
) -> SuiteResult:
    """Run every run of ``suite`` that is not finished yet; return what happened to each.

    Keyword arguments are the fields of :class:`RunOptions` (``root``, ``store``, ``workers``,
    ``retries``, ``executor``, ``cluster``, ...) and of :class:`Selection` (``seeds``, ``shard``,
    ``start_index``, ``end_index``, ``max_runs``); an unknown one is an error naming the valid
    ones. Finished runs are skipped, failed ones reported (rerun with ``retry_failed=True``).

    ``imports``: modules registering the suite's stages; a suite file's own ``imports:`` are
    loaded only when named here too, or with ``trust_imports=True``.
    """
    suite = as_suite(suite)
    if suite.sinks:  # a suite's sinks, plus any the caller adds
        options["sink"] = (*suite.sinks, *_listed(options.get("sink")))
    options.setdefault("suite_name", suite.name)
    run_options, selection = split_options(options)
    runs = plan_suite(
        suite, overrides, imports=imports, trust_imports=trust_imports, selection=selection
    )
    check_suite(runs, run_options)  # before the store is created or any run starts
    stale, retired = _stale_runs(runs, run_options)
    run_options = _usable_sinks(run_options)
    display = ProgressDisplay(
        runs, root=run_options.root, store=run_options.store, enabled=progress
    )
    outcomes: list[Outcome] = []
    try:
        modules = (*imports, *suite.imports) if trust_imports else tuple(imports)
        for outcome in make_executor(run_options, WORKER, modules).map(runs):
            outcomes.append(outcome)
            display.update(outcome)
    finally:
        display.close()
    return SuiteResult(suite, outcomes, stale, retired)


def _usable_sinks(options: RunOptions) -> RunOptions:
    """The options without the sinks that cannot work in this invocation (not installed, a
    server that does not answer): each is said once on the terminal and recorded in
    ``ROOT/sink-problems.jsonl`` for the report, instead of stalling every run."""
    if not options.sink:
        return options
    from ..sinks import probe, record_problems

    problems = {name: msg for name in options.sink if (msg := probe(name)) is not None}
    for msg in problems.values():
        print(
            f"warning: {msg}; this invocation goes on without it (`assay sink replay SUITE "
            "--sink NAME` sends the finished runs later)",
            file=sys.stderr,
        )
    record_problems(options.root, problems)
    return options.model_copy(update={"sink": tuple(n for n in options.sink if n not in problems)})


def _stale_runs(runs: list[PlannedRun], options: RunOptions) -> tuple[dict[str, str], list[str]]:
    """The planned runs finished by other code than is installed; retired for a rerun when
    ``options.rerun_stale`` (see :mod:`assay.core._stale`)."""
    store = resolve_store(options.store, options.root)
    try:
        stale = find_stale(runs, store, Path(options.root))
        retired = retire(stale, store, Path(options.root)) if options.rerun_stale else []
    finally:
        store.close()
    return ({k: v for k, v in stale.items() if k not in retired}, retired)


def check_suite(runs: Sequence[PlannedRun], options: RunOptions) -> None:
    """Every planned run's stage check, against the store under ``options`` if one exists
    (a check never creates it): see :mod:`assay.engine._checks`."""
    store = plan_store(options.store, options.root)
    try:
        check_plan(runs, store)
    finally:
        if store is not None:
            store.close()


def _listed(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def run_config(
    config: StageConfig,
    *,
    root: str | Path = "runs",
    store: str | Store | None = None,
    retry_failed: bool = False,
    timeout_s: float | None = None,
) -> RunRecord:
    """Run one config (its upstream first), or return its finished record if it already ran."""
    options = RunOptions(
        root=Path(root),
        retry_failed=retry_failed,
        timeout_s=timeout_s,
        store=store if isinstance(store, str) else None,
    )
    if isinstance(store, Store):
        check_plan([plan_config(config)], store)
    else:
        check_suite([plan_config(config)], options)
    opened = resolve_store(store, root)
    runner = Runner(options, store=opened)
    try:
        return runner.record_for(config)
    finally:
        if not isinstance(store, Store):
            opened.close()
