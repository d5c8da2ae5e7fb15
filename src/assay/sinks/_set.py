"""The sinks of one run attempt (:class:`SinkSet`), opened by name; the problems an invocation's
sinks met (``ROOT/sink-problems.jsonl``); replaying finished runs to sinks after the fact.

A sink never fails a run: one that cannot be imported or raises (not installed, offline, a full
disk, a quota) is switched off for that run and reported once, through the ``warn`` callback
(the runner writes it to the run's log.txt). Metrics a stage logged where no sink could see
them (a run in a child process) are replayed from ``metrics.jsonl`` when the run finishes, so
every sink receives every line exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core._guard import OutsideRootError, make_dir_in_root, open_in_root
from ..core._io import dumps
from ..core._metrics import read_metrics
from ._base import INSTALL_HINT, Sink, SinkContext, numbers, parse_sinks, sink_class

PROBLEMS_FILE = "sink-problems.jsonl"  # ROOT/: what each invocation's sinks could not do

# Sinks that failed in this process: later runs skip them at once instead of waiting on the
# same dead server again (a suite of 100 runs against an unreachable MLflow: one wait, not 100).
_FAILED: dict[tuple[str, str], str] = {}  # (sink, run root) -> the message reported


class SinkSet:
    """The sinks of one run attempt. Never raises: a failing sink is reported once and dropped.

    Attributes:
        problems: sink name -> the one message reported for it.
    """

    def __init__(
        self,
        sinks: list[Sink],
        warn: Callable[[str], None],
        metrics_path: Path | None,
        problems: dict[str, str],
    ) -> None:
        self.sinks = sinks
        self.warn = warn
        self.problems = problems
        self.metrics_path = metrics_path
        self._start = _count_lines(metrics_path)  # lines an earlier attempt logged
        self._forwarded = 0

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sinks]

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def _fail(self, sink: Sink, when: str, exc: BaseException) -> None:
        self.sinks = [s for s in self.sinks if s is not sink]
        _report(self.problems, self.warn, sink.name, f"failed in {when}", exc)

    def log_metrics(self, step: int, values: Mapping[str, Any]) -> None:
        """Forward one ``run.log_metrics`` line (call it after the line was written)."""
        self._forwarded += 1
        scalars = numbers(values)
        for sink in list(self.sinks):
            try:
                sink.log_metrics(int(step), scalars)
            except Exception as exc:
                self._fail(sink, "log_metrics", exc)

    def finish(
        self,
        status: str,
        results: Mapping[str, Any] | None = None,
        artifacts_dir: Path | None = None,
    ) -> None:
        """Replay the metric lines no sink saw, then record results and the end state.

        Args:
            status: ``done`` or ``failed`` (the run's final state for this attempt).
            artifacts_dir: the run's artifacts, uploaded where the sink supports it; None: not.
        """
        if self.sinks and self.metrics_path is not None:
            for row in _lines(self.metrics_path, self._start + self._forwarded):
                step = row.pop("step", 0)
                row.pop("time", None)
                self.log_metrics(step, row)
        for sink in list(self.sinks):
            try:
                sink.finish(status, results, artifacts_dir)
            except Exception as exc:
                self._fail(sink, "finish", exc)


def open_sinks(
    names: Sequence[str],
    *,
    run_id: str,
    stage: str,
    suite: str | None,
    config: Mapping[str, Any],
    root: str | Path,
    run_dir: str | Path | None = None,
    attempt: int = 1,
    warn: Callable[[str], None] | None = None,
    params: Mapping[str, Any] | None = None,
    upstream: bool = False,
) -> SinkSet:
    """Open the named sinks for one run attempt. Never raises for a sink that cannot open.

    Args:
        names: from :func:`parse_sinks` (validated: an unknown name is a SinkError here too).
        config: the run's config as JSON data (``config.json``).
        root: the run root; trackers write under it (``wandb/``, ``mlflow.db``, ``tensorboard/``).
        run_dir: the run's folder; its ``metrics.jsonl`` is replayed to the sinks at finish for
            lines they did not receive live.
        warn: called once per failing sink with a one-line message (default: stderr).
        params: the run's varying parameters in its suite (``{"degree": 3, "seed": 0}``); they
            name its group (``example.fit degree=3``).
        upstream: the run is another run's upstream (tagged ``assay.role=upstream``).
    """
    import sys

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    ctx = SinkContext(
        run_id=run_id,
        stage=stage,
        suite=suite,
        config=config,
        root=Path(root),
        attempt=attempt,
        params=params,
        upstream=upstream,
    )
    opened: list[Sink] = []
    problems: dict[str, str] = {}
    for name in parse_sinks(list(names)):
        if (name, str(ctx.root)) in _FAILED:  # reported when it failed: not again for each run
            problems[name] = _FAILED[name, str(ctx.root)]
            continue
        try:
            opened.append(sink_class(name)(ctx))
        except ImportError as exc:
            _report(problems, warn, name, f"is not installed ({INSTALL_HINT})", exc)
            _FAILED[name, str(ctx.root)] = problems[name]
        except Exception as exc:
            _report(problems, warn, name, "could not start", exc)
            _FAILED[name, str(ctx.root)] = problems[name]
    metrics = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
    return SinkSet(opened, warn, metrics, problems)


def _report(
    problems: dict[str, str], warn: Callable[[str], None], name: str, what: str, exc: BaseException
) -> None:
    if name in problems:
        return
    # the whole message, lines joined: a hint's fix often stands on its last line
    detail = " ".join(str(exc).split())[:600]
    msg = (
        f"sink {name} {what}: {type(exc).__name__}{': ' + detail if detail else ''}; the run "
        f"goes on without {name}"
    )
    problems[name] = msg
    with contextlib.suppress(Exception):  # the report of a problem must not become one
        warn(msg)


def _rows(path: Path | None) -> list[dict[str, Any]]:
    """A run's metric rows; a file linking outside the root reads as empty (the runner refuses
    the run for it before a sink opens)."""
    if path is None:
        return []
    try:
        return read_metrics(path)
    except OutsideRootError:
        return []


def _count_lines(path: Path | None) -> int:
    return len(_rows(path))


def _lines(path: Path, skip: int) -> list[dict[str, Any]]:
    return _rows(path)[skip:]


def probe(name: str) -> str | None:
    """Why sink ``name`` cannot work in this invocation (each sink's :meth:`Sink.probe`)."""
    return sink_class(name).probe()


def record_problems(root: str | Path, problems: Mapping[str, str]) -> None:
    """Append this invocation's sink problems to ``ROOT/sink-problems.jsonl`` (the report
    lists them)."""
    if not problems:
        return
    path = Path(root) / PROBLEMS_FILE
    make_dir_in_root(root, Path(root))
    fd = open_in_root(root, path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        for name, message in problems.items():
            f.write(dumps({"time": time.time(), "sink": name, "message": message}) + "\n")


def recorded_problems(root: str | Path) -> list[str]:
    """The sink problems recorded under ``root``, oldest first, one line each."""
    path = Path(root) / PROBLEMS_FILE
    if not path.exists():
        return []
    lines = []
    with _open_metrics_like(root, path) as f:
        for raw in f:
            with contextlib.suppress(ValueError, AttributeError):
                row = json.loads(raw)
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["time"]))
                lines.append(f"{when}: {row['message']}")
    return lines


def _open_metrics_like(root: str | Path, path: Path) -> Any:
    try:
        return os.fdopen(open_in_root(root, path), "rb")
    except OutsideRootError:
        return contextlib.nullcontext(iter(()))


def replay(
    records: Sequence[Any],
    names: Sequence[str],
    *,
    root: str | Path,
    suite: str | None,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Send finished runs to sinks after the fact (``assay sink replay``): config, every
    ``metrics.jsonl`` line with its step, results and end state. Returns the runs sent."""
    sent = 0
    for rec in records:
        run_dir = Path(rec.dir) if rec.dir else Path(root) / rec.id
        sinks = open_sinks(
            names,
            run_id=rec.id,
            stage=rec.stage,
            suite=suite,
            config=rec.config,
            root=root,
            run_dir=run_dir,
            attempt=max(rec.attempts, 1),
            warn=warn,
        )
        if not sinks:
            continue
        sinks._start = 0  # every line: no sink saw any of them live
        sinks.finish(rec.status.value, rec.results)
        sent += 1
    return sent
