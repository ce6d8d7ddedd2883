"""Database engines for both backends: PostgreSQL in production, SQLite for the embedded default."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
)

_log = logging.getLogger(__name__)


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


def param_mark(dialect: Dialect) -> str:
    """The DBAPI's positional parameter mark for hand-written SQL sent with `exec_driver_sql`: `?`
    (sqlite3, `qmark`) or `%s` (psycopg, `format`/`pyformat`); the two drivers this project runs on."""
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise ValueError(f"no positional parameter mark for paramstyle {dialect.paramstyle!r}")


def insert_or_skip(conn: Connection, table: Table, *conflict_columns: str) -> PgInsert | SqliteInsert:
    """`INSERT INTO table ... ON CONFLICT [(conflict_columns)] DO NOTHING` in the connection's
    dialect (PostgreSQL or SQLite, the two this project runs on)."""
    insert_fn = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return insert_fn(table).on_conflict_do_nothing(index_elements=list(conflict_columns) or None)


def executemany(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]], chunk: int = 5000) -> None:
    """`sql` (with `param_mark` marks) for every row, in the connection's transaction, straight
    through the driver's executemany, `chunk` rows per call (bounded memory for the driver)."""
    for start in range(0, len(rows), chunk):
        conn.exec_driver_sql(sql, list(rows[start : start + chunk]))


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs for many concurrent readers and writers.

    SQLite: WAL journal (readers never block the writer), a busy timeout instead of instant
    `database is locked`, foreign keys on, and `BEGIN IMMEDIATE` so a writing transaction takes
    the write lock up front (no upgrade deadlocks). PostgreSQL: psycopg 3, pre-ping.
    """
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        if "poolclass" not in kwargs and sa_url.database not in (None, "", ":memory:"):
            # a connection per request thread (anyio's pool has 40) kept open: opening one costs
            # its PRAGMAs, and the default 5 (+10 overflow, closed again at once) made concurrent
            # requests open and close connections all the time
            kwargs.setdefault("pool_size", 40)
            kwargs.setdefault("max_overflow", 40)
        engine = create_engine(sa_url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # a reader's transaction is a WAL snapshot and takes no lock (see `read_only`)
            reads_only = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if reads_only else "BEGIN IMMEDIATE")

        return engine
    if sa_url.drivername in ("postgresql", "postgres"):
        sa_url = sa_url.set(drivername="postgresql+psycopg")
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(sa_url, pool_pre_ping=True, **kwargs)


_READ_ONLY = "underretning_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine (same pool) for transactions that only read.

    SQLite: they begin with a plain (deferred) `BEGIN`, a WAL snapshot that takes no lock, instead
    of the `BEGIN IMMEDIATE` every transaction of `make_engine` starts with, so a read never waits
    for a writer nor holds one up. A statement that writes in such a transaction can fail with
    `database is locked` at once (the snapshot cannot be upgraded): only read through it.
    PostgreSQL: the same as `engine` (its readers never block writers).
    """
    return engine.execution_options(**{_READ_ONLY: True})


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS_GUARD = threading.Lock()


def writer_turn(engine: Engine) -> AbstractContextManager[object]:
    """On SQLite, one writing transaction of this process at a time, queued on a lock.

    SQLite has one writer per database anyway (`BEGIN IMMEDIATE`), and a writer that finds the
    database locked waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... 100 ms between
    looks: under concurrent requests (or a request beside the projection worker of the same
    process) that sleep, not the work, sets the latency. A lock hands the turn over at once.
    Writers of other processes on the same file still meet the busy handler. PostgreSQL: nothing.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _SQLITE_WRITERS_GUARD:
        lock = _SQLITE_WRITERS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITERS[engine] = threading.Lock()
    return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, after waiting for this process's writer turn on SQLite (`writer_turn`)."""
    with writer_turn(engine), engine.begin() as conn:
        yield conn


class FreshStatistics:
    """On PostgreSQL, `ANALYZE` of `tables` (in a thread of its own) each time the rows this process
    has written pass `first`, then 4x that, 16x ... up to `last`; nothing on SQLite.

    Autovacuum analyzes a table at the earliest a minute after it changed (`autovacuum_naptime`),
    and a fresh table has no statistics until then. Without them the planner takes a lookup by
    primary key through another index of the same leading column (intake's case lookup read a
    municipality's every case, 1.3 ms instead of 0.05, at 2,000 cases), and a first import or the
    first minutes of a new deployment run on such plans. An `ANALYZE` also invalidates the plans
    every connection keeps for its prepared statements (psycopg prepares after five runs), so a
    generic plan made while the table was empty does not outlive it. The growing steps keep it to a
    handful of `ANALYZE`s per process; past `last` autovacuum's own thresholds are close enough.
    """

    def __init__(
        self, engine: Engine, tables: Sequence[str], first: int = 500, last: int = 2_000_000
    ) -> None:
        self.engine = engine
        self.tables = tuple(tables)
        self.enabled = engine.dialect.name == "postgresql" and bool(self.tables)
        self.last = last
        self.runs = 0  # ANALYZEs done (for tests)
        self._next = first
        self._written = 0
        self._running: threading.Thread | None = None
        self._lock = threading.Lock()

    def wrote(self, rows: int) -> None:
        """Count `rows` written (committed); starts an ANALYZE when a step is passed."""
        if not self.enabled or self._next > self.last:
            return
        with self._lock:
            self._written += rows
            if self._written < self._next or self._running is not None:
                return
            while self._next <= self._written:
                self._next *= 4
            self._running = threading.Thread(target=self._analyze, name="analyze", daemon=True)
            self._running.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until a running ANALYZE is done (tests, shutdown)."""
        running = self._running
        if running is not None:
            running.join(timeout)

    def _analyze(self) -> None:
        quote = self.engine.dialect.identifier_preparer.quote
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE " + ", ".join(quote(t) for t in self.tables))
            self.runs += 1
        except Exception:  # statistics are an optimisation: the next step tries again
            _log.warning("ANALYZE of %s failed", ", ".join(self.tables), exc_info=True)
        finally:
            with self._lock:
                self._running = None


def is_transient(exc: BaseException) -> bool:
    """A database that is down, restarting or locked (not a bug in a statement): try again later."""
    if isinstance(exc, (OperationalError, InterfaceError, PendingRollbackError, DisconnectionError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
