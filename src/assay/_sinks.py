"""Sinks: log every run to the trackers researchers already use, besides assay's own files.

    assay run SUITE --sink wandb,mlflow,tensorboard

- ``wandb``: a Weights & Biases run in offline mode under ``ROOT/wandb/`` (``wandb sync
  ROOT/wandb/offline-run-*`` uploads it later; ``WANDB_MODE=online`` logs live instead);
- ``mlflow``: an MLflow run in ``sqlite:///ROOT/mlflow.db`` (or ``MLFLOW_TRACKING_URI``), one
  experiment per suite, artifacts under ``ROOT/mlflow-artifacts/``;
- ``tensorboard``: event files under ``ROOT/tensorboard/<suite>/<group>/<run id>/``.

Every path a sink writes stays under ROOT: names that become folders (suite, group, run id) go
through :func:`safe_name` first (a suite named ``../../x`` or ``/tmp/abs`` is one folder named
``x`` / ``tmp_abs``), and ``wandb/``, ``mlflow.db``, ``mlflow-artifacts/`` and the TensorBoard
folder are checked by the engine's root guard, so a link planted in ROOT does not lead a
tracker outside (the sink reports it and the run goes on without it).

Each records the config as parameters, ``run.log_metrics`` as metrics with their steps, the
results as the run's summary (and the artifacts when asked), and tags the tracker's run with
the assay run id, stage, suite and *group* (a hash of the config minus its seed fields), so the
tracker groups the seeds of one configuration.

A sink never fails a run: one that cannot be imported or raises (not installed, offline, a full
disk, a quota) is switched off for that run and reported once, through the ``warn`` callback
(the runner writes it to the run's log.txt). Metrics a stage logged where no sink could see
them (a run in a child process) are replayed from ``metrics.jsonl`` when the run finishes, so
every sink receives every line exactly once.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ._engine._config import is_replicate
from ._engine._errors import ConfigError
from ._engine._guard import OutsideRootError, make_dir_in_root, open_in_root, real_in_root

INSTALL_HINT = "pip install 'assay[sinks]'"
MLFLOW_PARAM_CHARS = 6000  # MLflow refuses longer parameter values
MLFLOW_BATCH = 100  # params per log_batch call (MLflow's limit)
WANDB_TAG_CHARS = 64  # W&B refuses longer tags
NAME_CHARS = 128  # a folder name well under every filesystem's 255-byte limit
SINK_CONNECT_S = 5.0  # a tracker server that does not answer a connect within this is down
PROBLEMS_FILE = "sink-problems.jsonl"  # ROOT/: what each invocation's sinks could not do

# Sinks that failed in this process: later runs skip them at once instead of waiting on the
# same dead server again (a suite of 100 runs against an unreachable MLflow: one wait, not 100).
_FAILED: dict[tuple[str, str], str] = {}  # (sink, run root) -> the message reported


class SinkError(ConfigError):
    """An unknown sink name."""


def parse_sinks(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"wandb,mlflow"`` or ``["wandb", "mlflow"]`` -> the validated names, in order, once each."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower() for n in items if str(n).strip()]
    unknown = [n for n in names if n not in SINKS]
    if unknown:
        raise SinkError(f"unknown sink(s) {', '.join(unknown)}; valid: {', '.join(SINKS)} "
                        "(e.g. --sink wandb,mlflow)")  # fmt: skip
    return tuple(dict.fromkeys(names))


def group_name(stage: str, params: Mapping[str, Any] | None) -> str | None:
    """``example.fit degree=3``: the stage and the suite's varying parameters but the seeds, so
    a tracker groups a configuration's seeds under a name a researcher reads; None when
    nothing but seeds varies (the caller falls back to :func:`seed_free_group`)."""
    shown = {k: v for k, v in (params or {}).items() if not is_replicate(k.rsplit(".", 1)[-1])}
    if not shown:
        return None
    return f"{stage} " + " ".join(f"{k}={v}" for k, v in shown.items())


def seed_free_group(config: Mapping[str, Any], prefix: str) -> str:
    """``<prefix>-<10 hex>``: equal for runs whose configs differ only in fields named seed."""

    def strip(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return {k: strip(v) for k, v in sorted(obj.items()) if not is_replicate(k)}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    digest = hashlib.sha256(json.dumps(strip(config), sort_keys=True, default=str).encode())
    return f"{prefix}-{digest.hexdigest()[:10]}"


def flat_scalars(obj: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings flattened to ``a.b`` keys; lists kept as their JSON text."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_scalars(value, name + sep, sep))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``values`` as floats; "nan"/"inf" strings count, bools do not."""
    out = {}
    for key, value in flat_scalars(values, sep="/").items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) or value in ("nan", "inf", "-inf"):
            out[key] = float(value)
    return out


