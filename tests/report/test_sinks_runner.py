"""Sinks through the runner: `assay run --sink` logs every run, and a failing sink fails nothing."""

import pytest
import teststages  # noqa: F401 - registers the t.* stages

import assay
from assay import _sinks
from assay._suite import suite_from_dict


class Recorder(_sinks.Sink):
    name = "recorder"
    seen: list = []

    def log_metrics(self, step, values):
        Recorder.seen.append((self.ctx.run_id, step, values["value"]))

    def finish(self, status, results, artifacts):
        Recorder.seen.append((self.ctx.run_id, "finish", status, results["x2"]))


class Broken(_sinks.Sink):
    name = "broken"

    def log_metrics(self, step, values):
        raise OSError("quota exceeded")

    def finish(self, status, results, artifacts):
        raise AssertionError("a dropped sink is not finished")


@pytest.fixture
def fake_sinks(monkeypatch):
    Recorder.seen = []
    monkeypatch.setitem(_sinks.SINKS, "recorder", Recorder)
    monkeypatch.setitem(_sinks.SINKS, "broken", Broken)


def test_every_run_reaches_the_sinks_and_a_broken_one_fails_nothing(fake_sinks, root):
    suite = suite_from_dict({"stage": "t.count", "sinks": ["recorder"],
                             "sweep": {"grid": {"x": [1, 2]}}})  # fmt: skip
    result = assay.run_suite(suite, root=root, sink="broken")
    assert result.counts == {"done": 2}
    by_run = {}
    for rid, *rest in Recorder.seen:
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
