"""Stages the cluster tests run in SLURM jobs and Ray tasks (imported with --import)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import Field

import assay


class SlowStepsConfig(assay.StageConfig):
    n_steps: int = Field(8, ge=1)
    step_s: float = Field(0.5, ge=0)
    tag: int = 0  # distinguishes runs of one suite
    marker_dir: str = ""  # starts.txt / steps.txt / ends.txt lines, for the test to watch
    identity_exclude = frozenset({"marker_dir", "step_s"})


@assay.stage("c.slow_steps", config=SlowStepsConfig, version=1)
def slow_steps(config: SlowStepsConfig, run: assay.Run) -> dict:
    """Checkpoint after every step; a requeued job resumes where the last one stopped."""
    marker = Path(config.marker_dir) if config.marker_dir else None
    state = run.load_checkpoint() or {"step": 0, "total": 0}
    resumed_from = state["step"]
    _mark(marker, "starts", f"{run.id} {run.attempt} {resumed_from} {os.getpid()}")
    while state["step"] < config.n_steps:
        time.sleep(config.step_s)
        state = {"step": state["step"] + 1, "total": state["total"] + state["step"]}
        run.save_checkpoint(state)
        _mark(marker, "steps", f"{run.id} {state['step']}")
    _mark(marker, "ends", run.id)
    return {
        "total": state["total"],
        "resumed_from": resumed_from,
        "attempt": run.attempt,
        "job": os.environ.get("SLURM_JOB_ID"),
    }


def _mark(marker: Path | None, name: str, line: str) -> None:
    if marker is not None:
        with open(marker / f"{name}.txt", "a") as f:
            f.write(line + "\n")


class ResourcefulConfig(assay.StageConfig):
    x: int = 0


@assay.stage("c.resourceful", config=ResourcefulConfig, version=1)
def resourceful(config: ResourcefulConfig, run: assay.Run) -> dict:
    """Report what the job was given."""
    return {
        "x": config.x,
        "cpus": os.environ.get("SLURM_CPUS_PER_TASK"),
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
    }
