"""Sinks: each against its real library, offline, read back through that library's API."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from assay.sinks import SinkError, open_sinks, parse_sinks, seed_free_group
from assay.sinks import _base as _sinks

CONFIG = {"lr": 0.1, "seed": 3, "data": {"n": 30, "seed": 3}, "layers": [4, 4]}
STEPS = [(0, {"loss": 1.0, "acc": 0.5}), (1, {"loss": 0.5, "acc": 0.7}), (2, {"loss": 0.25})]
RESULTS = {"final_loss": 0.25, "eval": {"acc": 0.9}, "label": "ok", "bad": "nan"}


def _open(names, tmp_path: Path, warnings: list[str], **kw):
    run_dir = tmp_path / "runs" / "t_fit_abc"
    run_dir.mkdir(parents=True, exist_ok=True)
    kw.setdefault("attempt", 1)
    return open_sinks(
        names,
        run_id="t_fit_abc",
        stage="t.fit",
        suite="demo",
        config=CONFIG,
        root=tmp_path / "runs",
        run_dir=run_dir,
        warn=warnings.append,
        **kw,
    )


def _log_all(sinks) -> None:
    for step, values in STEPS:
        sinks.log_metrics(step, values)


def test_names_are_validated():
    assert parse_sinks("wandb, MLflow,wandb") == ("wandb", "mlflow")
    assert parse_sinks(None) == () and parse_sinks(["tensorboard"]) == ("tensorboard",)
    with pytest.raises(SinkError, match="unknown sink.*comet.*valid: mlflow, tensorboard, wandb"):
        parse_sinks("comet")


def test_the_group_ignores_seeds_only():
    other_seed = {**CONFIG, "seed": 9, "data": {"n": 30, "seed": 1}}
    assert seed_free_group(CONFIG, "s") == seed_free_group(other_seed, "s")
    assert seed_free_group(CONFIG, "s") != seed_free_group({**CONFIG, "lr": 0.2}, "s")


class Recorder(_sinks.Sink):
    name = "recorder"
    seen: list = []

    def log_metrics(self, step, values):
        Recorder.seen.append((step, values))

    def finish(self, status, results, artifacts):
        Recorder.seen.append(("finish", status, results))


class Broken(_sinks.Sink):
    name = "broken"

    def log_metrics(self, step, values):
        raise OSError("quota exceeded")

    def finish(self, status, results, artifacts):
        raise AssertionError("a dropped sink is not finished")


@pytest.fixture
def fake_sinks(monkeypatch):
    Recorder.seen = []
    monkeypatch.setitem(_sinks._CLASSES, "recorder", Recorder)
    monkeypatch.setitem(_sinks._CLASSES, "broken", Broken)


def test_a_failing_sink_is_reported_once_and_the_others_go_on(fake_sinks, tmp_path):
    warnings: list[str] = []
    sinks = _open(["broken", "recorder"], tmp_path, warnings)
    _log_all(sinks)
    sinks.finish("done", RESULTS, None)
    assert warnings == [
        "sink broken failed in log_metrics: OSError: quota exceeded; the run "
        "goes on without broken"
    ]
    assert sinks.problems == {"broken": warnings[0]} and sinks.names == ["recorder"]
    assert Recorder.seen[:3] == [
        (0, {"loss": 1.0, "acc": 0.5}),
        (1, {"loss": 0.5, "acc": 0.7}),
        (2, {"loss": 0.25}),
    ]
    assert Recorder.seen[3] == ("finish", "done", RESULTS)


def test_a_missing_library_is_reported_at_open(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    warnings: list[str] = []
    sinks = _open(["wandb"], tmp_path, warnings)
    assert not sinks and len(warnings) == 1
    assert warnings[0].startswith("sink wandb is not installed (pip install 'assay[sinks]')")
    _log_all(sinks)
    sinks.finish("done", RESULTS, None)  # nothing left to log to: no error, no second warning
    assert len(warnings) == 1


def test_lines_no_sink_saw_are_replayed_once(fake_sinks, tmp_path):
    run_dir = tmp_path / "runs" / "t_fit_abc"
    run_dir.mkdir(parents=True)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 0, "time": 1.0, "loss": 9.0}) + "\n")  # attempt 1
    sinks = _open(["recorder"], tmp_path, [], attempt=2)
    with open(metrics, "a") as f:  # this attempt: one line forwarded live, two in a child
        for step, loss in ((0, 3.0), (1, 2.0), (2, 1.0)):
            f.write(json.dumps({"step": step, "time": 2.0, "loss": loss}) + "\n")
    sinks.log_metrics(0, {"loss": 3.0})
    sinks.finish("failed", None, None)
    assert Recorder.seen == [
        (0, {"loss": 3.0}),
        (1, {"loss": 2.0}),
        (2, {"loss": 1.0}),
        ("finish", "failed", None),
    ]


def test_tensorboard_records_metrics_config_and_results(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (assay[sinks])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    warnings: list[str] = []
    sinks = _open(["tensorboard"], tmp_path, warnings)
    _log_all(sinks)
    sinks.finish("done", RESULTS, None)
    assert warnings == []
    group = seed_free_group(CONFIG, "demo")
    logdir = tmp_path / "runs" / "tensorboard" / "demo" / group / "t_fit_abc"
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [(e.step, e.value) for e in loss] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert [e.step for e in acc.Scalars("acc")] == [0, 1]
    assert acc.Scalars("results/final_loss")[0].value == 0.25
    assert acc.Scalars("results/eval/acc")[0].value == pytest.approx(0.9)
    assert math.isnan(acc.Scalars("results/bad")[0].value)
    config_text = acc.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert '"lr": 0.1' in config_text
    tags = json.loads(acc.Tensors("assay")[0].tensor_proto.string_val[0].decode())
    assert tags["assay.run_id"] == "t_fit_abc" and tags["assay.group"] == group
    assert "_hparams_/session_start_info" in acc.Tags()["tensors"]


@pytest.mark.slow  # MLflow's import and its SQLite schema migrations take ~20 s here
def test_mlflow_records_params_metrics_results_and_tags(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (assay[sinks])")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    art = tmp_path / "runs" / "t_fit_abc" / "artifacts"
    art.mkdir(parents=True)
    (art / "weights.json").write_text("[1, 2]")
    warnings: list[str] = []
    sinks = _open(["mlflow"], tmp_path, warnings)
    _log_all(sinks)
    sinks.finish("done", RESULTS, art)
    assert warnings == []
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("demo")
    (run,) = client.search_runs([exp.experiment_id], "tags.`assay.run_id` = 't_fit_abc'")
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1" and run.data.params["data.n"] == "30"
    assert run.data.params["layers"] == "[4, 4]"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert run.data.metrics["results.final_loss"] == 0.25
    assert run.data.metrics["results.eval.acc"] == pytest.approx(0.9)
    assert run.data.tags["assay.group"] == seed_free_group(CONFIG, "demo")
    assert run.data.tags["assay.suite"] == "demo" and run.data.tags["assay.stage"] == "t.fit"
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert files == {"results.json", "artifacts"}
    inner = {f.path for f in client.list_artifacts(run.info.run_id, "artifacts")}
    assert inner == {"artifacts/weights.json"}


def _wandb_records(path: Path):
    """The records of a W&B transaction log (``run-<id>.wandb``), parsed with wandb's protobuf
    schema. The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then
    32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type: full/first/
    middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def test_wandb_offline_run_holds_config_history_summary_and_tags(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (assay[sinks])")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    warnings: list[str] = []
    sinks = _open(["wandb"], tmp_path, warnings)
    _log_all(sinks)
    sinks.finish("done", RESULTS, None)
    assert warnings == []
    import wandb

    wandb.teardown()  # the service writes the offline log asynchronously: wait for it
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*-t_fit_abc")
    records = list(_wandb_records(next(run_dir.glob("run-t_fit_abc.wandb"))))
    kinds = [r.WhichOneof("record_type") for r in records]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_id == "t_fit_abc" and run.display_name == "t_fit_abc"
    assert run.run_group == seed_free_group(CONFIG, "demo") and run.job_type == "t.fit"
    assert list(run.tags) == ["t_fit_abc", "demo", "t.fit"]
    config = {
        i.key: json.loads(i.value_json)
        for r in records
        if r.HasField("config")
        for i in r.config.update
    }
    config.update({i.key: json.loads(i.value_json) for i in run.config.update})
    assert config["lr"] == 0.1 and config["data"] == {"n": 30, "seed": 3}
    assert config["_assay"]["assay.run_id"] == "t_fit_abc"
    rows = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    logged = [(row["step"], row.get("loss")) for row in rows]
    assert logged == [(0, 1.0), (1, 0.5), (2, 0.25)]
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in r.summary.update
                }
            )
    assert summary["final_loss"] == 0.25 and summary["eval/acc"] == 0.9
    assert summary["assay_status"] == "done"
    assert "exit" in kinds


