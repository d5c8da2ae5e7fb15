"""A run is three things: the live :class:`Run` handle a stage writes to, the frozen
:class:`RunRecord` the store returns, and :func:`DetachedRun`, a handle needing no store."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ._config import StageConfig
from ._errors import AssayError
from ._errors import CheckpointError as CheckpointError
from ._io import atomic_path, atomic_write_json, load_torch_file, read_json, to_jsonable

CHECKPOINT_FILE = "checkpoint.pt"  # torch.save, loaded with weights_only=True
CHECKPOINT_JSON = "checkpoint.json"  # the same state as JSON when torch is not installed
PROGRESS_FILE = "progress.json"
PROGRESS_EVERY_S = 0.5  # progress.json is rewritten at most this often


class ArtifactNameError(AssayError):
    """An artifact name that would leave the run's ``artifacts/`` folder."""


def artifact_name(name: str | os.PathLike[str]) -> str:
    """``name`` normalised to a relative path inside ``artifacts/``, or ArtifactNameError.

    Names are relative POSIX paths (``plots/loss.png``); absolute paths, ``..`` and empty names
    are refused, since a stage's artifact must never be written outside its run directory.
    """
    text = os.fspath(name).replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":") or not parts:
        raise ArtifactNameError(
            f"artifact name {text!r} is not a relative path; name artifacts like 'model.pt' or "
            "'plots/loss.png' (they live in the run's artifacts/ folder)"
        )
    if ".." in parts:
        raise ArtifactNameError(
            f"artifact name {text!r} contains '..'; artifacts stay inside the run's artifacts/ "
            "folder: use a name like 'sub/file.json'"
        )
    return "/".join(parts)


class RunStatus(enum.StrEnum):
    """The one state vocabulary: the store's rows, plan rows and outcomes all use it."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Origin(enum.StrEnum):
    """Who produced a run's state, as seen by one invocation."""

    EXECUTED = "executed"  # this invocation ran it
    EARLIER = "earlier"  # it had finished (or failed) before this invocation looked
    ELSEWHERE = "elsewhere"  # another process ran it while this invocation waited


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one run in one invocation: its final state and who produced it."""

    id: str
    stage: str
    status: RunStatus
    origin: Origin
    duration_s: float = 0.0
    error: str | None = None
    index: int | None = None

    @property
    def label(self) -> str:
        """``done``, ``failed`` (ran here), ``skipped``, ``failed-earlier``, ``done-elsewhere``,
        ``failed-elsewhere``: how progress lines and counts name it."""
        if self.origin is Origin.EXECUTED:
            return self.status.value
        if self.origin is Origin.EARLIER:
            return "skipped" if self.status is RunStatus.DONE else f"{self.status.value}-earlier"
        return f"{self.status.value}-elsewhere"

    @property
    def failed(self) -> bool:
        return self.status is RunStatus.FAILED


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What the store knows of a run. ``config`` and ``results`` are plain JSON data."""

    id: str
    stage: str
    status: RunStatus
    config: dict[str, Any]
    results: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    owner: str | None = None
    heartbeat: float | None = None
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    dir: Path | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def artifact(self, name: str) -> Path:
        return _artifact(self.dir, name, self.id)


@dataclasses.dataclass(frozen=True)
class UpstreamRun:
    """A finished upstream run as handed to a downstream stage: typed config, results, files."""

    id: str
    stage: str
    config: StageConfig
    dir: Path
    results: dict[str, Any]

    def artifact(self, name: str) -> Path:
        return _artifact(self.dir, name, self.id)


def _artifact(run_dir: Path | None, name: str, run_id: str) -> Path:
    if run_dir is None:
        raise AssayError(f"run {run_id} has no directory recorded; run `assay reindex`")
    path = Path(run_dir) / "artifacts" / artifact_name(name)
    if not path.exists():
        have = sorted(p.name for p in (Path(run_dir) / "artifacts").glob("*"))
        raise AssayError(
            f"run {run_id} has no artifact {name!r}; it has: {', '.join(have) or 'none'}"
        )
    return path


