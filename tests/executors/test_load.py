"""16 worker processes claiming and finishing the same short runs on SQLite and on PostgreSQL:
nothing lost, nothing executed twice, no "database is locked" (bench/bench_load.py measures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_load.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(result: dict) -> None:
    assert result["failed_workers"] == 0, result["stderr_tail"]
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["database_locked"] == 0
    assert result["runs_per_s"] > 0


@pytest.mark.parametrize(
    "n_runs",
    [pytest.param(48, id="48-runs"), pytest.param(5000, id="5000-runs", marks=pytest.mark.slow)],
)
def test_sixteen_workers_on_sqlite(tmp_path, n_runs):
    _check(_bench().run_load(None, tmp_path / "load", n_runs, 16))


@pytest.mark.parametrize(
    "n_runs",
    [pytest.param(48, id="48-runs"), pytest.param(5000, id="5000-runs", marks=pytest.mark.slow)],
)
def test_sixteen_workers_on_postgres(postgres, tmp_path, n_runs):
    pytest.importorskip("psycopg")
    import assay
    from assay.store._sql import runs_table

    with assay.resolve_store(postgres.url, tmp_path) as store, store.engine.begin() as conn:
        conn.execute(runs_table.delete())
    _check(_bench().run_load(postgres.url, tmp_path / "load", n_runs, 16))