def test_groups_are_named_by_the_varying_parameters_and_seeds_share_one(fake_sinks, tmp_path):
    params = {"degree": 3, "data.n_train": 30, "seed": 1, "data.seed": 1}
    sinks = _open(["recorder"], tmp_path, [], params=params)
    (ctx,) = [s.ctx for s in sinks.sinks]
    assert ctx.group == "t.fit degree=3 data.n_train=30"  # not a hash; seeds left out
    assert ctx.tags["assay.group"] == ctx.group and ctx.tags["assay.stage"] == "t.fit"
    alone = _open(["recorder"], tmp_path, [], params={"seed": 2})  # only seeds vary
    assert [s.ctx.group for s in alone.sinks] == [seed_free_group(CONFIG, "demo")]


def test_tensorboard_hparams_put_the_seeds_of_a_config_in_one_session_group(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (assay[sinks])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    groups = []
    for seed in (0, 1):
        config = {**CONFIG, "seed": seed}
        run_id = f"t_fit_s{seed}"
        sinks = open_sinks(
            ["tensorboard"],
            run_id=run_id,
            stage="t.fit",
            suite="demo",
            config=config,
            root=tmp_path / "runs",
            params={"lr": 0.1, "seed": seed},
            warn=pytest.fail,
        )
        sinks.finish("done", RESULTS, None)
        logdir = tmp_path / "runs" / "tensorboard" / "demo" / "t.fit_lr_0.1" / run_id
        acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
        acc.Reload()
        (event,) = acc.Tensors("_hparams_/session_start_info")
        data = plugin_data_pb2.HParamsPluginData.FromString(
            acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        )
        assert event.step == 0
        groups.append(data.session_start_info.group_name)
    assert groups[0] == groups[1] == seed_free_group(CONFIG, "demo")
