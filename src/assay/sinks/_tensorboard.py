"""``--sink tensorboard``: event files under ``ROOT/tensorboard/<suite>/<group>/<run id>/``."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core._guard import make_dir_in_root
from ._base import Sink, SinkContext, flat_scalars, not_installed, numbers, safe_name


class TensorBoardSink(Sink):
    name = "tensorboard"

    @classmethod
    def probe(cls) -> str | None:
        return not_installed(cls.name, "tensorboard")

    def __init__(self, ctx: SinkContext) -> None:
        super().__init__(ctx)
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        parts = (safe_name(ctx.project), safe_name(ctx.group), safe_name(ctx.tracker_id))
        self.logdir = ctx.root.joinpath("tensorboard", *parts)
        make_dir_in_root(ctx.root, self.logdir)
        self.writer = EventFileWriter(str(self.logdir))
        hparams = {
            k: v
            for k, v in flat_scalars(ctx.config).items()
            if isinstance(v, bool | int | float | str)
        }
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

        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
        )
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
