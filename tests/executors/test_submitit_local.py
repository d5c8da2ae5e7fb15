"""Cluster executors across a real process boundary: submitit's local executor and local Ray."""

import pytest

import assay
from assay.engine._suite import suite_from_dict

SUITE = {"stage": "t.count", "imports": ["teststages"], "sweep": {"grid": {"x": [1, 2, 3, 4, 5]}}}


def test_submitit_local_job_array(root):
    pytest.importorskip("submitit")
    suite = suite_from_dict(SUITE)
    result = assay.run_suite(
        suite, root=root, executor="submitit-local", cluster={"runs_per_job": 2, "timeout_min": 5}
    )
    assert result.counts == {"done": 5}
    assert sorted(o.index for o in result.outcomes) == [0, 1, 2, 3, 4]
    jobs = [p for p in (root / "_submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 3  # 5 runs in jobs of 2: 3 processes
    assert assay.run_suite(suite, root=root).counts == {"skipped": 5}


@pytest.mark.slow
def test_ray_local_cluster(root):
    pytest.importorskip("ray")
    suite = suite_from_dict(SUITE)
    result = assay.run_suite(suite, root=root, executor="ray", workers=2)
    assert result.counts == {"done": 5}
    with assay.resolve_store(None, root) as store:
        assert all(r.attempts == 1 for r in store.query())


def test_cluster_parameters_are_checked(root):
    with pytest.raises(assay.AssayError, match="unknown --cluster key 'partion'.*partition"):
        assay.run_suite(
            suite_from_dict(SUITE), root=root, executor="slurm", cluster=["partion=gpu"]
        )
    with pytest.raises(assay.AssayError, match="expected a int"):
        assay.run_suite(
            suite_from_dict(SUITE), root=root, executor="slurm", cluster=["timeout_min=soon"]
        )
    with pytest.raises(assay.AssayError, match="unknown executor 'k8s'"):
        assay.run_suite(suite_from_dict(SUITE), root=root, executor="k8s")
