"""A run is three things: the live :class:`Run` handle a stage writes to, the frozen
:class:`RunRecord` the store returns, and :func:`detached_run`, a handle needing no store."""

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
from ._guard import append_text_in_root, check_tree_in_root, make_dir_in_root, real_in_root
from ._io import (
    atomic_dir,
    atomic_path,
    atomic_write_json,
    load_torch_file,
    read_json,
    to_jsonable,
)

CHECKPOINT_FILE = "checkpoint.pt"  # torch.save, loaded with weights_only=True
CHECKPOINT_JSON = "checkpoint.json"  # the same state as JSON when torch is not installed
PROGRESS_FILE = "progress.json"
PROGRESS_EVERY_S = 0.5  # progress.json is rewritten at most this often
# ... and a count reaching its total at most this often: a write costs ~2 ms, so a patching
# chunk of 1 ms finishing its input batches pays at most 2%, and a unit's last count is not
# throttled away behind a slow step (a checkpoint) that follows it
COMPLETE_EVERY_S = 0.1


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
    if not os.path.lexists(path):
        have = sorted(p.name for p in (Path(run_dir) / "artifacts").glob("*"))
        raise AssayError(
            f"run {run_id} has no artifact {name!r}; it has: {', '.join(have) or 'none'}"
        )
    # runs live at <root>/<id>: the artifact, and any link inside a folder artifact, must stay
    # in that root (the caller, or the library it hands the path to, opens it next)
    check_tree_in_root(Path(run_dir).parent, path)
    return path


class Run:
    """The live handle a stage function receives: where to write metrics, artifacts, checkpoints.

    Every file it writes is written atomically. Build one with :func:`detached_run` in notebooks
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
        root: str | Path | None = None,
    ) -> None:
        self.id = run_id
        self.stage = stage
        self.config = config
        self.dir = Path(dir)
        self.upstream: Mapping[str, Any] = dict(upstream or {})
        self.attempt = attempt
        self.superseded = False  # set when another process took the run over (stale heartbeat)
        self.sinks: Any = None  # the trackers this attempt logs to (assay.sinks.SinkSet)
        self.progress_used = False
        self._artifacts_made = False
        # every file this handle opens stays inside the root (no link leads out; see _guard)
        self.root = Path(root) if root is not None else self.dir.parent
        self._real_dir: str | None = None
        if make_dir:  # the runner has made it already
            self._real_dir = make_dir_in_root(self.root, self.dir)

    def _in_dir(self, name: str) -> str:
        """``<run dir>/<name>`` by the run folder's resolved path, checked once per handle."""
        if self._real_dir is None:
            self._real_dir = real_in_root(self.root, self.dir, verb="write into")
        return os.path.join(self._real_dir, name)

    @property
    def artifacts_dir(self) -> Path:
        """``<run dir>/artifacts``, created on first use."""
        path = self.dir / "artifacts"
        if not self._artifacts_made:
            make_dir_in_root(self.root, path)
            self._artifacts_made = True
        return path

    @property
    def checkpoint_dir(self) -> Path:
        path = self.dir / "checkpoints"
        make_dir_in_root(self.root, path)
        return path

    # -- logging -----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Append a timestamped line to ``log.txt``."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = f"{stamp} {message}\n"
        append_text_in_root(self.root, self._in_dir("log.txt"), text, folder_checked=True)

    def log_metrics(self, step: int, **values: Any) -> None:
        """Append one line ``{"step": .., "time": .., **values}`` to ``metrics.jsonl``."""
        line = {"step": int(step), "time": round(time.time(), 3), **to_jsonable(values)}
        text = json.dumps(line) + "\n"
        append_text_in_root(self.root, self._in_dir("metrics.jsonl"), text, folder_checked=True)
        if self.sinks:
            self.sinks.log_metrics(step, values)

    def progress(self, total: int | None = None, desc: str = "", *, start: int = 0) -> Progress:
        """A progress counter shown in ``assay run``'s live display (epochs, directions, ...).

        ``with run.progress(n_epochs, "epoch") as bar: ... bar.update()``; the display shows
        ``desc n/total`` and an ETA beside the run's parameters. Nest with ``bar.inner(n,
        "batch")``; a resumed run passes ``start`` (the units already done). See
        :class:`Progress`.
        """
        self.progress_used = True
        return Progress(Path(self._in_dir(PROGRESS_FILE)), total, desc, start=start, log=self.log)

    # -- artifacts ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def write_artifact(self, name: str) -> Iterator[Path]:
        """Yield a temporary path; it becomes ``artifacts/<name>`` only if the block succeeds."""
        with atomic_path(self.artifacts_dir / artifact_name(name), root=self.root) as tmp:
            yield tmp

    @contextlib.contextmanager
    def write_artifact_dir(self, name: str) -> Iterator[Path]:
        """Yield a fresh temporary folder; it becomes ``artifacts/<name>/`` whole, only if the
        block succeeds (``model.save_pretrained(tmp)``), with modes that follow the umask."""
        with atomic_dir(self.artifacts_dir / artifact_name(name), root=self.root) as tmp:
            yield tmp

    def save_json(self, name: str, obj: Any) -> Path:
        path = self.artifacts_dir / artifact_name(name)
        atomic_write_json(path, obj, root=self.root)
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
            atomic_write_json(
                self.checkpoint_dir / CHECKPOINT_JSON, state, fsync=True, root=self.root
            )
            return
        with atomic_path(self.checkpoint_dir / CHECKPOINT_FILE, fsync=True, root=self.root) as tmp:
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
            return read_json(json_path, root=self.root) if json_path.exists() else None
        return load_torch_file(
            real_in_root(self.root, path, verb="read"),
            trusted=trusted,
            fix="save plain state (state_dict(), lists, dicts), or, if this stage wrote the file "
            "itself, load it with run.load_checkpoint(trusted=True)",
        )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, dir={str(self.dir)!r})"


