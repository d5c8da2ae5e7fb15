"""Conformance checks that every family's stages (and every store) must pass.

from assay.testing import check_stage
def test_my_stage(tmp_path):
    check_stage("volume.train", tmp_path)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .core._config import build_config, run_id
from .core._registry import get_stage
from .core._run import RunRecord, RunStatus
from .engine._api import run_config
from .store import Store

REQUIRED_FILES = ("config.json", "results.json", "provenance.json", "log.txt")


def smoke_config(stage_name: str, **overrides: Any) -> Any:
    """The stage's defaults with its declared ``smoke`` overrides (and ``overrides``) applied."""
    entry = get_stage(stage_name)
    return build_config(entry.config_cls, {**entry.smoke, **overrides}, stage=stage_name)


def check_stage(stage_name: str, root: str | Path, **overrides: Any) -> RunRecord:
    """A smoke config runs, records every file, returns JSON results, and a rerun is skipped."""
    entry = get_stage(stage_name)
    config = smoke_config(stage_name, **overrides)
    record = run_config(config, root=root)
    if record.status is not RunStatus.DONE:
        raise AssertionError(f"{stage_name} smoke run failed: {record.error}")
    if record.id != run_id(entry.name, entry.version, config):
        raise AssertionError(f"{stage_name}: record id {record.id} is not the content id")
    if record.dir is None:
        raise AssertionError(f"{stage_name}: the store recorded no run directory")
    for name in REQUIRED_FILES:
        if not (Path(record.dir) / name).is_file():
            raise AssertionError(f"{stage_name}: run directory lacks {name}")
    results = json.loads((Path(record.dir) / "results.json").read_text())
    if not isinstance(results, Mapping):
        raise AssertionError(f"{stage_name}: results.json is not a JSON object")
    mtime = (Path(record.dir) / "results.json").stat().st_mtime_ns
    again = run_config(config, root=root)
    if again.attempts != record.attempts or (
        (Path(record.dir) / "results.json").stat().st_mtime_ns != mtime
    ):
        raise AssertionError(f"{stage_name}: rerunning a finished config ran it again")
    return record


def check_store(make_store: Any) -> None:
    """Store conformance: claims are exclusive, finish records results, stale runs are reclaimed.

    Args:
        make_store: a callable returning a fresh, empty :class:`Store`.
    """
    store: Store = make_store()
    try:
        # the config as the runner hands it over: the plan's canonical JSON text
        store.ensure("s_1", "s", '{"a":1}', "/tmp/s_1")
        store.ensure("s_1", "s", '{"a":2}', "/tmp/elsewhere")  # ignored: already recorded
        rec = store.get("s_1")
        assert rec is not None and rec.status is RunStatus.PENDING and rec.config == {"a": 1}
        unknown = lambda owner: None  # noqa: E731 - owners on another host: only heartbeats tell
        first = store.claim("s_1", "A", retry_failed=False, stale_after_s=60, liveness=unknown)
        second = store.claim("s_1", "B", retry_failed=False, stale_after_s=60, liveness=unknown)
        assert first == 1 and second is None, (first, second)
        assert store.heartbeat("s_1", "A") and not store.heartbeat("s_1", "B")
        assert not store.finish("s_1", "B", RunStatus.DONE, attempt=1, results={"x": 0})  # fenced
        assert store.finish("s_1", "A", RunStatus.FAILED, attempt=1, error="boom")
        assert (
            store.claim("s_1", "B", retry_failed=False, stale_after_s=60, liveness=unknown) is None
        )
        assert store.claim("s_1", "B", retry_failed=True, stale_after_s=60, liveness=unknown) == 2
        # B "dies": a dead owner is reclaimed at once, a silent unknown one after stale_after_s,
        # and a live one never, however old its heartbeat (a stopped process still owns it)
        assert (
            store.claim(
                "s_1", "C", retry_failed=False, stale_after_s=60, liveness=lambda o: o != "B"
            )
            == 3
        )
        assert (
            store.claim("s_1", "D", retry_failed=False, stale_after_s=-1, liveness=lambda o: True)
            is None
        )
        assert store.claim("s_1", "D", retry_failed=False, stale_after_s=-1, liveness=unknown) == 4
        assert not store.finish("s_1", "C", RunStatus.DONE, attempt=3, results={"x": 0})
        assert store.finish("s_1", "D", RunStatus.DONE, attempt=4, results={"x": 1.5})
        rec = store.get("s_1")
        assert rec is not None and rec.status is RunStatus.DONE and rec.results == {"x": 1.5}
        assert rec.attempts == 4 and [r.id for r in store.query(stage="s")] == ["s_1"]
        if store.root is not None:  # directories inside the root are stored relative to it
            store.ensure("s_2", "s", "{}", str(store.root / "s_2"))
            got = store.get("s_2")
            assert got is not None and got.dir == store.root / "s_2"
    finally:
        store.close()


def check_executor(
    executor: str, root: str | Path, *, workers: int = 1, cluster: Mapping[str, Any] | None = None
) -> None:
    """Executor conformance: every planned run comes back exactly once, finished runs are
    recorded with their results (one attempt each), a shared upstream run executes once, and a
    second pass executes nothing (every run ``skipped``).

    Args:
        executor: a registered executor name (``assay.executors`` entry point).
        root: an empty folder for the runs (a SQLite store is made in it).
        workers: ``--workers`` (the local executor's pool when above 1).
        cluster: the executor's ``--cluster`` parameters.
    """
    from .core._options import RunOptions
    from .engine._api import plan_suite
    from .engine._options import check_options
    from .engine._suite import suite_from_dict
    from .engine._worker import WORKER
    from .executors import make_executor
    from .store import resolve_store

    # four fits sharing one data run
    suite = suite_from_dict(
        {
            "stage": "example.fit",
            "config": {"data": {"n_train": 12}},
            "sweep": {"variants": [{"degree": d} for d in (1, 2, 3, 4)]},
        }
    )
    runs = plan_suite(suite)
    options = check_options(
        RunOptions(
            root=Path(root), executor=executor, workers=workers, cluster=dict(cluster or {})
        )
    )
    outcomes = list(make_executor(options, WORKER).map(runs))
    assert sorted(o.id for o in outcomes) == sorted(r.id for r in runs), "each run exactly once"
    assert all(o.status is RunStatus.DONE for o in outcomes), [o.error for o in outcomes]
    with resolve_store(None, root) as store:
        records = store.query()
        by_stage: dict[str, list[RunRecord]] = {}
        for rec in records:
            by_stage.setdefault(rec.stage, []).append(rec)
        assert len(by_stage["example.data"]) == 1 and by_stage["example.data"][0].attempts == 1
        fits = by_stage["example.fit"]
        assert len(fits) == 4 and all(r.attempts == 1 and r.results for r in fits)
        assert all(r.dir is not None and (r.dir / "results.json").exists() for r in fits)
    again = list(make_executor(options, WORKER).map(runs))
    assert sorted(o.label for o in again) == ["skipped"] * 4, [o.label for o in again]
