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
import hashlib
import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..core._config import is_replicate
from ..core._errors import ConfigError
from ..core._plugins import PluginRegistry

ENTRY_POINT_GROUP = "assay.sinks"
INSTALL_HINT = "pip install 'assay[sinks]'"
NAME_CHARS = 128  # a folder name well under every filesystem's 255-byte limit
SINK_CONNECT_S = 5.0  # a tracker server that does not answer a connect within this is down


class SinkError(ConfigError):
    """An unknown sink name."""


class Sink(abc.ABC):
    """One tracker for one run attempt. Subclasses open their run in ``__init__``.

    A sink is a plug-in: a subclass registered under the ``assay.sinks`` entry-point group
    (assay's own wandb, mlflow and tensorboard included), so a new tracker is one module and one
    line of ``pyproject.toml``. Import the tracker's library inside the methods, never at the
    top of the module: listing and checking sinks must stay cheap.
    """

    name: ClassVar[str]

    @classmethod
    def probe(cls) -> str | None:
        """Why this sink cannot work in this invocation (not installed, its server does not
        answer within :data:`SINK_CONNECT_S`), or None. Checked once, before any run starts."""
        return None

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

    def __init__(
        self,
        *,
        run_id: str,
        stage: str,
        suite: str | None,
        config: Mapping[str, Any],
        root: Path,
        attempt: int,
        params: Mapping[str, Any] | None = None,
        upstream: bool = False,
    ) -> None:
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
        self.tags = {
            "assay.run_id": run_id,
            "assay.stage": stage,
            "assay.suite": suite or "",
            "assay.group": self.group,
            "assay.attempt": str(attempt),
            "assay.role": "upstream" if upstream else "suite",
        }


# Sink classes by name: loaded from the entry points on first use (a test may add its own).
SINKS: PluginRegistry[Sink] = PluginRegistry(
    ENTRY_POINT_GROUP, Sink, "sink", hint="e.g. --sink wandb,mlflow", error=SinkError
)
_CLASSES = SINKS._classes  # in-process additions (tests register fakes here)


def sink_names() -> list[str]:
    """Every registered sink name (the ``assay.sinks`` entry points and any added in-process)."""
    return SINKS.names()


def sink_class(name: str) -> type[Sink]:
    """The sink registered as ``name``; an unknown name fails with the valid ones."""
    return SINKS.get(name)


def parse_sinks(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"wandb,mlflow"`` or ``["wandb", "mlflow"]`` -> the validated names, in order, once each."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower() for n in items if str(n).strip()]
    known = set(sink_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SinkError(
            f"unknown sink(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))} "
            "(e.g. --sink wandb,mlflow)"
        )
    return tuple(dict.fromkeys(names))


def not_installed(name: str, module: str) -> str | None:
    """The message for a sink whose library ``module`` is not importable, or None."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"sink {name} is not installed ({INSTALL_HINT})"
    return None


def unreachable(name: str, url: str) -> str | None:
    """Why the tracker server at ``url`` (http/https) cannot be reached, or None."""
    if not url.startswith(("http://", "https://")):
        return None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=SINK_CONNECT_S).close()
    except OSError as exc:
        return (
            f"sink {name}: cannot connect to {parts.hostname}:{port} within "
            f"{SINK_CONNECT_S:g} s ({exc.strerror or exc}); start the server or fix the "
            "URL"
        )
    return None


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


def safe_name(name: str) -> str:
    """``name`` as one folder name that stays where it is put: letters, digits, ``._-`` kept,
    anything else (``/``, ``\\``, spaces) as ``_``, no leading dots (so never ``.`` or ``..``).

    ``../../x`` -> ``x``, ``/tmp/abs`` -> ``tmp_abs``, ``""`` -> ``assay``.
    """
    text = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    return text.lstrip("._")[:NAME_CHARS] or "assay"