class Progress:
    """A run's progress counter, written to ``progress.json`` for the live display.

    One bar per run, however deep the loops: ``inner(total, desc)`` counts inside the current
    unit of this counter and the display reads ``epoch 3/10, batch 120/400``; ``note(text)`` says
    what happens between updates (``evaluating``). ``start`` is where a resumed run picks up: the
    run's log says ``resumed at step 300 of 1200`` and the ETA counts only work done now.
    Writes are throttled (at most every ``PROGRESS_EVERY_S``) and atomic. Closing the outer
    counter (leaving its ``with`` block) writes its final state and a line in ``log.txt``
    (``progress: epoch 10/10 in 3.1s``), the record that outlives ``progress.json``.
    """

    def __init__(
        self,
        path: Path,
        total: int | None,
        desc: str,
        *,
        start: int = 0,
        log: Any = None,
        parent: Progress | None = None,
    ) -> None:
        self.path, self.total, self.desc = path, total, desc
        self.n = self.start = int(start)
        self.started = time.time()
        self._log, self._parent = log, parent
        self._inner: Progress | None = None
        self._note = ""
        self._written = 0.0
        if start and log is not None:
            log(f"resumed at {desc} {start} of {total}")
        if parent is None:  # an inner counter is written once its parent holds it
            self._write(force=True)

    def update(self, n: int = 1) -> None:
        """``n`` more units done; an inner counter and a note belong to the finished unit."""
        self.n += n
        self._inner, self._note = None, ""
        self._write(every_s=COMPLETE_EVERY_S if self.n == self.total else PROGRESS_EVERY_S)

    def set(self, n: int) -> None:
        self.n = n
        self._inner, self._note = None, ""
        self._write()

    def inner(self, total: int | None, desc: str) -> Progress:
        """A counter inside the current unit (the batches of this epoch), shown on this bar."""
        self._inner = Progress(self.path, total, desc, parent=self)
        self._write()
        return self._inner

    def note(self, text: str) -> None:
        """Say what the run does until the next update (``evaluating``); shown after the counts."""
        self._note = text
        self._write(force=True)

    def track(self, items: Any) -> Iterator[Any]:
        """Yield each item, counting one unit after each."""
        for item in items:
            yield item
            self.update()

    @property
    def label(self) -> str:
        """``epoch 3/10, batch 120/400, evaluating``: this counter and every inner one."""
        parts: list[str] = []
        notes: list[str] = []
        node: Progress | None = self
        while node is not None:
            count = f"{node.n}/{node.total}" if node.total is not None else str(node.n)
            parts.append(f"{node.desc} {count}".strip())
            notes += [node._note] if node._note else []
            node = node._inner
        return ", ".join(parts + notes)

    @property
    def position(self) -> float:
        """Units done, the current one counted by the fraction its inner counters report."""
        frac = 0.0
        if self._inner is not None and self._inner.total:
            frac = min(self._inner.position / self._inner.total, 1.0)
        return self.n + frac

    def _write(self, force: bool = False, every_s: float = PROGRESS_EVERY_S) -> None:
        if self._parent is not None:
            self._parent._write(force, every_s)
            return
        now = time.time()
        if not force and now - self._written < every_s:
            return
        self._written = now
        atomic_write_json(
            self.path,
            {
                "desc": self.desc,
                "n": self.n,
                "total": self.total,
                "start": self.start,
                "position": self.position,
                "label": self.label,
                "started": self.started,
                "updated": now,
            },
        )

    def close(self, error: BaseException | None = None) -> None:
        """Write the final state; the outer counter also logs it (``progress: epoch 10/10``)."""
        self._write(force=True)
        if self._parent is None and self._log is not None:
            how = "stopped at" if error is not None else "progress:"
            self._log(f"{how} {self.label} in {time.time() - self.started:.1f}s")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close(exc)


def detached_run(
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


def record_from_dir(run_dir: Path, root: Path | None = None) -> RunRecord | None:
    """Rebuild a run's record from its directory (``assay reindex``); None if it is not a run.

    The directory is the source of truth: ``results.json`` exists only for a finished run (it is
    renamed into place after the store recorded the result), ``provenance.json`` says which
    attempt ended and how; a ``.results.attempt-N.json`` left by a kill before that rename is a
    finished result too. Unreadable files raise (OSError or ValueError); a file that is a link
    leading outside ``root`` (default: the run folder's parent) raises OutsideRootError.
    """
    root = root if root is not None else run_dir.parent
    config_path = run_dir / "config.json"
    if not config_path.exists():
        return None
    config = read_json(config_path, root=root)
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} holds a {type(config).__name__}, not a config mapping")
    prov_path = run_dir / "provenance.json"
    prov = read_json(prov_path, root=root) if prov_path.exists() else {}
    results_path = run_dir / "results.json"
    if not results_path.exists():
        left = sorted(run_dir.glob(".results.attempt-*.json"))
        results_path = left[-1] if left else results_path
    results = read_json(results_path, root=root) if results_path.exists() else None
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
