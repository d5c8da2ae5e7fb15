"""What a run needs from a cluster (CPUs, GPUs, memory, time, partition), and how runs pack.

A stage declares its needs (``@assay.stage(..., resources={"gpus": 1, "timeout_min": 30})``);
a run needs the most any stage of its closure needs (upstream runs execute in the same job),
and the sum of their time limits. ``--cluster`` parameters override every declaration. Runs
needing the same resources are packed ``runs_per_job`` to a job; a job's time limit is the sum
of its runs' limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from pydantic import Field

from ..core._errors import ConfigError
from ..core._registry import get_stage
from ..core._spec import PlannedRun

DEFAULT_TIMEOUT_MIN = 60  # per run when no stage declares one; submitit's own 5 min kills ML jobs


class Resources(pydantic.BaseModel):
    """A stage's (or a job's) needs. Every field is optional: None means "the cluster default"."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    cpus: int | None = Field(None, ge=1, description="CPUs per job")
    gpus: int | None = Field(None, ge=0, description="GPUs per job")
    mem_gb: float | None = Field(None, gt=0, description="memory per job in GB")
    timeout_min: int | None = Field(None, ge=1, description="time limit in minutes")
    partition: str | None = Field(None, min_length=1, description="SLURM partition")


def parse_resources(value: Mapping[str, Any] | Resources | None, where: str) -> Resources:
    """A declaration checked once, with a message naming the bad key and the valid ones."""
    if value is None:
        return Resources()
    if isinstance(value, Resources):
        return value
    try:
        return Resources(**dict(value))
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{where}: resources {key}: {err['msg']} (got {err.get('input')!r}); valid keys: "
            f"{', '.join(Resources.model_fields)}"
        ) from None


def stage_resources(stage: str) -> Resources:
    """What stage ``stage`` declared (``resources=`` of ``@assay.stage``), or nothing."""
    entry = get_stage(stage)
    # Stage.resources is the registry field the decorator fills; older registries lack it.
    return parse_resources(getattr(entry, "resources", None), f"stage {stage!r}")


def run_resources(planned: PlannedRun) -> Resources:
    """The run's needs: the maximum over its closure, time limits summed."""
    needs = [stage_resources(r.stage) for r in planned.closure()]
    timeouts = [n.timeout_min for n in needs if n.timeout_min is not None]
    partitions = [n.partition for n in reversed(needs) if n.partition]  # the top stage's first
    return Resources(
        cpus=_max(n.cpus for n in needs),
        gpus=_max(n.gpus for n in needs),
        mem_gb=_max(n.mem_gb for n in needs),
        timeout_min=sum(timeouts) if timeouts else None,
        partition=partitions[0] if partitions else None,
    )


def _max(values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def pack(
    runs: Sequence[PlannedRun], runs_per_job: int
) -> list[tuple[Resources, list[PlannedRun]]]:
    """Jobs: runs grouped by equal needs (in plan order), ``runs_per_job`` to a job; each job
    with its own needs (time limits of its runs summed)."""
    if runs_per_job < 1:
        raise ConfigError(f"runs_per_job must be >= 1, got {runs_per_job}")
    groups: dict[Resources, list[PlannedRun]] = {}
    for planned in runs:
        groups.setdefault(run_resources(planned), []).append(planned)
    jobs = []
    for needs, members in groups.items():
        for start in range(0, len(members), runs_per_job):
            chunk = members[start : start + runs_per_job]
            per_run = needs.timeout_min or DEFAULT_TIMEOUT_MIN
            jobs.append((needs.model_copy(update={"timeout_min": per_run * len(chunk)}), chunk))
    return jobs
