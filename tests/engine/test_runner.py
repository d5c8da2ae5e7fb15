import json
import random

import assaycli
import numpy as np
import pytest
import teststages

import assay
from assay.engine._suite import suite_from_dict
from assay.families.example._stages import DataConfig, FitConfig


def test_run_directory_layout_and_provenance(root):
    rec = assay.run_config(teststages.CountConfig(x=4, seed=7), root=root)
    assert rec.status is assay.RunStatus.DONE and rec.results["x2"] == 8
    files = {p.name for p in rec.dir.iterdir()}
    assert {"config.json", "results.json", "metrics.jsonl", "provenance.json", "log.txt"} <= files
    assert not [p for p in files if p.startswith(".results")]  # committed, renamed into place
    assert json.loads((rec.dir / "config.json").read_text())["x"] == 4
    metrics = [json.loads(line) for line in (rec.dir / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["value"]) for m in metrics] == [(0, 4), (1, 8)]
    prov = json.loads((rec.dir / "provenance.json").read_text())
    for key in ("git", "python", "packages", "host", "argv", "seed", "time_start", "time_end"):
        assert key in prov
    assert prov["seed"] == 7 and prov["time_end"] >= prov["time_start"]
    assert {"commit", "dirty", "diff_sha256"} <= set(prov["git"])
    assert not list(rec.dir.glob("**/.*tmp*"))  # no temporary files left behind


def test_seeds_python_and_numpy_from_config(root):
    rec = assay.run_config(teststages.CountConfig(x=1, seed=123), root=root)
    random.seed(123)
    np.random.seed(123)
    assert rec.results["py_random"] == random.random()
    assert rec.results["np_random"] == float(np.random.rand())


def test_rerun_is_skipped_and_one_change_reruns_only_dependents(root):
    suite = suite_from_dict({"stage": "example.fit", "sweep": {"grid": {"degree": [1, 2]}}})
    first = assay.run_suite(suite, root=root)
    assert first.counts == {"done": 2}
    assert assay.run_suite(suite, root=root).counts == {"skipped": 2}
    with assay.resolve_store(None, root) as store:
        assert len(store.query(stage="example.data")) == 1  # both fits share one data run
    # changing the fit's parameter reruns the fit, not the data stage
    changed = assay.run_suite(suite, ["l2=0.5"], root=root)
    assert changed.counts == {"done": 2}
    with assay.resolve_store(None, root) as store:
        assert len(store.query(stage="example.data")) == 1
        assert len(store.query(stage="example.fit")) == 4
    # changing the data's parameter reruns both stages
    assay.run_suite(suite, ["data.noise_std=0.5"], root=root)
    with assay.resolve_store(None, root) as store:
        assert len(store.query(stage="example.data")) == 2


def test_upstream_outputs_are_handed_down(root):
    rec = assay.run_config(teststages.DoubleConfig(source=teststages.CountConfig(x=5)), root=root)
    up_id = assay.run_id("t.count", 1, teststages.CountConfig(x=5))
    assert rec.results == {"y": 30, "upstream_id": up_id}