class Sink(abc.ABC):
    """One tracker for one run attempt. Subclasses open their run in ``__init__``."""

    name: ClassVar[str]

    def __init__(self, ctx: SinkContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        """One ``run.log_metrics`` line: numeric values only."""

    @abc.abstractmethod
    def finish(self, status: str, results: Mapping[str, Any] | None, artifacts: Path | None):
        """Record the results (summary) and the end state; upload ``artifacts`` when given."""


class SinkContext:
    """What every sink is told about the run it logs."""

    def __init__(self, *, run_id: str, stage: str, suite: str | None, config: Mapping[str, Any],
                 root: Path, attempt: int, params: Mapping[str, Any] | None = None,
                 upstream: bool = False) -> None:  # fmt: skip
        self.run_id, self.stage, self.suite = run_id, stage, suite
        self.config = dict(config)
        self.root = Path(root)
        self.attempt = attempt
        self.project = suite or stage
        # the configuration minus its seeds: one TensorBoard HParams session group, so seeds
        # aggregate; named for people by the varying parameters where the plan has them
        self.group_key = seed_free_group(self.config, self.project)
        self.group = group_name(stage, params) or self.group_key
        # one tracker run per attempt: a retried run is a new tracker run with the same tags
        self.tracker_id = run_id if attempt <= 1 else f"{run_id}-a{attempt}"
        # upstream runs share the suite's project/experiment: their role and stage tags let a
        # user filter them out (W&B tag "upstream", MLflow tags.`assay.role` = 'upstream')
        self.upstream = upstream
        self.tags = {"assay.run_id": run_id, "assay.stage": stage, "assay.suite": suite or "",
                     "assay.group": self.group, "assay.attempt": str(attempt),
                     "assay.role": "upstream" if upstream else "suite"}  # fmt: skip


class WandbSink(Sink):
    name = "wandb"

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        import wandb

        make_dir_in_root(ctx.root, ctx.root / "wandb")  # where W&B writes: dir=ROOT -> ROOT/wandb
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                  save_code=False, disable_git=True, disable_job_creation=True,
                                  init_timeout=2 * SINK_CONNECT_S)  # fmt: skip
        role = ["upstream"] if ctx.upstream else []
        tags = [t[:WANDB_TAG_CHARS]
                for t in dict.fromkeys([ctx.run_id, ctx.project, ctx.stage, *role])]  # fmt: skip
        self.run = wandb.init(
            mode=os.environ.get("WANDB_MODE", "offline"), dir=str(ctx.root),
            project=safe_name(ctx.project), name=ctx.run_id, id=ctx.tracker_id, group=ctx.group,
            job_type=ctx.stage, tags=tags, config={**ctx.config, "_assay": ctx.tags},
            settings=settings, reinit="create_new",
        )  # fmt: skip
        # assay's step is the x-axis; W&B's own counter would reject a resumed run's steps
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"step": step, **values})

    def finish(self, status: str, results: Mapping[str, Any] | None, artifacts: Path | None):
        import wandb

        if results:
            self.run.summary.update(flat_scalars(results, sep="/"))
        self.run.summary["assay_status"] = status
        if artifacts is not None and artifacts.is_dir() and any(artifacts.iterdir()):
            art = wandb.Artifact(f"{self.ctx.tracker_id}-artifacts", type="assay-artifacts")
            art.add_dir(str(artifacts))
            self.run.log_artifact(art)
        self.run.finish(exit_code=0 if status == "done" else 1)