class Run:
    """The live handle a stage function receives: where to write metrics, artifacts, checkpoints.

    Every file it writes is written atomically. Build one with :func:`DetachedRun` in notebooks
    and unit tests; the runner builds them for suites.
    """

    def __init__(
        self,
        *,
        run_id: str,
        stage: str,
        config: StageConfig,
        dir: str | Path,
        upstream: Mapping[str, Any] | None = None,
        attempt: int = 1,
        make_dir: bool = True,
    ) -> None:
        self.id = run_id
        self.stage = stage
        self.config = config
        self.dir = Path(dir)
        self.upstream: Mapping[str, Any] = dict(upstream or {})
        self.attempt = attempt
        self.superseded = False  # set when another process took the run over (stale heartbeat)
        self.sinks: Any = None  # the trackers this attempt logs to (assay._sinks.SinkSet)
        self.progress_used = False
        self._artifacts_made = False
        if make_dir:  # the runner has made it already
            self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def artifacts_dir(self) -> Path:
        """``<run dir>/artifacts``, created on first use."""
        path = self.dir / "artifacts"
        if not self._artifacts_made:
            path.mkdir(parents=True, exist_ok=True)
            self._artifacts_made = True
        return path

    @property
    def checkpoint_dir(self) -> Path:
        path = self.dir / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- logging -----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Append a timestamped line to ``log.txt``."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")

    def log_metrics(self, step: int, **values: Any) -> None:
        """Append one line ``{"step": .., "time": .., **values}`` to ``metrics.jsonl``."""
        line = {"step": int(step), "time": round(time.time(), 3), **to_jsonable(values)}
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        if self.sinks:
            self.sinks.log_metrics(step, values)

    def progress(self, total: int | None = None, desc: str = "") -> Progress:
        """A progress counter shown in ``assay run``'s live display (epochs, directions, ...).

        ``with run.progress(n_epochs, "epochs") as bar: ... bar.update()``; the display shows
        ``desc n/total`` and an ETA beside the run's parameters.
        """
        self.progress_used = True
        return Progress(self.dir / PROGRESS_FILE, total, desc)

    # -- artifacts ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def write_artifact(self, name: str) -> Iterator[Path]:
        """Yield a temporary path; it becomes ``artifacts/<name>`` only if the block succeeds."""
        with atomic_path(self.artifacts_dir / artifact_name(name)) as tmp:
            yield tmp

    def save_json(self, name: str, obj: Any) -> Path:
        path = self.artifacts_dir / artifact_name(name)
        atomic_write_json(path, obj)
        return path

    def artifact(self, name: str) -> Path:
        return _artifact(self.dir, name, self.id)

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, state: Any) -> None:
        """Atomically replace the run's checkpoint.

        ``state`` is plain data: tensors, numpy arrays, dicts, lists, tuples, numbers, strings
        (a ``state_dict()`` is). It is written with ``torch.save`` when torch is installed and as
        JSON otherwise; either way it loads back without executing code.
        """
        try:
            import torch
        except ImportError:
            atomic_write_json(self.checkpoint_dir / CHECKPOINT_JSON, state, fsync=True)
            return
        with atomic_path(self.checkpoint_dir / CHECKPOINT_FILE, fsync=True) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, *, trusted: bool = False) -> Any | None:
        """The last saved checkpoint, or None when this run has none (a fresh start).

        Loaded with ``weights_only=True``: tensors, containers, numbers and strings only. A file
        holding anything else (a pickled object, something planted in the run directory) is
        refused with :class:`CheckpointError`; ``trusted=True`` is the stage's explicit opt-in
        to unpickling a checkpoint it wrote itself.
        """
        path = self.checkpoint_dir / CHECKPOINT_FILE
        if not path.exists():
            json_path = self.checkpoint_dir / CHECKPOINT_JSON
            return read_json(json_path) if json_path.exists() else None
        return load_torch_file(
            path,
            trusted=trusted,
            fix="save plain state (state_dict(), lists, dicts), or, if this stage wrote the file "
            "itself, load it with run.load_checkpoint(trusted=True)",
        )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, dir={str(self.dir)!r})"


class Progress:
    """A run's progress counter, written to ``progress.json`` for the live display.

    Writes are throttled (at most every ``PROGRESS_EVERY_S``) and atomic; a finished counter
    writes its final state.
    """

    def __init__(self, path: Path, total: int | None, desc: str) -> None:
        self.path, self.total, self.desc = path, total, desc
        self.n = 0
        self.started = time.time()
        self._written = 0.0
        self._write(force=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._write()

    def set(self, n: int) -> None:
        self.n = n
        self._write()

    def _write(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._written < PROGRESS_EVERY_S:
            return
        self._written = now
        atomic_write_json(self.path, {"desc": self.desc, "n": self.n, "total": self.total,
                                      "started": self.started, "updated": now})  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._write(force=True)


def DetachedRun(  # noqa: N802 - reads like a class at call sites
    config: StageConfig,
    dir: str | Path | None = None,
    upstream: Mapping[str, Any] | None = None,
) -> Run:
    """A run handle with no store, for notebooks and unit tests of a stage function.

    Args:
        config: the stage's config; its stage must be registered.
        dir: where files go (a fresh temporary directory when omitted).
        upstream: what ``run.upstream`` should hold (e.g. records from :func:`assay.run_config`).
    """
    from ._config import run_id
    from ._registry import stage_for_config

    entry = stage_for_config(config)
    rid = run_id(entry.name, entry.version, config)
    path = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix=f"{rid}."))
    return Run(run_id=rid, stage=entry.name, config=config, dir=path, upstream=upstream)


def record_from_dir(run_dir: Path) -> RunRecord | None:
    """Rebuild a run's record from its directory (``assay reindex``); None if it is not a run.

    The directory is the source of truth: ``results.json`` exists only for a finished run (it is
    renamed into place after the store recorded the result), ``provenance.json`` says which
    attempt ended and how; a ``.results.attempt-N.json`` left by a kill before that rename is a
    finished result too. Unreadable files raise (OSError or ValueError).
    """
    config_path = run_dir / "config.json"
    if not config_path.exists():
        return None
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} holds a {type(config).__name__}, not a config mapping")
    prov_path = run_dir / "provenance.json"
    prov = read_json(prov_path) if prov_path.exists() else {}
    results_path = run_dir / "results.json"
    if not results_path.exists():
        left = sorted(run_dir.glob(".results.attempt-*.json"))
        results_path = left[-1] if left else results_path
    results = read_json(results_path) if results_path.exists() else None
    if results is not None:
        status = RunStatus.DONE
    elif prov.get("status") == RunStatus.FAILED.value:
        status = RunStatus.FAILED
    else:
        status = RunStatus.PENDING  # never finished: killed, or still running elsewhere
    rid = prov.get("run_id") or run_dir.name
    stage = prov.get("stage") or _stage_from_id(rid)
    return RunRecord(
        id=rid,
        stage=stage,
        status=status,
        config=config,
        results=results,
        error=prov.get("error"),
        attempts=prov.get("attempt", 0),
        created=prov.get("time_start"),
        started=prov.get("time_start"),
        ended=prov.get("time_end"),
        dir=run_dir,
    )


def _stage_from_id(rid: str) -> str:
    """``volume_train_ab12`` -> ``volume.train`` (stage names have one dot)."""
    head = rid.rsplit("_", 1)[0]
    family, _, step = head.partition("_")
    return f"{family}.{step}"
