"""Session fixtures: a real one-node SLURM cluster; the cluster stages on every PYTHONPATH."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # `servers`, and `clusterstages` for jobs started from here
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
)

import servers  # noqa: E402


@pytest.fixture(scope="session")
def slurm():
    """A SLURM cluster on loopback for the whole session; SLURM_CONF points at it."""
    base = Path(tempfile.mkdtemp(prefix="assay-slurm-"))
    try:
        cluster = servers.start_slurm(base)
    except (servers.Unavailable, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"no SLURM cluster: {exc}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    base = Path(tempfile.mkdtemp(prefix="assay-pg-"))
    try:
        server = servers.start_postgres(base, max_connections=200)
    except (servers.Unavailable, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.stop()
