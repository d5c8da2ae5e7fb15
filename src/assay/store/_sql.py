"""The SQL store (SQLAlchemy Core): SQLite by default, PostgreSQL through the same code.

SQLite runs in WAL mode with a busy timeout so several processes (workers, shards) share one file.
Claims are compare-and-swap updates: read the row, then update it only if it is unchanged.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..core._errors import StoreError
from ..core._io import dumps
from ..core._run import RunRecord, RunStatus
from ._base import Store

SCHEMA_VERSION = 1
ID_CHUNK = 900  # ids per IN (...) query: SQLite allows 999 parameters per statement
_HEAVY = frozenset({"config", "results"})  # what a light query leaves out
SQLITE_BUSY_TIMEOUT_MS = 60_000  # shards on one file wait for each other rather than fail

_metadata = sa.MetaData()
runs_table = sa.Table(
    "runs",
    _metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("stage", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("results", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("owner", sa.String(200)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("created", sa.Float),
    sa.Column("started", sa.Float),
    sa.Column("ended", sa.Float),
    sa.Column("dir", sa.Text),
)
meta_table = sa.Table(
    "assay_meta",
    _metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# The hot statements are built once: SQLAlchemy then reuses their compiled form, and a run pays
# only for executing them (building a statement per call cost about half of the store's time).
_c = runs_table.c
_b = sa.bindparam
_GET = sa.select(runs_table).where(_c.id == _b("b_id"))
_CLAIM_READ = sa.select(_c.status, _c.attempts, _c.owner, _c.heartbeat).where(_c.id == _b("b_id"))
_CLAIM_WRITE = (
    sa.update(runs_table)
    .where(_c.id == _b("b_id"), _c.status == _b("b_status"), _c.attempts == _b("b_attempts"))
    .values(
        status=RunStatus.RUNNING.value,
        owner=_b("b_owner"),
        heartbeat=_b("b_now"),
        started=_b("b_now"),
        ended=None,
        error=None,
        attempts=_c.attempts + 1,
    )
)
_HEARTBEAT = (
    sa.update(runs_table)
    .where(_c.id == _b("b_id"), _c.owner == _b("b_owner"), _c.status == RunStatus.RUNNING.value)
    .values(heartbeat=_b("b_now"))
)
_FINISH_WHERE = (
    _c.id == _b("b_id"),
    _c.owner == _b("b_owner"),
    _c.status == RunStatus.RUNNING.value,
)
_FINISH_VALUES: dict[str, Any] = dict(
    status=_b("b_status"), results=_b("b_results"), error=_b("b_error"), ended=_b("b_now")
)
_FINISH = sa.update(runs_table).where(*_FINISH_WHERE).values(**_FINISH_VALUES)
_FINISH_AT = (
    sa.update(runs_table)
    .where(*_FINISH_WHERE, _c.attempts == _b("b_attempt"))
    .values(**_FINISH_VALUES)
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # Switching to WAL takes an exclusive lock without waiting on the busy handler: only the
    # first opener of a new file does it (the mode is stored in the file), and it may retry.
    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        for delay_s in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, None):
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                break
            except Exception as exc:
                if delay_s is None or "locked" not in str(exc):
                    raise
                time.sleep(delay_s)
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cur.close()


def _sqlite_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _writable_sqlite(url: str) -> bool:
    """May this process write the file and its folder (where SQLite puts -wal and -shm)?"""
    path = Path(url.split(":///", 1)[1]) if ":///" in url else None
    if path is None or str(path) == ":memory:":
        return True
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _read_only_url(url: str) -> str:
    """``sqlite:///file:PATH?mode=ro&uri=true``: SQLite never writes. In a folder this process
    cannot write (a read-only mount, another user's root) SQLite cannot create the -shm file a
    WAL database needs, so the file is read as ``immutable`` (a snapshot: fine for one read)."""
    path = Path(url.split(":///", 1)[1])
    query = "mode=ro&uri=true"
    if not os.access(path.parent, os.W_OK):
        query += "&immutable=1"
    quoted = urllib.parse.quote(str(path.resolve()))
    return f"sqlite:///file:{quoted}?{query}"


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class SQLStore(Store):
    """A :class:`Store` on any SQLAlchemy URL (tested with SQLite; PostgreSQL uses the same SQL)."""

    def __init__(self, url: str, root: str | Path | None = None, read_only: bool = False) -> None:
        """Args:
        read_only: only read (``ls``, ``show``, reports): nothing is created or written, and
            an SQLite file this process may not write is opened with ``mode=ro``, so a root on
            a read-only mount or another user's root can be read. (A writable file is opened
            as usual, so that closing it folds the WAL back and leaves no -wal/-shm files.)
        """
        self.url = url
        self.root = None if root is None else Path(root).resolve()
        self.is_sqlite = url.startswith("sqlite")
        self.read_only = read_only
        kwargs: dict[str, Any] = {}
        sqlite_ro = self.is_sqlite and read_only and not _writable_sqlite(url)
        if sqlite_ro:
            url = _read_only_url(url)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        elif self.is_sqlite:
            # isolation_level=None hands transaction control to SQLAlchemy, which then begins
            # every transaction with BEGIN IMMEDIATE (below): a claim reads, then writes, and a
            # deferred transaction upgrading to a write fails at once under contention instead
            # of waiting on the busy timeout.
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": 60,
                "isolation_level": None,
            }
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (ImportError, sa.exc.ArgumentError) as exc:
            raise StoreError(f"cannot open store {url!r}: {exc}") from None
        if self.is_sqlite:
            _check_sqlite_file(self.url)
        if sqlite_ro:
            sa.event.listen(self.engine, "connect", _sqlite_busy_timeout)
        elif self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _begin_immediate)
        self._ensure = _insert_ignore(self.engine, runs_table).values(
            id=_b("b_id"),
            stage=_b("b_stage"),
            status=RunStatus.PENDING.value,
            config=_b("b_config"),
            attempts=0,
            created=_b("b_now"),
            dir=_b("b_dir"),
        )
        # A new run is recorded and claimed by one statement: inserted as running at attempt 1
        # unless it exists (then the compare-and-swap below decides). One round trip instead
        # of four, where each round trip waits for CPU on a busy machine (PostgreSQL).
        self._insert_claimed = (
            _insert_ignore(self.engine, runs_table)
            .values(
                id=_b("b_id"),
                stage=_b("b_stage"),
                status=RunStatus.RUNNING.value,
                config=_b("b_config"),
                attempts=1,
                owner=_b("b_owner"),
                heartbeat=_b("b_now"),
                created=_b("b_now"),
                started=_b("b_now"),
                dir=_b("b_dir"),
            )
            .returning(runs_table.c.attempts)
        )
        self._init_schema()

    def _init_schema(self, tries: int = 5) -> None:
        try:
            with self.engine.begin() as conn:
                if not self.read_only:
                    _metadata.create_all(conn)
                row = conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).first()
                if row is None and not self.read_only:
                    conn.execute(
                        _insert_ignore(self.engine, meta_table).values(
                            key="schema_version", value=str(SCHEMA_VERSION)
                        )
                    )
                elif row is not None and int(row[0]) != SCHEMA_VERSION:
                    raise StoreError(
                        f"store {self.url} has schema version {row[0]}, this assay expects "
                        f"{SCHEMA_VERSION}; rebuild the index from the run directories with "
                        "`assay reindex --root ROOT` into a new store file"
                    )
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
            # Processes opening a new store together race to create its tables; the loser
            # finds them created and simply tries again.
            if tries > 1 and any(w in str(exc.orig).lower() for w in ("exist", "locked")):
                time.sleep(0.1)
                return self._init_schema(tries - 1)
            raise StoreError(self._open_error(exc)) from None
        except sa.exc.DatabaseError as exc:  # not a database, corrupt, encrypted
            raise StoreError(_unreadable(self.url, exc.orig)) from None
        if not self._has_runs_columns():
            raise StoreError(
                f"store {self.url} has a 'runs' table that assay did not create (columns differ); "
                "point --store at a new file, or move this one away and run `assay reindex`"
            )

    def _open_error(self, exc: Any) -> str:
        """The real cause of a failed open, and its fix; "reindex" only for a corrupt file."""
        why = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig)
        if not self.is_sqlite:
            url = self.engine.url
            if isinstance(exc, sa.exc.OperationalError):
                return (
                    f"cannot connect to the store's server at {url.host or 'localhost'}:"
                    f"{url.port or 5432} (database {url.database!r}, user {url.username!r}): "
                    f"{why}. Start the server, or fix the host, port, user, password or "
                    f"database in the --store URL ({url.render_as_string(hide_password=True)})"
                )
            return f"cannot use store {url.render_as_string(hide_password=True)}: {why}"
        path = self.url.split(":///", 1)[-1]
        low = why.lower() if isinstance(why, str) else ""
        folder = Path(path).parent
        if (
            "readonly" in low
            or "read-only" in low
            or ("unable to open" in low and folder.is_dir() and not os.access(folder, os.W_OK))
        ):
            return (
                f"store {path} is read-only here ({why}): this command records runs, so it "
                "needs a root you can write; run it on a root of your own (--root), or ask "
                "the owner. Reading commands (ls, show, status, report) work on it"
            )
        if "unable to open" in low:
            return (
                f"cannot open store {path} ({why}): check that its folder exists and that you "
                "may read it (and write it, for commands that record runs); or pass --root"
            )
        if isinstance(exc, sa.exc.OperationalError) and "locked" in low:
            return f"store {path} stayed locked by another process ({why}); try again"
        return _unreadable(self.url, exc.orig)

    def _has_runs_columns(self) -> bool:
        try:
            columns = {c["name"] for c in sa.inspect(self.engine).get_columns("runs")}
        except sa.exc.SQLAlchemyError:
            return False
        return set(runs_table.c.keys()) <= columns

    # -- the contract --------------------------------------------------------------------------
    def ensure(self, run_id: str, stage: str, config: str, dir: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._ensure, self._ensure_params(run_id, stage, config, dir))

    def _ensure_params(self, run_id: str, stage: str, config: str, dir: str) -> dict[str, Any]:
        if not isinstance(config, str):  # the contract: the plan's JSON text, stored as it is
            raise TypeError(f"Store.ensure takes the config as JSON text, got {type(config)}")
        return {
            "b_id": run_id,
            "b_stage": stage,
            "b_now": time.time(),
            "b_dir": self._rel(dir),
            "b_config": config,
        }

    def get(self, run_id: str) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(_GET, {"b_id": run_id}).first()
        return None if row is None else _record(row, self.root)

    def claim(
        self,
        run_id: str,
        owner: str,
        *,
        retry_failed: bool,
        stale_after_s: float,
        liveness: Callable[[str], bool | None],
        ensure: tuple[str, str, str] | None = None,
    ) -> int | None:
        with self.engine.begin() as conn:
            if ensure is not None:  # one transaction for "record if new" and "claim"
                params = {**self._ensure_params(run_id, *ensure), "b_owner": owner}
                if conn.execute(self._insert_claimed, params).first() is not None:
                    return 1  # it was new, and it is ours
            row = conn.execute(_CLAIM_READ, {"b_id": run_id}).first()
            if row is None:
                return None
            status, attempts, old_owner, beat = row
            now = time.time()
            claimable = (
                status == RunStatus.PENDING.value
                or (status == RunStatus.FAILED.value and retry_failed)
                or (
                    status == RunStatus.RUNNING.value
                    and _taken_over(liveness(old_owner or ""), beat, now - stale_after_s)
                )
            )
            if not claimable:
                return None
            result = conn.execute(
                _CLAIM_WRITE,
                {
                    "b_id": run_id,
                    "b_status": status,
                    "b_attempts": attempts,
                    "b_owner": owner,
                    "b_now": now,
                },
            )
            return attempts + 1 if result.rowcount == 1 else None

    def heartbeat(self, run_id: str, owner: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                _HEARTBEAT, {"b_id": run_id, "b_owner": owner, "b_now": time.time()}
            )
        return result.rowcount == 1

    def finish(
        self,
        run_id: str,
        owner: str,
        status: RunStatus,
        *,
        attempt: int | None = None,
        results: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        params = {
            "b_id": run_id,
            "b_owner": owner,
            "b_status": status.value,
            "b_results": None if results is None else dumps(results),
            "b_error": error,
            "b_now": time.time(),
            "b_attempt": attempt,
        }
        with self.engine.begin() as conn:
            result = conn.execute(_FINISH if attempt is None else _FINISH_AT, params)
        return result.rowcount == 1

    def query(
        self,
        *,
        ids: Iterable[str] | None = None,
        stage: str | None = None,
        status: RunStatus | None = None,
        light: bool = False,
    ) -> list[RunRecord]:
        t = runs_table.c
        base = (
            sa.select(*(c for c in runs_table.c if c.name not in _HEAVY))
            if light
            else (sa.select(runs_table))
        )
        if stage is not None:
            base = base.where(t.stage == stage)
        if status is not None:
            base = base.where(t.status == RunStatus(status).value)
        rows: list[Any] = []
        with self.engine.connect() as conn:
            if ids is None:
                rows = list(conn.execute(base.order_by(t.created, t.id)))
            else:
                id_list = list(ids)
                for start in range(0, len(id_list), ID_CHUNK):  # under SQL parameter limits
                    chunk = id_list[start : start + ID_CHUNK]
                    rows.extend(conn.execute(base.where(t.id.in_(chunk))))
        return [_record(row, self.root) for row in rows]

    def states(self, ids: Iterable[str]) -> dict[str, RunStatus]:
        t = runs_table.c
        id_list = list(ids)
        out: dict[str, RunStatus] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(id_list), ID_CHUNK):
                chunk = id_list[start : start + ID_CHUNK]
                for rid, status in conn.execute(sa.select(t.id, t.status).where(t.id.in_(chunk))):
                    out[rid] = RunStatus(status)
        return out

    def _rel(self, dir: str | Path) -> str:
        """A run directory as stored: relative to the root when it lies inside it."""
        path = Path(dir)
        if self.root is not None and path.is_absolute():
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return str(path)

    def put(self, record: RunRecord) -> None:
        values = dict(
            stage=record.stage,
            status=record.status.value,
            config=dumps(record.config),
            results=None if record.results is None else dumps(record.results),
            error=record.error,
            attempts=record.attempts,
            owner=record.owner,
            heartbeat=record.heartbeat,
            created=record.created,
            started=record.started,
            ended=record.ended,
            dir=None if record.dir is None else self._rel(record.dir),
        )
        t = runs_table.c
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(runs_table).where(t.id == record.id).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(runs_table).values(id=record.id, **values))

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"SQLStore({self.url!r})"


def _taken_over(alive: bool | None, beat: float | None, stale_before: float) -> bool:
    """A running run may be taken when its owner is known dead, or unknown and silent."""
    if alive is None:
        return (beat or 0) < stale_before
    return not alive


def _insert_ignore(engine: sa.Engine, table: sa.Table) -> Any:
    insert: Any
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise StoreError(f"store dialect {engine.dialect.name!r} is not supported")
    return insert(table).on_conflict_do_nothing()


def _resolve_dir(value: str | None, root: Path | None) -> Path | None:
    if value is None:
        return None
    if root is None or value.startswith("/"):
        return Path(value)
    return root / value


def _check_sqlite_file(url: str) -> None:
    """A file that is not SQLite (or is truncated) gets a message, not a driver traceback."""
    path = Path(url.split(":///", 1)[1]) if ":///" in url else None
    if path is None or not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        head = f.read(16)
    if head != b"SQLite format 3\x00":
        raise StoreError(_unreadable(url, "the file is not an SQLite database"))


def _unreadable(url: str, why: object) -> str:
    return (
        f"cannot read store {url}: {why}. The run directories are the source of truth: move "
        "the file away (or pass --store with a new file) and run `assay reindex --root ROOT` "
        "to rebuild the index"
    )


_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def decode_results(text: str) -> Any:
    """A results column as JSON data, with the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (how
    ``to_jsonable`` writes non-finite floats, JSON having no literal for them) back as floats,
    so a stage's ``-inf`` reads as ``-inf`` everywhere (``load_runs``, upstream results)."""
    data = json.loads(text)
    if '"nan"' in text or '"inf"' in text or '"-inf"' in text:  # rare: walk only then
        return _floats(data)
    return data


def _floats(obj: Any) -> Any:
    if type(obj) is str:
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_floats(v) for v in obj]
    return obj


def _record(row: Any, root: Path | None = None) -> RunRecord:
    m = row._asdict()  # a plain dict: RowMapping lookups cost 20 us each
    config, results = m.get("config"), m.get("results")
    return RunRecord(
        id=m["id"],
        stage=m["stage"],
        status=RunStatus(m["status"]),
        config={} if config is None else json.loads(config),
        results=None if results is None else decode_results(results),
        error=m["error"],
        attempts=m["attempts"],
        owner=m["owner"],
        heartbeat=m["heartbeat"],
        created=m["created"],
        started=m["started"],
        ended=m["ended"],
        dir=_resolve_dir(m["dir"], root),
    )
