"""``--sink wandb``: a Weights & Biases run in offline mode under ``ROOT/wandb/``.

``wandb sync ROOT/wandb/offline-run-*`` uploads it later; ``WANDB_MODE=online`` logs live.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from ..core._guard import make_dir_in_root
from ._base import (
    SINK_CONNECT_S,
    Sink,
    SinkContext,
    flat_scalars,
    not_installed,
    safe_name,
    unreachable,
)

WANDB_TAG_CHARS = 64  # W&B refuses longer tags


WandbMode = Literal["online", "offline", "disabled", "shared"]


class WandbSink(Sink):
    name = "wandb"

    @classmethod
    def probe(cls) -> str | None:
        if (missing := not_installed(cls.name, "wandb")) is not None:
            return missing
        if os.environ.get("WANDB_MODE", "offline") in ("offline", "disabled"):
            return None
        return unreachable(cls.name, os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        import wandb

        make_dir_in_root(ctx.root, ctx.root / "wandb")  # where W&B writes: dir=ROOT -> ROOT/wandb
        settings = wandb.Settings(
            silent=True,
            console="off",
            x_disable_stats=True,
            save_code=False,
            disable_git=True,
            disable_job_creation=True,
            init_timeout=2 * SINK_CONNECT_S,
        )
        role = ["upstream"] if ctx.upstream else []
        tags = [
            t[:WANDB_TAG_CHARS] for t in dict.fromkeys([ctx.run_id, ctx.project, ctx.stage, *role])
        ]
        self.run = wandb.init(
            mode=cast(WandbMode, os.environ.get("WANDB_MODE", "offline")),
            dir=str(ctx.root),
            project=safe_name(ctx.project),
            name=ctx.run_id,
            id=ctx.tracker_id,
            group=ctx.group,
            job_type=ctx.stage,
            tags=tags,
            config={**ctx.config, "_assay": ctx.tags},
            settings=settings,
            reinit="create_new",
        )
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
