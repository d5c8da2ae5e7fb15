"""The middle layer's plug-ins are wired from above: sinks and executors are entry points, and
an executor executes through the worker entry the engine hands it (it never imports the engine).
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import assay
from assay.core._options import RunOptions
from assay.core._run import Origin, Outcome, RunStatus
from assay.engine._suite import suite_from_dict
from assay.engine._worker import WORKER
from assay.executors import WorkerEntry, make_executor
from assay.sinks import Sink, SinkError, sink_class, sink_names


def test_sinks_are_the_entry_points_of_their_group():
    declared = {ep.name: ep.value for ep in entry_points(group="assay.sinks")}
    assert declared == {
        "mlflow": "assay.sinks._mlflow:MlflowSink",
        "tensorboard": "assay.sinks._tensorboard:TensorBoardSink",
        "wandb": "assay.sinks._wandb:WandbSink",
    }
    assert sink_names() == ["mlflow", "tensorboard", "wandb"]
    for name in declared:
        cls = sink_class(name)
        assert issubclass(cls, Sink) and cls.name == name
    with pytest.raises(SinkError, match="unknown sink 'comet'; valid: mlflow, tensorboard, wandb"):
        sink_class("comet")


def test_an_executor_runs_through_the_worker_entry_it_is_given(tmp_path):
    runs = assay.plan_suite(suite_from_dict({"stage": "example.fit", "sweep": {"seeds": [0, 1]}}))
    seen = []

    def run_inline(planned, options):
        seen.append([r.id for r in planned])
        for r in planned:
            yield Outcome(r.id, r.stage, RunStatus.DONE, Origin.EXECUTED, index=r.index)

    def execute_chunk(planned, options, modules):  # the pool's entry: not used inline
        raise AssertionError("inline execution went through execute_chunk")

    fake = WorkerEntry(execute_chunk=execute_chunk, run_inline=run_inline)
    options = RunOptions(root=tmp_path / "runs")
    outcomes = list(make_executor(options, fake).map(runs))
    assert seen == [[r.id for r in runs]]
    assert [o.id for o in outcomes] == [r.id for r in runs]
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing recorded: the fake did it all
    # the engine's own entry really executes
    real = list(make_executor(options, WORKER).map(runs))
    assert sorted(o.label for o in real) == ["done", "done"]


def test_options_are_checked_against_the_registries_by_the_engine(tmp_path):
    """RunOptions (core) holds plain fields; run_suite's checks name the valid choices."""
    assert RunOptions(executor="nope").executor == "nope"  # core knows no registry
    suite = suite_from_dict({"stage": "example.fit"})
    with pytest.raises(assay.ConfigError, match="unknown executor 'nope'; valid: local, ray"):
        assay.run_suite(suite, executor="nope", root=tmp_path / "runs")
    with pytest.raises(assay.ConfigError, match="unknown sink.*comet.*valid: mlflow"):
        assay.run_suite(suite, sink="comet", root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # refused before anything is recorded


def test_executors_and_sinks_load_without_the_engine():
    code = (
        "import sys, assay.executors._cluster, assay.executors._local, assay.sinks._wandb, "
        "assay.sinks._mlflow, assay.sinks._tensorboard, assay.store._sql; "
        "print(sorted(m for m in sys.modules if m.startswith('assay.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