class MlflowSink(Sink):
    name = "mlflow"

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        default = uri is None
        if default:  # the database and artifacts in ROOT: no link may lead them elsewhere
            make_dir_in_root(ctx.root, ctx.root)
            real_in_root(ctx.root, ctx.root / "mlflow.db", verb="write")
            real_in_root(ctx.root, ctx.root / "mlflow-artifacts", verb="write")
        uri = uri or f"sqlite:///{(ctx.root / 'mlflow.db').resolve()}"
        if uri.startswith(("http://", "https://")):  # a server: bounded, no minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(2 * SINK_CONNECT_S)))
        self.client = MlflowClient(tracking_uri=uri)
        name = ctx.project
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = (ctx.root / "mlflow-artifacts").resolve().as_uri() if default else None
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another worker created it meanwhile
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        run = self.client.create_run(exp_id, run_name=ctx.tracker_id, tags=ctx.tags)
        self.mlflow_run_id = run.info.run_id
        params = [
            Param(k, str(v)[:MLFLOW_PARAM_CHARS]) for k, v in flat_scalars(ctx.config).items()
        ]
        for i in range(0, len(params), MLFLOW_BATCH):
            self.client.log_batch(self.mlflow_run_id, params=params[i : i + MLFLOW_BATCH])

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in values.items()]
        for i in range(0, len(metrics), MLFLOW_BATCH * 10):
            self.client.log_batch(self.mlflow_run_id, metrics=metrics[i : i + MLFLOW_BATCH * 10])

    def finish(self, status: str, results: Mapping[str, Any] | None, artifacts: Path | None):
        from mlflow.entities import Metric

        if results:
            stamp = int(time.time() * 1000)
            scalars = numbers({"results": results})
            metrics = [Metric(k.replace("/", "."), v, stamp, 0) for k, v in scalars.items()]
            for i in range(0, len(metrics), MLFLOW_BATCH * 10):
                self.client.log_batch(
                    self.mlflow_run_id, metrics=metrics[i : i + MLFLOW_BATCH * 10]
                )
            self.client.log_dict(self.mlflow_run_id, dict(results), "results.json")
        if artifacts is not None and artifacts.is_dir() and any(artifacts.iterdir()):
            self.client.log_artifacts(self.mlflow_run_id, str(artifacts), "artifacts")
        self.client.set_terminated(
            self.mlflow_run_id, "FINISHED" if status == "done" else "FAILED"
        )


