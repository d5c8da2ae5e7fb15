"""Execute planned runs: claim each in the store, run upstream first, record everything.

One :class:`Runner` per process. Runs execute inline (in this process), in a child process of
their own (stages declared ``isolate=True``, or when a per-run timeout is set), or spread over a
local process pool (``workers > 1``) where each worker has its own Runner on the shared store.
Every claim goes through the store, so any number of invocations (shards, index ranges, workers)
can work on one suite without running a run twice.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import StageConfig, run_id
from ._errors import AssayError
from ._io import atomic_write_json, atomic_write_text, dumps, to_jsonable
from ._provenance import start_record
from ._registry import Stage, stage_for_config
from ._run import Run, RunRecord, RunStatus, UpstreamRun
from ._store import Store, resolve_store
from ._suite import _flatten_upstream

WAIT_POLL_S = 0.2  # how often a run whose upstream is held by another process re-checks it


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How runs execute. Shared by the CLI and the Python API.

    Attributes:
        root: directory holding one folder per run (and the default SQLite store).
        store: store URL; default ``sqlite:///<root>/assay.db``.
        retry_failed: rerun runs recorded as failed (otherwise they are reported and skipped).
        retries: extra attempts for a run that raises, within this invocation.
        timeout_s: per-run wall-clock limit; runs then execute in a child process that is killed.
        heartbeat_s: how often a running run refreshes its heartbeat.
        stale_after_s: a running run whose heartbeat is older is taken as dead and rerun.
        workers: local processes; 1 runs inline.
        stop_on_error: stop scheduling new runs after the first failure.
        executor: ``local`` (inline, or a process pool when workers > 1), ``slurm``,
            ``submitit-local`` or ``ray``.
        cluster: the executor's parameters (partition, timeout_min, address, ...).
    """

    root: Path = Path("runs")
    store: str | None = None
    retry_failed: bool = False
    retries: int = 0
    timeout_s: float | None = None
    heartbeat_s: float = 10.0
    stale_after_s: float = 120.0
    workers: int = 1
    stop_on_error: bool = False
    executor: str = "local"
    cluster: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        from ._cluster import parse_cluster_params

        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "cluster", parse_cluster_params(self.executor, self.cluster))
        checks = {
            "workers": (self.workers, self.workers >= 1, ">= 1"),
            "retries": (self.retries, self.retries >= 0, ">= 0"),
            "heartbeat_s": (self.heartbeat_s, self.heartbeat_s > 0, "> 0"),
            "stale_after_s": (self.stale_after_s, self.stale_after_s > self.heartbeat_s,
                              "> heartbeat_s"),
            "timeout_s": (self.timeout_s, self.timeout_s is None or self.timeout_s > 0, "> 0"),
        }  # fmt: skip
        for name, (value, ok, rule) in checks.items():
            if not ok:
                raise AssayError(f"{name} must be {rule}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one run in this invocation."""

    id: str
    stage: str
    status: str  # "done" (ran now), "skipped" (finished earlier), "failed", "failed-earlier"
    duration_s: float = 0.0
    error: str | None = None
    index: int | None = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:token``) was a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not _alive(int(pid_text))


class UpstreamFailedError(AssayError):
    pass


