"""Database engines for both backends: PostgreSQL in production, SQLite for the embedded default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
)


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
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if sa_url.drivername in ("postgresql", "postgres"):
        sa_url = sa_url.set(drivername="postgresql+psycopg")
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(sa_url, pool_pre_ping=True, **kwargs)


def is_transient(exc: BaseException) -> bool:
    """A database that is down, restarting or locked (not a bug in a statement): try again later."""
    if isinstance(exc, (OperationalError, InterfaceError, PendingRollbackError, DisconnectionError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