class TensorBoardSink(Sink):
    name = "tensorboard"

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        parts = (safe_name(ctx.project), safe_name(ctx.group), safe_name(ctx.tracker_id))
        self.logdir = ctx.root.joinpath("tensorboard", *parts)
        make_dir_in_root(ctx.root, self.logdir)
        self.writer = EventFileWriter(str(self.logdir))
        hparams = {k: v for k, v in flat_scalars(ctx.config).items()
                   if isinstance(v, bool | int | float | str)}  # fmt: skip
        self._write(hp.hparams_pb(hparams, trial_id=ctx.group_key), step=0)  # seeds: one group
        self._text("config", "```\n" + json.dumps(ctx.config, indent=2, default=str) + "\n```")
        self._text("assay", json.dumps(ctx.tags))

    def _write(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto import event_pb2

        self.writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def _text(self, tag: str, text: str) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._write(text_pb(tag, text), step=0)

    def _scalars(self, step: int, values: Mapping[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                             for k, v in values.items()])  # fmt: skip
        self._write(summary, step)

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self._scalars(step, values)

    def finish(self, status: str, results: Mapping[str, Any] | None, artifacts: Path | None):
        if results:
            self._scalars(0, numbers({"results": results}))
            self._text("results", "```\n" + json.dumps(dict(results), indent=2) + "\n```")
        self._text("status", status)
        self.writer.flush()
        self.writer.close()


SINKS: dict[str, type[Sink]] = {s.name: s for s in (WandbSink, MlflowSink, TensorBoardSink)}


class SinkSet:
    """The sinks of one run attempt. Never raises: a failing sink is reported once and dropped.

    Attributes:
        problems: sink name -> the one message reported for it.
    """

    def __init__(self, sinks: list[Sink], warn: Callable[[str], None], metrics_path: Path | None,
                 problems: dict[str, str]) -> None:  # fmt: skip
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

    def finish(self, status: str, results: Mapping[str, Any] | None = None,
               artifacts_dir: Path | None = None) -> None:  # fmt: skip
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
    ctx = SinkContext(run_id=run_id, stage=stage, suite=suite, config=config, root=Path(root),
                      attempt=attempt, params=params, upstream=upstream)  # fmt: skip
    opened: list[Sink] = []
    problems: dict[str, str] = {}
    for name in parse_sinks(list(names)):
        if (name, str(ctx.root)) in _FAILED:  # reported when it failed: not again for each run
            problems[name] = _FAILED[name, str(ctx.root)]
            continue
        try:
            opened.append(SINKS[name](ctx))
        except ImportError as exc:
            _report(problems, warn, name, f"is not installed ({INSTALL_HINT})", exc)
            _FAILED[name, str(ctx.root)] = problems[name]
        except Exception as exc:
            _report(problems, warn, name, "could not start", exc)
            _FAILED[name, str(ctx.root)] = problems[name]
    metrics = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
    return SinkSet(opened, warn, metrics, problems)


def _report(problems: dict[str, str], warn: Callable[[str], None], name: str, what: str,
            exc: BaseException) -> None:  # fmt: skip
    if name in problems:
        return
    # the whole message, lines joined: a hint's fix often stands on its last line
    detail = " ".join(str(exc).split())[:600]
    msg = (f"sink {name} {what}: {type(exc).__name__}{': ' + detail if detail else ''}; the run "
           f"goes on without {name}")  # fmt: skip
    problems[name] = msg
    with contextlib.suppress(Exception):  # the report of a problem must not become one
        warn(msg)


def _open_metrics(path: Path) -> Any:
    """A run's metrics.jsonl (``<root>/<id>/metrics.jsonl``), never through a link leading out:
    such a file reads as empty (the runner refuses the run for it before a sink opens)."""
    try:
        return os.fdopen(open_in_root(path.parent.parent, path), "rb")
    except OutsideRootError:
        return contextlib.nullcontext(iter(()))


def _count_lines(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    with _open_metrics(path) as f:
        return sum(1 for line in f if line.endswith(b"\n"))


def _lines(path: Path, skip: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with _open_metrics(path) as f:
        for i, raw in enumerate(f):
            line = raw.decode("utf-8", errors="replace")
            if i < skip or not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out.append(row)
    return out


def safe_name(name: str) -> str:
    """``name`` as one folder name that stays where it is put: letters, digits, ``._-`` kept,
    anything else (``/``, ``\\``, spaces) as ``_``, no leading dots (so never ``.`` or ``..``).

    ``../../x`` -> ``x``, ``/tmp/abs`` -> ``tmp_abs``, ``""`` -> ``assay``.
    """
    text = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    return text.lstrip("._")[:NAME_CHARS] or "assay"


def probe(name: str) -> str | None:
    """Why sink ``name`` cannot work in this invocation (not installed, its server does not
    answer within :data:`SINK_CONNECT_S`), or None. Checked once, before any run starts."""
    import importlib.util
    import socket
    from urllib.parse import urlsplit

    module = {"wandb": "wandb", "mlflow": "mlflow", "tensorboard": "tensorboard"}.get(name)
    if module is None:  # a sink registered by a plug-in: nothing to probe
        return None
    if importlib.util.find_spec(module) is None:
        return f"sink {name} is not installed ({INSTALL_HINT})"
    if name == "mlflow":
        url = os.environ.get("MLFLOW_TRACKING_URI", "")
        if url and not url.startswith(("http://", "https://", "sqlite:", "postgresql", "mysql")):
            if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
                return (f"sink mlflow: MLFLOW_TRACKING_URI={url} is MLflow's file store, which "
                        "the installed MLflow keeps in maintenance mode (it writes nothing); unset "
                        "MLFLOW_TRACKING_URI (assay then uses sqlite:///ROOT/mlflow.db), point it "
                        "at a database or server, or set MLFLOW_ALLOW_FILE_STORE=true")  # fmt: skip
            return None
    elif name == "wandb" and os.environ.get("WANDB_MODE", "offline") not in ("offline", "disabled"):
        url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    else:
        return None
    if not url.startswith(("http://", "https://")):
        return None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=SINK_CONNECT_S).close()
    except OSError as exc:
        return (f"sink {name}: cannot connect to {parts.hostname}:{port} within "
                f"{SINK_CONNECT_S:g} s ({exc.strerror or exc}); start the server or fix the "
                "URL")  # fmt: skip
    return None


def record_problems(root: str | Path, problems: Mapping[str, str]) -> None:
    """Append this invocation's sink problems to ``ROOT/sink-problems.jsonl`` (the report
    lists them)."""
    if not problems:
        return
    from ._engine._io import dumps

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


def replay(records: Sequence[Any], names: Sequence[str], *, root: str | Path,
           suite: str | None, warn: Callable[[str], None] | None = None) -> int:  # fmt: skip
    """Send finished runs to sinks after the fact (``assay sink replay``): config, every
    ``metrics.jsonl`` line with its step, results and end state. Returns the runs sent."""
    sent = 0
    for rec in records:
        run_dir = Path(rec.dir) if rec.dir else Path(root) / rec.id
        sinks = open_sinks(names, run_id=rec.id, stage=rec.stage, suite=suite,
                           config=rec.config, root=root, run_dir=run_dir,
                           attempt=max(rec.attempts, 1), warn=warn)  # fmt: skip
        if not sinks:
            continue
        sinks._start = 0  # every line: no sink saw any of them live
        sinks.finish(rec.status.value, rec.results)
        sent += 1
    return sent
