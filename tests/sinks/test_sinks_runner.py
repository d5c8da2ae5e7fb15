"""Sinks through the runner: `assay run --sink` logs every run, and a failing sink fails nothing."""

import pytest
import teststages  # noqa: F401 - registers the t.* stages
from test_sinks import Recorder, fake_sinks  # noqa: F401 - the shared fakes and fixture

import assay
from assay.engine._suite import suite_from_dict
from assay.sinks import _base as _sinks


class RunRecorder(Recorder):
    """Records which run each line came from."""

    name = "recorder"
    seen: list = []

    def log_metrics(self, step, values):
        RunRecorder.seen.append((self.ctx.run_id, step, values["value"]))

    def finish(self, status, results, artifacts):
        RunRecorder.seen.append((self.ctx.run_id, "finish", status, results["x2"]))


@pytest.fixture
def run_sinks(fake_sinks, monkeypatch):  # noqa: F811 - the imported fixture
    RunRecorder.seen = []
    monkeypatch.setitem(_sinks._CLASSES, "recorder", RunRecorder)


def test_every_run_reaches_the_sinks_and_a_broken_one_fails_nothing(run_sinks, root):
    suite = suite_from_dict(
        {"stage": "t.count", "sinks": ["recorder"], "sweep": {"grid": {"x": [1, 2]}}}
    )
    result = assay.run_suite(suite, root=root, sink="broken")
    assert result.counts == {"done": 2}
    by_run = {}
    for rid, *rest in RunRecorder.seen:
        by_run.setdefault(rid, []).append(tuple(rest))
    assert sorted(by_run.values()) == [
        [(0, 1), (1, 2), ("finish", "done", 2)],
        [(0, 2), (1, 4), ("finish", "done", 4)],
    ]
    for outcome in result.outcomes:  # reported once, in the run's log, never raised
        log = (root / outcome.id / "log.txt").read_text()
        assert log.count("sink broken failed") == 1 and "quota exceeded" in log


def test_an_unknown_sink_is_refused_before_anything_runs(root):
    with pytest.raises(assay.ConfigError, match="unknown sink.*valid"):
        assay.run_suite(suite_from_dict({"stage": "t.count"}), root=root, sink="comet")
    assert not root.exists()


class ContextRecorder(_sinks.Sink):
    """Records what each tracker run is told: its group and its tags."""

    name = "contexts"
    seen: list = []

    def log_metrics(self, step, values):
        pass

    def finish(self, status, results, artifacts):
        ContextRecorder.seen.append((self.ctx.stage, self.ctx.group, self.ctx.tags))


def test_groups_name_the_varying_parameters_and_upstream_runs_are_tagged(monkeypatch, root):
    ContextRecorder.seen = []
    monkeypatch.setitem(_sinks._CLASSES, "contexts", ContextRecorder)
    suite = suite_from_dict(
        {
            "stage": "example.fit",
            "sinks": ["contexts"],
            "sweep": {"grid": {"degree": [1, 3]}, "seeds": [0, 1]},
        }
    )
    assert assay.run_suite(suite, root=root).counts == {"done": 4}
    fits = [(g, t) for stage, g, t in ContextRecorder.seen if stage == "example.fit"]
    data = [t for stage, _, t in ContextRecorder.seen if stage == "example.data"]
    # both seeds of a degree share one group, named for people, not a hash
    assert (
        sorted(g for g, _ in fits) == ["example.fit degree=1"] * 2 + ["example.fit degree=3"] * 2
    )
    assert {t["assay.role"] for _, t in fits} == {"suite"}
    assert len(data) == 2 and {t["assay.role"] for t in data} == {"upstream"}
    assert {t["assay.stage"] for t in data} == {"example.data"}