class Runner:
    """Runs configs against one store. Not thread-safe; make one per process."""

    def __init__(self, options: RunOptions, store: Store | None = None) -> None:
        self.options = options
        self.root = options.root
        self.store = store or resolve_store(options.store, options.root)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._finished: dict[str, RunRecord] = {}
        self._heartbeat = _Heartbeat(self.store, self.owner, options.heartbeat_s)

    # -- public --------------------------------------------------------------------------------
    def execute(self, config: StageConfig, *, index: int | None = None) -> Outcome:
        start = time.perf_counter()
        entry = stage_for_config(config)
        rid = run_id(entry.name, entry.version, config)
        before = self.store.get(rid)
        if before is not None and before.status is RunStatus.DONE:
            return Outcome(rid, entry.name, "skipped", 0.0, index=index)
        try:
            record = self.record_for(config, known=before)
        except UpstreamFailedError as exc:
            return Outcome(rid, entry.name, "failed", time.perf_counter() - start, str(exc), index)
        status = "done" if record.status is RunStatus.DONE else "failed"
        if status == "failed" and record.attempts == (before.attempts if before else 0):
            status = "failed-earlier"
        return Outcome(rid, entry.name, status, time.perf_counter() - start, record.error, index)

    def record_for(self, config: StageConfig, known: RunRecord | None = None) -> RunRecord:
        """The finished (or failed) record of ``config``, running it and its upstream if needed.

        ``known``: the store's record of this run, when the caller has just read it.
        """
        entry = stage_for_config(config)
        rid = run_id(entry.name, entry.version, config)
        if rid in self._finished:
            return self._finished[rid]
        rec = known if known is not None else self.store.get(rid)
        if rec is not None and rec.status is RunStatus.DONE:
            self._finished[rid] = rec
            return rec
        upstream = self._upstream(config)
        run_dir = self.root / rid
        new = (
            None if rec is not None else (entry.name, _config_json(config), str(run_dir.resolve()))
        )
        tries_left = self.options.retries + 1
        retry_failed = self.options.retry_failed
        while True:
            attempt = self.store.claim(
                rid,
                self.owner,
                retry_failed=retry_failed,
                stale_after_s=self.options.stale_after_s,
                owner_is_dead=owner_is_dead,
                ensure=new,
            )
            new = None
            if attempt is None:
                rec = self.store.get(rid)
                if rec is None:
                    raise AssayError(f"run {rid} vanished from store {self.store.url}")
                if rec.status is RunStatus.DONE or rec.status is RunStatus.FAILED:
                    break
                time.sleep(WAIT_POLL_S)  # another process holds it: wait for its outcome
                continue
            rec = self._run(entry, config, rid, run_dir, upstream, attempt)
            tries_left -= 1
            if rec.status is RunStatus.DONE or tries_left == 0:
                break
            retry_failed = True  # --retries: try again within this invocation
        if rec.status is RunStatus.DONE:
            self._finished[rid] = rec
        return rec

    def close(self) -> None:
        self.store.close()

    # -- internals -----------------------------------------------------------------------------
    def _upstream(self, config: StageConfig) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in config.upstream().items():
            subs = _flatten_upstream(value, name)
            handed = []
            for sub in subs:
                rec = self.record_for(sub)
                if rec.status is not RunStatus.DONE:
                    raise UpstreamFailedError(
                        f"upstream run {rec.id} ({name}) failed: {rec.error}; "
                        f"see {rec.dir}/log.txt, fix it and rerun with --retry-failed"
                    )
                handed.append(
                    UpstreamRun(rec.id, rec.stage, sub, Path(rec.dir or ""), rec.results or {})
                )
            if isinstance(value, StageConfig):
                out[name] = handed[0]
            elif isinstance(value, Mapping):
                out[name] = dict(zip(value.keys(), handed, strict=True))
            else:
                out[name] = handed
        return out

    def _run(
        self,
        entry: Stage,
        config: StageConfig,
        rid: str,
        run_dir: Path,
        upstream: dict[str, Any],
        attempt: int,
    ) -> RunRecord:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("results.json", "error.txt"):  # left by an earlier, killed attempt
            (run_dir / stale).unlink(missing_ok=True)
        started = time.time()
        config_json = _config_json(config)
        atomic_write_json(run_dir / "config.json", config_json)
        seed = getattr(config, "seed", None)
        prov = start_record(seed=seed, device=getattr(config, "device", None), attempt=attempt)
        handle = Run(run_id=rid, stage=entry.name, config=config, dir=run_dir,
                     upstream=upstream, attempt=attempt)  # fmt: skip
        self._heartbeat.watch(rid)
        try:
            if entry.isolate or self.options.timeout_s is not None:
                from ._child import run_in_child

                results = run_in_child(entry, config, handle, self.options.timeout_s)
            else:
                results = call_stage(entry, config, handle)
            atomic_write_json(run_dir / "results.json", results, fsync=True)
            status, error = RunStatus.DONE, None
        except KeyboardInterrupt:
            self._heartbeat.unwatch()
            handle.log(f"attempt {attempt} interrupted; the run goes back to pending")
            self.store.finish(rid, self.owner, RunStatus.PENDING)
            raise
        except Exception as exc:
            results = None
            status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        finally:
            self._heartbeat.unwatch()
        ended = time.time()
        prov["time_end"] = ended
        prov["duration_s"] = ended - started
        prov["device"] = _resolved_device(config, prov["device"])
        prov.update(run_id=rid, stage=entry.name, status=status.value, error=error)
        atomic_write_json(run_dir / "provenance.json", prov)
        self.store.finish(rid, self.owner, status, results=results, error=error)
        handle.log(f"attempt {attempt} by {self.owner}: {status.value} in {ended - started:.3f}s"
                   + (f": {error}" if error else ""))  # fmt: skip
        return RunRecord(
            id=rid, stage=entry.name, status=status, config=config_json,
            results=results, error=error, attempts=attempt, owner=self.owner,
            started=started, ended=ended, dir=run_dir.resolve(),
        )  # fmt: skip


def call_stage(entry: Stage, config: StageConfig, handle: Run) -> dict[str, Any]:
    """Seed, call the stage function, and check that it returned JSON-able results."""
    from ._torch import seed_everything

    seed = getattr(config, "seed", None)
    if isinstance(seed, int):
        seed_everything(seed)
    results = entry.fn(config, handle)
    if results is None:
        return {}
    if not isinstance(results, Mapping):
        raise AssayError(
            f"stage {entry.name} returned a {type(results).__name__}; "
            "a stage returns a dict of results (or None)"
        )
    out = to_jsonable(results)
    dumps(out)  # fail here, in the run, if anything is not JSON
    return out


def _resolved_device(config: StageConfig, spec: Any) -> Any:
    """The device a run used: ``auto`` resolved, when the config names one and torch is loaded."""
    import sys

    if not isinstance(spec, str) or "torch" not in sys.modules:
        return spec
    from ._torch import resolve_device

    try:
        return resolve_device(spec)
    except AssayError:
        return spec


def _config_json(config: StageConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


class _Heartbeat:
    """One daemon thread per Runner that refreshes the heartbeat of the run in flight."""

    def __init__(self, store: Store, owner: str, every_s: float) -> None:
        self._store, self._owner, self._every_s = store, owner, every_s
        self._current: str | None = None
        self._thread: threading.Thread | None = None

    def watch(self, rid: str) -> None:
        self._current = rid
        if self._thread is None:  # started on first use, reused for every later run
            self._thread = threading.Thread(target=self._loop, daemon=True, name="assay-heartbeat")
            self._thread.start()

    def unwatch(self) -> None:
        self._current = None

    def _loop(self) -> None:
        while True:
            time.sleep(self._every_s)
            rid = self._current
            if rid is None:
                continue
            try:
                self._store.heartbeat(rid, self._owner)
            except Exception:  # a missed beat is harmless; the next one retries
                continue