def test_failures_continue_then_retry_failed(root, tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("x")
    suite = suite_from_dict(
        {
            "stage": "t.count",
            "imports": ["teststages"],
            "config": {"fail_if_exists": str(flag)},
            "sweep": {"grid": {"x": [1, 2, 3]}},
        }
    )
    result = assay.run_suite(suite, root=root)
    assert result.counts == {"failed": 3}  # continued past the first failure
    rec = assay.resolve_store(None, root).get(result.outcomes[0].id)
    assert rec.status is assay.RunStatus.FAILED and "asked to fail" in rec.error
    assert "RuntimeError" in (rec.dir / "error.txt").read_text()
    assert assay.run_suite(suite, root=root).counts == {"failed-earlier": 3}  # not rerun
    flag.unlink()
    result = assay.run_suite(suite, root=root, retry_failed=True)
    assert result.counts == {"done": 3}
    assert all(r.attempts == 2 for r in assay.resolve_store(None, root).query())


def test_stop_on_error(root, tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("x")
    suite = suite_from_dict(
        {
            "stage": "t.count",
            "config": {"fail_if_exists": str(flag)},
            "sweep": {"grid": {"x": [1, 2, 3]}},
        }
    )
    result = assay.run_suite(suite, root=root, stop_on_error=True)
    assert [o.status for o in result.outcomes] == ["failed"]


def test_retries_within_an_invocation(root):
    suite = suite_from_dict({"stage": "t.flaky", "config": {"failing_attempts": 2}})
    assert assay.run_suite(suite, root=root, retries=1).counts == {"failed": 1}
    result = assay.run_suite(suite, root=root, retries=2, retry_failed=True)
    assert result.counts == {"done": 1}
    (rec,) = assay.resolve_store(None, root).query()
    assert rec.results == {"attempt": 3}  # attempts 1-2 failed in the first invocation


def test_finished_run_is_never_overwritten(root):
    cfg = teststages.CountConfig(x=2)
    rec = assay.run_config(cfg, root=root)
    before = (rec.dir / "results.json").read_bytes()
    again = assay.run_config(cfg, root=root, retry_failed=True)
    assert again.attempts == 1 and (rec.dir / "results.json").read_bytes() == before


def test_checkpoint_resumes_after_sigkill(root):
    import subprocess

    suite = root.parent / "steps.yaml"
    suite.write_text("stage: t.steps\nimports: [teststages]\nconfig: {n_steps: 6, kill_at: 3}\n")
    cmd = assaycli.run_command(suite, root, "teststages")
    killed = subprocess.run(cmd, capture_output=True, text=True)
    assert killed.returncode == -9  # the process SIGKILLed itself mid-run
    with assay.resolve_store(None, root) as store:
        (rec,) = store.query()
        assert rec.status is assay.RunStatus.RUNNING  # left behind by the dead process
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with assay.resolve_store(None, root) as store:
        (rec,) = store.query()
    assert rec.status is assay.RunStatus.DONE
    assert rec.results == {"total": 0 + 1 + 2 + 3 + 4 + 5, "resumed_from": 3, "attempt": 2}


def test_isolated_stage_runs_in_its_own_process(root):
    import os

    rec = assay.run_config(teststages.PidConfig(), root=root)
    assert rec.status is assay.RunStatus.DONE and rec.results["pid"] != os.getpid()


def test_timeout_kills_the_run(root):
    rec = assay.run_config(teststages.PidConfig(sleep_s=30), root=root, timeout_s=1.5)
    assert rec.status is assay.RunStatus.FAILED and "timeout of 1.5 s" in rec.error


def test_workers_pool_runs_everything_once(root, tmp_path):
    suite = suite_from_dict(
        {
            "stage": "t.count",
            "imports": ["teststages"],
            "config": {"marker_dir": str(tmp_path), "sleep_s": 0.05},
            "sweep": {"grid": {"x": list(range(8))}},
        }
    )
    result = assay.run_suite(suite, root=root, workers=2)
    assert result.counts == {"done": 8}
    ends = (tmp_path / "ends.txt").read_text().split()
    assert sorted(ends) == sorted(o.id for o in result.outcomes) and len(set(ends)) == 8


def test_detached_run_needs_no_store(tmp_path):
    data = assay.run_config(DataConfig(), root=tmp_path / "runs")
    cfg = FitConfig(degree=2)
    handle = assay.detached_run(
        cfg,
        dir=tmp_path / "scratch",
        upstream={
            "data": assay.UpstreamRun(data.id, data.stage, DataConfig(), data.dir, data.results)
        },
    )
    from assay.families.example._stages import fit

    results = fit(cfg, handle)
    assert results["test_mse"] > 0 and (tmp_path / "scratch/artifacts/coefficients.json").exists()
    assert not (tmp_path / "scratch" / "assay.db").exists()


def test_stage_returning_non_json_fails_clearly(root):
    @assay.stage("t.badresult", config=BadConfig)
    def bad(config, run):
        return {"obj": object()}

    rec = assay.run_config(BadConfig(), root=root)
    assert rec.status is assay.RunStatus.FAILED and "cannot store a object as JSON" in rec.error


class BadConfig(assay.StageConfig):
    a: int = 0


def test_artifact_lookup_names_what_exists(root):
    rec = assay.run_config(DataConfig(), root=root)
    assert rec.artifact("data.npz").exists()
    with pytest.raises(assay.AssayError, match="no artifact 'nope.npz'; it has: data.npz"):
        rec.artifact("nope.npz")
