"""Every executor passes the same conformance check (assay.testing.check_executor)."""

import importlib.util

import pytest

from assay.testing import check_executor


@pytest.mark.parametrize("workers", [1, 2])  # inline, and the local pool of worker processes
def test_local_executor_conforms(tmp_path, workers):
    check_executor("local", tmp_path / "runs", workers=workers)


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="submitit not installed")
def test_submitit_local_executor_conforms(tmp_path):
    check_executor("submitit-local", tmp_path / "runs", cluster={"timeout_min": 5})
