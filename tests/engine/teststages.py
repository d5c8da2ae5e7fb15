"""Stages used by the engine tests (imported with `imports: [teststages]` / --import)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
from pydantic import Field

import assay


class CountConfig(assay.SeededConfig):
    x: int = 0
    seed: int = 0
    sleep_s: float = Field(0.0, ge=0)
    marker_dir: str = ""
    fail_if_exists: str = ""  # fails while this file exists (to test failures and retries)
    identity_exclude = frozenset({"marker_dir", "sleep_s", "fail_if_exists"})


@assay.stage("t.count", config=CountConfig, version=1)
def count(config: CountConfig, run: assay.Run) -> dict:
    """Write start/end markers around a sleep; report seeded random draws."""
    marker = Path(config.marker_dir) if config.marker_dir else None
    if marker:
        with open(marker / "starts.txt", "a") as f:
            f.write(f"{run.id}\n")
    if config.fail_if_exists and Path(config.fail_if_exists).exists():
        raise RuntimeError(f"asked to fail while {config.fail_if_exists} exists")
    time.sleep(config.sleep_s)
    run.log_metrics(step=0, value=config.x)
    run.log_metrics(step=1, value=config.x * 2)
    if marker:
        with open(marker / "ends.txt", "a") as f:
            f.write(f"{run.id}\n")
    return {"x2": config.x * 2, "py_random": random.random(), "np_random": float(np.random.rand())}


class DoubleConfig(assay.StageConfig):
    source: CountConfig = CountConfig()
    factor: int = 3


@assay.stage("t.double", config=DoubleConfig, version=1)
def double(config: DoubleConfig, run: assay.Run) -> dict:
    up = run.upstream["source"]
    return {"y": up.results["x2"] * config.factor, "upstream_id": up.id}


class StepsConfig(assay.SeededConfig):
    n_steps: int = 6
    kill_at: int = -1  # on attempt 1, SIGKILL this process at this step (a simulated crash)
    seed: int = 0


@assay.stage("t.steps", config=StepsConfig, version=1)
def steps(config: StepsConfig, run: assay.Run) -> dict:
    """A long run that checkpoints every step and resumes from its checkpoint."""
    state = run.load_checkpoint() or {"step": 0, "total": 0}
    resumed_from = state["step"]
    while state["step"] < config.n_steps:
        if run.attempt == 1 and state["step"] == config.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        state = {"step": state["step"] + 1, "total": state["total"] + state["step"]}
        run.save_checkpoint(state)
    return {"total": state["total"], "resumed_from": resumed_from, "attempt": run.attempt}


class PidConfig(assay.StageConfig):
    sleep_s: float = 0.0


@assay.stage("t.pid", config=PidConfig, version=1, isolate=True)
def pid(config: PidConfig, run: assay.Run) -> dict:
    time.sleep(config.sleep_s)
    return {"pid": os.getpid()}


class FlakyConfig(assay.StageConfig):
    failing_attempts: int = 1


@assay.stage("t.flaky", config=FlakyConfig, version=1)
def flaky(config: FlakyConfig, run: assay.Run) -> dict:
    if run.attempt <= config.failing_attempts:
        raise RuntimeError(f"transient failure on attempt {run.attempt}")
    return {"attempt": run.attempt}


class DieConfig(assay.StageConfig):
    x: int = 0
    die: bool = False  # SIGKILL this worker process on attempt 1 (a kill -9 or the OOM killer)
    sleep_s: float = 0.0  # how long a run that does not die works


@assay.stage("t.die", config=DieConfig, version=1)
def die(config: DieConfig, run: assay.Run) -> dict:
    if config.die and run.attempt == 1:
        time.sleep(0.2)  # let the other worker start its run
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(config.sleep_s)
    return {"x": config.x, "attempt": run.attempt}


class SlowStepsConfig(assay.StageConfig):
    n: int = 4
    step_s: float = 0.4


@assay.stage("t.slowsteps", config=SlowStepsConfig, version=1)
def slowsteps(config: SlowStepsConfig, run: assay.Run) -> dict:
    """Report progress through run.progress(), one step at a time."""
    with run.progress(config.n, "steps") as bar:
        for _ in range(config.n):
            time.sleep(config.step_s)
            bar.update()
    return {"n": config.n}
