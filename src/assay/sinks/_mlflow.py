"""``--sink mlflow``: an MLflow run in ``sqlite:///ROOT/mlflow.db`` (or ``MLFLOW_TRACKING_URI``),
one experiment per suite, artifacts under ``ROOT/mlflow-artifacts/``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core._guard import make_dir_in_root, real_in_root
from ._base import (
    SINK_CONNECT_S,
    Sink,
    SinkContext,
    flat_scalars,
    not_installed,
    numbers,
    unreachable,
)

MLFLOW_PARAM_CHARS = 6000  # MLflow refuses longer parameter values
MLFLOW_BATCH = 100  # params per log_batch call (MLflow's limit)
DATABASE_SCHEMES = ("http://", "https://", "sqlite:", "postgresql", "mysql")


class MlflowSink(Sink):
    name = "mlflow"

    @classmethod
    def probe(cls) -> str | None:
        if (missing := not_installed(cls.name, "mlflow")) is not None:
            return missing
        url = os.environ.get("MLFLOW_TRACKING_URI", "")
        if url and not url.startswith(DATABASE_SCHEMES):
            if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
                return (
                    f"sink mlflow: MLFLOW_TRACKING_URI={url} is MLflow's file store, which "
                    "the installed MLflow keeps in maintenance mode (it writes nothing); unset "
                    "MLFLOW_TRACKING_URI (assay then uses sqlite:///ROOT/mlflow.db), point it "
                    "at a database or server, or set MLFLOW_ALLOW_FILE_STORE=true"
                )
            return None
        return unreachable(cls.name, url)

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
