"""Stages with plan-time checks, for tests/engine/test_plan_checks.py (``--import checkstages``)."""

from __future__ import annotations

from pydantic import Field

import assay


class SourceConfig(assay.SeededConfig):
    size: int = Field(4, ge=1)


def check_source(config: SourceConfig) -> None:
    if config.size == 13:
        raise ValueError("size 13 is refused by the check; use any other size >= 1")


@assay.stage("chk.source", config=SourceConfig, version=1, check=check_source)
def source(config: SourceConfig, run: assay.Run) -> dict:
    """Write `size` lines to data.txt."""
    with run.write_artifact("data.txt") as tmp:
        tmp.write_text("x\n" * config.size)
    return {"size": config.size}


class UseConfig(assay.SeededConfig):
    source: SourceConfig = SourceConfig()
    limit: int = 10


def check_use(config: UseConfig, plan: assay.PlanContext) -> None:
    if config.source.size > config.limit:
        raise ValueError(
            f"source.size {config.source.size} exceeds limit {config.limit}; valid: 1.."
            f"{config.limit}: lower source.size or raise limit"
        )
    done = plan.finished(config.source)
    if done is not None and not (done.dir / "artifacts" / "data.txt").exists():
        raise ValueError(
            f"the finished run {done.id} has no data.txt; delete {done.dir} and run "
            "`assay reindex` so that it runs again"
        )


@assay.stage("chk.use", config=UseConfig, version=1, check=check_use)
def use(config: UseConfig, run: assay.Run) -> dict:
    """Count the upstream's lines."""
    lines = run.upstream["source"].artifact("data.txt").read_text().splitlines()
    return {"lines": len(lines)}
