"""How runs execute and which runs an invocation takes: one typed object each.

Plain fields only: which executors and sinks exist is known above this layer, so the engine's
:func:`assay.engine._options.check_options` checks ``executor``, ``cluster`` and ``sink``
against their registries (every entry point into the engine calls it).

:class:`RunOptions` and :class:`Selection` are the single source of every option: the CLI
generates its flags from their fields (name, type, default, help), and :func:`assay.run_suite`
validates its keyword arguments against the same fields, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
from pydantic import Field

from ._errors import ConfigError

MAX_RUNS_DEFAULT = 1_000_000  # a plan above this many runs is refused before it is built


class _Options(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class RunOptions(_Options):
    """How runs execute. Shared by the CLI (``assay run --flag``) and the Python API."""

    root: Path = Field(Path("runs"), description="directory of run folders (default: runs)")
    store: str | None = Field(None, description="store URL (default: sqlite:///ROOT/assay.db)")
    workers: int = Field(1, ge=1, description="local worker processes (default 1: inline)")
    retry_failed: bool = Field(False, description="rerun runs recorded as failed")
    retries: int = Field(0, ge=0, description="extra attempts for a run that raises")
    timeout_s: float | None = Field(
        None, gt=0, description="per-run wall-clock limit; the run executes in a child process"
    )
    heartbeat_s: float = Field(10.0, gt=0, description="how often a running run beats")
    stale_after_s: float = Field(
        120.0, gt=0, description="a run on another host silent this long is taken over"
    )
    stop_on_error: bool = Field(False, description="start no new run after a failure")
    rerun_stale: bool = Field(
        False,
        description="rerun finished runs whose stage code changed since they ran (the old "
        "run folders are kept under ROOT/.stale/)",
    )
    sink: tuple[str, ...] = Field(
        (), description="log every run to trackers too: wandb, mlflow, tensorboard (a,b)"
    )
    sink_artifacts: bool = Field(False, description="upload run artifacts to the sinks too")
    suite_name: str | None = Field(
        None, description="the suite's name, recorded by sinks", json_schema_extra={"cli": False}
    )
    fsync: bool = Field(
        False,
        description="flush each result to disk before committing it (survives power loss, "
        "not only killed processes; costs a disk flush per run)",
    )
    executor: str = Field(
        "local", description="where runs execute: local, slurm, submitit-local, ray"
    )
    cluster: dict[str, Any] = Field(
        default_factory=dict, description="executor parameter KEY=VALUE (repeatable)"
    )

    @pydantic.field_validator("cluster", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        """``["partition=gpu", "timeout_min=60"]`` (the CLI's form) -> a dict."""
        if isinstance(value, list | tuple):
            return dict(split_pair(item) for item in value)
        return value

    @pydantic.field_validator("sink", mode="before")
    @classmethod
    def _sinks(cls, value: Any) -> tuple[str, ...]:
        """``"wandb,mlflow"`` or ``["wandb", "mlflow"]`` -> lower-case names, in order, once
        each (whether a sink by that name is installed is the engine's check)."""
        if not value:
            return ()
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(dict.fromkeys(str(n).strip().lower() for n in items if str(n).strip()))

    @pydantic.model_validator(mode="after")
    def _check(self) -> RunOptions:
        if self.stale_after_s <= self.heartbeat_s:
            raise ValueError(
                f"stale_after_s must be > heartbeat_s, got {self.stale_after_s} <= "
                f"{self.heartbeat_s}"
            )
        return self


class Selection(_Options):
    """Which planned runs one invocation takes (seeds, a shard, an index range)."""

    seeds: list[int] | None = Field(
        None, description="seeds replacing the sweep's: 0,1,2 or 0 1 2"
    )
    shard: str | None = Field(None, description="i/n: the runs whose index %% n == i (i from 0)")
    start_index: int | None = Field(None, ge=0, description="first suite index to run")
    end_index: int | None = Field(None, ge=0, description="suite index to stop before")
    max_runs: int = Field(
        MAX_RUNS_DEFAULT,
        ge=1,
        description="a refusal limit, not a budget: a plan with more runs than this is refused "
        "before anything runs (raise it to run a larger sweep; to run part of one, use "
        "--start-index/--end-index or --shard)",
    )


def parse_seeds(tokens: Sequence[str] | str | None) -> list[int] | None:
    """``--seeds 0,1,2`` or ``--seeds 42 43``: both as researchers type them."""
    if tokens is None:
        return None
    parts = [
        t
        for tok in ([tokens] if isinstance(tokens, str) else tokens)
        for t in str(tok).split(",")
        if t.strip()
    ]
    try:
        return [int(t) for t in parts]
    except ValueError:
        raise ConfigError(
            f"--seeds takes integers, e.g. --seeds 0 1 2 or --seeds 0,1,2; got {' '.join(parts)!r}"
        ) from None


def split_pair(item: str) -> tuple[str, str]:
    """``"partition=gpu"`` -> ``("partition", "gpu")``."""
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"cannot read --cluster {item!r}; write key=value, e.g. partition=gpu")
    return key.strip(), value.strip()
