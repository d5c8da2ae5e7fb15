"""The SQL store against a real PostgreSQL server, started by the test in a temporary folder.

Skipped where the PostgreSQL server binaries or psycopg are missing.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import assay
from assay.engine._suite import suite_from_dict
from assay.testing import check_store

pytest.importorskip("psycopg")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
INITDB = shutil.which("initdb") or (
    str(PG_BIN / "initdb") if (PG_BIN / "initdb").exists() else None
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; run the server as the `postgres` user when we are root.
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="module")
def postgres_url():
    if INITDB is None:
        pytest.skip("PostgreSQL server binaries (initdb) are not installed")
    bindir = Path(os.path.realpath(INITDB)).parent
    # the server user must reach the folder: pytest's tmp folders are private to their owner
    base = Path(tempfile.mkdtemp(prefix="assay-pg-"))
    base.chmod(0o777)
    data = base / "data"
    port = _free_port()
    log = base / "pg.log"
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "assay", "--no-sync"],
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
            "start",
        ],
    ]
    for cmd in steps:
        proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
        if proc.returncode != 0:  # e.g. no unprivileged user to run the server as
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip(f"cannot start a PostgreSQL server here: {proc.stderr.strip()[-300:]}")
    try:
        url = f"postgresql+psycopg://assay@127.0.0.1:{port}/postgres"
        deadline = time.time() + 30
        while True:
            try:
                assay.resolve_store(url, "/tmp").close()
                break
            except assay.StoreError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


def _fresh(url: str):
    store = assay.resolve_store(url, "/tmp")
    with store.engine.begin() as conn:
        from assay.store._sql import runs_table

        conn.execute(runs_table.delete())
    return store


def test_postgres_store_conformance(postgres_url):
    check_store(lambda: _fresh(postgres_url))


def test_suite_on_postgres_with_two_workers(postgres_url, tmp_path):
    _fresh(postgres_url).close()
    suite = suite_from_dict(
        {"stage": "example.fit", "sweep": {"grid": {"degree": [1, 2, 3]}, "seeds": [0, 1]}}
    )
    result = assay.run_suite(suite, root=tmp_path, store=postgres_url, workers=2)
    assert result.counts == {"done": 6}
    again = assay.run_suite(suite, root=tmp_path, store=postgres_url)
    assert again.counts == {"skipped": 6}
    df = assay.load_runs(tmp_path, postgres_url, suite=suite)
    assert len(df) == 6 and df["results.test_mse"].gt(0).all()
