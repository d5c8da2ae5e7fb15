import sqlite3

import pytest

import assay
from assay.testing import check_store


def test_sqlite_store_conformance(tmp_path):
    n = iter(range(100))
    check_store(lambda: assay.resolve_store(f"sqlite:///{tmp_path}/s{next(n)}.db", tmp_path))


def test_sqlite_uses_wal_and_records_schema_version(tmp_path):
    store = assay.resolve_store(None, tmp_path)
    store.close()
    con = sqlite3.connect(tmp_path / "assay.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (
        con.execute("SELECT value FROM assay_meta WHERE key='schema_version'").fetchone()[0] == "1"
    )
    con.execute("UPDATE assay_meta SET value='99'")
    con.commit()
    con.close()
    with pytest.raises(assay.StoreError, match="schema version 99, this assay expects 1.*reindex"):
        assay.resolve_store(None, tmp_path)


def test_unknown_scheme_lists_valid_ones(tmp_path):
    with pytest.raises(
        assay.StoreError, match="unknown store URL scheme 'redis'.*sqlite, postgresql"
    ):
        assay.resolve_store("redis://localhost/0", tmp_path)


def test_find_by_prefix(tmp_path):
    store = assay.resolve_store(None, tmp_path)
    store.ensure("a_123", "a", "{}", "/x")
    store.ensure("a_124", "a", "{}", "/y")
    assert store.find("a_123").id == "a_123"
    with pytest.raises(assay.RunNotFoundError, match="matches 2 runs"):
        store.find("a_12")
    with pytest.raises(assay.RunNotFoundError, match="no run with id or prefix 'b'"):
        store.find("b")
