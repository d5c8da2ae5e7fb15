"""Execute planned runs: claim each in the store, run upstream first, record everything.

One :class:`Runner` per process. It takes :class:`PlannedRun` specs as planned (ids, configs and
upstream trees are never recomputed) and executes each inline, or in a child process of its own
(stages declared ``isolate=True``, or under a per-run timeout). Every claim goes through the
store, so any number of invocations (shards, index ranges, workers, the same command twice) can
work on one suite without running a run twice.

The commit order makes a finished result impossible to lose: the results are written (fsync'd)
beside the run as ``.results.attempt-N.json``, then the store row is moved to done (fenced on
owner and attempt), then the file is renamed to ``results.json``. A kill between any two steps
leaves a file the next claimant adopts instead of rerunning the run.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ..core._config import StageConfig
from ..core._errors import AssayError
from ..core._guard import (
    OutsideRootError,
    append_text_in_root,
    check_tree_in_root,
    make_dir_in_root,
    open_in_root,
    real_in_root,
)
from ..core._io import atomic_write_json, atomic_write_text, dumps, read_json
from ..core._options import RunOptions
from ..core._owner import liveness, make_owner
from ..core._provenance import start_record
from ..core._registry import get_stage
from ..core._run import (
    PROGRESS_FILE,
    Origin,
    Outcome,
    Run,
    RunRecord,
    RunStatus,
    UpstreamRun,
)
from ..core._spec import PlannedRun, plan_config
from ..core._stale import code_record
from ..sinks import open_sinks
from ..store import Store, resolve_store
from ._child import call_stage, run_in_child

WAIT_POLL_S = 0.05  # how often a run held by another process is looked at again (a read)
PENDING_RESULTS = ".results.attempt-{attempt}.json"


class Runner:
    """Runs planned runs against one store. Not thread-safe; make one per process."""

    def __init__(self, options: RunOptions, store: Store | None = None) -> None:
        self.options = options
        self.root = Path(options.root)
        self.store = store or resolve_store(options.store, options.root)
        self.owner = make_owner()
        self.pid = os.getpid()
        self._settled: dict[str, tuple[RunRecord, Origin]] = {}
        self._upstream_ids: set[str] = (
            set()
        )  # runs settled as another run's upstream (sinks tag them)
        self._held_elsewhere: set[str] = set()  # runs this runner found in another's hands
        self._known: dict[str, RunRecord | None] = {}  # prefetched rows, read once per run
        self._heartbeat = _Heartbeat(self.store, self.owner, options.heartbeat_s)

    # -- public --------------------------------------------------------------------------------
    def execute(self, planned: PlannedRun, *, wait: bool = True) -> Outcome | None:
        """Bring one planned run (and its upstream) to done or failed; say who did it.

        With ``wait=False`` a run held by another live process returns None at once (come back
        later); with ``wait=True`` this waits for that process's outcome.
        """
        start = time.perf_counter()
        settled = self._settle(planned, wait=wait)
        if settled is None:
            return None
        rec, origin = settled
        return Outcome(
            planned.id,
            planned.stage,
            rec.status,
            origin,
            time.perf_counter() - start,
            rec.error,
            planned.index,
        )

    def prefetch(self, runs: list[PlannedRun] | tuple[PlannedRun, ...]) -> None:
        """Read the rows of ``runs`` and their upstream runs in one query (a 20,000-run suite
        then costs one SELECT to find what is done, not one per run). The claim stays the
        authority: a prefetched row only saves the first look."""
        ids = {r.id for top in runs for r in top.closure()} - set(self._settled)
        found = self.store.get_many(ids)
        self._known.update({rid: found.get(rid) for rid in ids})

    def forget_prefetch(self) -> None:
        """Drop prefetched rows: once another process works on the suite they go stale, and a
        fresh read (no write lock) finds what it finished before a claim is tried."""
        self._known.clear()

    def record_for(self, config: StageConfig | PlannedRun) -> RunRecord:
        """The finished (or failed) record of a config, running it and its upstream if needed."""
        planned = config if isinstance(config, PlannedRun) else plan_config(config)
        settled = self._settle(planned, wait=True)
        assert settled is not None  # wait=True always settles
        return settled[0]

    def close(self) -> None:
        self.store.close()

    # -- internals -----------------------------------------------------------------------------
    def _settle(self, planned: PlannedRun, *, wait: bool) -> tuple[RunRecord, Origin] | None:
        if planned.id in self._settled:
            return self._settled[planned.id]
        if planned.id in self._known:
            rec = self._known.pop(planned.id)
        else:
            rec = self.store.get(planned.id)
        seen = Origin.ELSEWHERE if planned.id in self._held_elsewhere else Origin.EARLIER
        if rec is not None and rec.status is RunStatus.DONE:
            _repair_results(rec)
            return self._remember(planned.id, rec, seen)
        if rec is not None and rec.status is RunStatus.FAILED and not self.options.retry_failed:
            return rec, seen
        upstream: dict[str, Any] = {}
        for link in planned.upstream:
            self._upstream_ids.add(link.run.id)
            sub = self._settle(link.run, wait=wait)
            if sub is None:
                return None
            sub_rec, sub_origin = sub
            if sub_rec.status is not RunStatus.DONE:
                error = (
                    f"upstream run {sub_rec.id} ({link.name}) failed: {sub_rec.error}; see "
                    f"{sub_rec.dir}/error.txt, fix it and rerun with --retry-failed"
                )
                failed = RunRecord(planned.id, planned.stage, RunStatus.FAILED, {}, error=error)
                return failed, sub_origin
            handed = UpstreamRun(
                sub_rec.id,
                sub_rec.stage,
                link.run.config,
                Path(sub_rec.dir or self.root / sub_rec.id),
                sub_rec.results or {},
            )
            _hand(upstream, link.name, link.key, handed)
        return self._claim_and_run(planned, rec, upstream, wait=wait)

    def _claim_and_run(
        self, planned: PlannedRun, rec: RunRecord | None, upstream: dict[str, Any], *, wait: bool
    ) -> tuple[RunRecord, Origin] | None:
        new = None if rec is not None else (planned.stage, planned.config_json, planned.id)
        tries_left = self.options.retries + 1
        retry_failed = self.options.retry_failed
        while True:
            attempt = self.store.claim(
                planned.id,
                self.owner,
                retry_failed=retry_failed,
                stale_after_s=self.options.stale_after_s,
                liveness=liveness,
                ensure=new,
            )
            new = None
            if attempt is None:
                rec = self.store.get(planned.id)
                if rec is None:
                    raise AssayError(f"run {planned.id} vanished from store {self.store.url}")
                if rec.status is RunStatus.DONE:
                    return self._remember(planned.id, rec, Origin.ELSEWHERE)
                if rec.status is RunStatus.FAILED and not retry_failed:
                    return rec, Origin.ELSEWHERE
                self._held_elsewhere.add(planned.id)
                if not wait:
                    return None
                time.sleep(WAIT_POLL_S)  # held by another live process: wait for its outcome
                continue
            rec = self._run(planned, upstream, attempt)
            tries_left -= 1
            if rec.status is not RunStatus.FAILED or tries_left == 0:
                break
            retry_failed = True  # --retries: try again within this invocation
        if rec.status is RunStatus.DONE:
            return self._remember(planned.id, rec, Origin.EXECUTED)
        return rec, Origin.EXECUTED

    def _remember(self, rid: str, rec: RunRecord, origin: Origin) -> tuple[RunRecord, Origin]:
        self._settled[rid] = (rec, origin)
        return rec, origin

    def _run(self, planned: PlannedRun, upstream: dict[str, Any], attempt: int) -> RunRecord:
        entry = get_stage(planned.stage)
        rid, run_dir = planned.id, self.root / planned.id
        try:  # a run folder, or a file in it, planted as a link leading outside the root:
            make_dir_in_root(self.root, run_dir)  # refused before anything is written
            check_tree_in_root(self.root, run_dir, verb="run in")
        except OutsideRootError as exc:
            refused = f"{type(exc).__name__}: {exc} with --retry-failed"
            self.store.finish(rid, self.owner, RunStatus.FAILED, attempt=attempt, error=refused)
            return RunRecord(
                rid,
                entry.name,
                RunStatus.FAILED,
                json.loads(planned.config_json),
                error=refused,
                attempts=attempt,
                owner=self.owner,
                dir=run_dir,
            )
        if attempt > 1:  # only an earlier attempt can have left a result to adopt
            adopted = self._adopt(planned, run_dir, attempt)
            if adopted is not None:
                return adopted
        if attempt > 1:
            (run_dir / "error.txt").unlink(missing_ok=True)  # left by an earlier failed attempt
        started = time.time()
        config = planned.config
        atomic_write_text(run_dir / "config.json", planned.config_json + "\n", root=self.root)
        runtime = config.runtime()
        prov = start_record(seed=runtime.seed, device=runtime.device, attempt=attempt)
        prov["code"] = code_record(entry)  # what code made it: see _stale.py
        handle = Run(
            run_id=rid,
            stage=entry.name,
            config=config,
            dir=run_dir,
            upstream=upstream,
            attempt=attempt,
            make_dir=False,
            root=self.root,
        )
        if self.options.sink:
            handle.sinks = open_sinks(
                self.options.sink,
                run_id=rid,
                stage=entry.name,
                suite=self.options.suite_name,
                config=json.loads(planned.config_json),
                root=self.root,
                run_dir=run_dir,
                attempt=attempt,
                warn=handle.log,
                params=planned.params,
                upstream=planned.id in self._upstream_ids,
            )
        self._heartbeat.watch(rid, handle)
        results: dict[str, Any] | None = None
        try:
            if entry.isolate or self.options.timeout_s is not None:
                results = run_in_child(entry, planned, handle, self.options.timeout_s)
            else:
                results = call_stage(entry, config, handle)
            status, error = RunStatus.DONE, None  # error: str | None
        except KeyboardInterrupt:
            self._heartbeat.unwatch()
            handle.log(f"attempt {attempt} interrupted; the run goes back to pending")
            self.store.finish(rid, self.owner, RunStatus.PENDING, attempt=attempt)
            if handle.sinks:
                handle.sinks.finish("interrupted")
            raise
        except Exception as exc:
            status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            atomic_write_text(run_dir / "error.txt", traceback.format_exc(), root=self.root)
        finally:
            self._heartbeat.unwatch()
        ended = time.time()
        prov.update(
            time_end=ended,
            duration_s=ended - started,
            run_id=rid,
            stage=entry.name,
            status=status.value,
            error=error,
            device=_resolved_device(prov["device"]),
        )
        atomic_write_json(run_dir / "provenance.json", prov, indent=None, root=self.root)
        if handle.sinks is not None:  # never raises: a failing tracker is reported in log.txt
            handle.sinks.finish(
                status.value,
                results,
                handle.artifacts_dir if self.options.sink_artifacts else None,
            )
        pending = run_dir / PENDING_RESULTS.format(attempt=attempt)
        if results is not None and not handle.superseded:
            _write_results(self.root, pending, results, fsync=self.options.fsync)  # 1. first
        committed = not handle.superseded and self.store.finish(
            rid, self.owner, status, attempt=attempt, results=results, error=error
        )  # 2. fenced: a run taken over meanwhile keeps the new owner's outcome
        if handle.progress_used:
            (run_dir / PROGRESS_FILE).unlink(missing_ok=True)
        if not committed:
            pending.unlink(missing_ok=True)
            handle.log(
                f"attempt {attempt} by {self.owner} was taken over by another process; "
                "its outcome is not recorded"
            )
            return self.store.get(rid) or RunRecord(rid, entry.name, RunStatus.PENDING, {})
        if results is not None:
            _rename_results(pending, run_dir / "results.json")  # 3. the file readers look for
        handle.log(
            f"attempt {attempt} by {self.owner}: {status.value} in {ended - started:.3f}s"
            + (f": {error}" if error else "")
        )
        return RunRecord(
            id=rid,
            stage=entry.name,
            status=status,
            config=json.loads(planned.config_json),
            results=results,
            error=error,
            attempts=attempt,
            owner=self.owner,
            started=started,
            ended=ended,
            dir=run_dir.resolve(),
        )

    def _adopt(self, planned: PlannedRun, run_dir: Path, attempt: int) -> RunRecord | None:
        """A result an earlier attempt finished but did not commit (killed in between)."""
        for path in [run_dir / "results.json", *sorted(run_dir.glob(".results.attempt-*.json"))]:
            try:
                results = read_json(path, root=self.root)
            except (OSError, ValueError):  # OutsideRootError too: a planted link is no result
                continue
            if not self.store.finish(
                planned.id, self.owner, RunStatus.DONE, attempt=attempt, results=results
            ):
                return self.store.get(planned.id)
            if path.name != "results.json":
                _rename_results(path, run_dir / "results.json")
            append_text_in_root(
                self.root,
                run_dir / "log.txt",
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} attempt {attempt} adopted "
                f"the finished result {path.name} of an earlier, killed "
                "attempt\n",
            )
            return RunRecord(
                planned.id,
                planned.stage,
                RunStatus.DONE,
                {},
                results=results,
                attempts=attempt,
                dir=run_dir.resolve(),
            )
        return None


def _write_results(root: Path, path: Path, results: dict[str, Any], *, fsync: bool) -> None:
    """Write a private results file. Not atomic on purpose: a torn file is not valid JSON and
    adoption skips it (the run is rerun); a whole one is a finished result. A killed process
    loses nothing the kernel has; ``fsync`` also survives a power cut. Never through a link
    leading outside ``root``."""
    fd = open_in_root(root, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, (dumps(results, indent=2) + "\n").encode())
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _repair_results(rec: RunRecord) -> None:
    """A run the store calls done whose results.json rename was cut short by a kill."""
    if rec.dir is None or (rec.dir / "results.json").exists() or not rec.dir.is_dir():
        return
    try:  # a run folder swapped for a link leading out of its root (<root>/<id>): not touched
        real_in_root(rec.dir.parent, rec.dir, verb="repair")
    except OutsideRootError:
        return
    for path in sorted(rec.dir.glob(".results.attempt-*.json")):
        _rename_results(path, rec.dir / "results.json")
        return


def _rename_results(pending: Path, final: Path) -> None:
    """Rename a committed result into place; another process repairing the same run may have
    renamed it first (it saw the row done), which is the same outcome."""
    try:
        os.replace(pending, final)
    except FileNotFoundError:
        if not final.exists():
            raise


def _hand(upstream: dict[str, Any], name: str, key: str | int | None, run: UpstreamRun) -> None:
    """Place an upstream run where the config named it: a value, a list entry or a dict entry."""
    if key is None:
        upstream[name] = run
    elif isinstance(key, int):
        upstream.setdefault(name, []).append(run)
    else:
        upstream.setdefault(name, {})[key] = run


def _resolved_device(spec: Any) -> Any:
    """The device a run used: ``auto`` resolved, when the config names one and torch is loaded."""
    import sys

    if not isinstance(spec, str) or "torch" not in sys.modules:
        return spec
    from ..core._torch import resolve_device

    try:
        return resolve_device(spec)
    except AssayError:
        return spec


class _Heartbeat:
    """One daemon thread per Runner that refreshes the heartbeat of the run in flight.

    A beat the store refuses means another process took the run over: the handle is marked
    superseded and the runner will not record its outcome.
    """

    def __init__(self, store: Store, owner: str, every_s: float) -> None:
        self._store, self._owner, self._every_s = store, owner, every_s
        self._current: tuple[str, Run] | None = None
        self._thread: threading.Thread | None = None

    def watch(self, rid: str, handle: Run) -> None:
        self._current = (rid, handle)
        if self._thread is None:  # started on first use, reused for every later run
            self._thread = threading.Thread(target=self._loop, daemon=True, name="assay-heartbeat")
            self._thread.start()

    def unwatch(self) -> None:
        self._current = None

    def _loop(self) -> None:
        while True:
            time.sleep(self._every_s)
            current = self._current
            if current is None:
                continue
            try:
                held = self._store.heartbeat(current[0], self._owner)
            except Exception:  # a missed beat is harmless; the next one retries
                continue
            if not held and self._current is current:
                current[1].superseded = True
