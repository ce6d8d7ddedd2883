"""Fast bulk INSERTs for the projection's rows: positional tuples straight to the driver's `executemany`.

SQLAlchemy's `conn.execute(insert(table), [dict, ...])` builds and processes every parameter of every
row in Python, which costs more than the database's own work for the tens of thousands of rows a
replay writes. Here a row is a tuple in the order of `columns`, already holding the values the
driver takes: each instant goes through `instant_encoder(dialect)` first, which gives exactly what
SQLAlchemy's `DateTime` stores (on SQLite the naive-UTC text `YYYY-MM-DD HH:MM:SS.ffffff`; on
PostgreSQL the aware datetime itself, for psycopg to send as `timestamptz`). Strings, integers,
booleans and NULLs need no conversion on either backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.engine import Dialect

from shared.casework.isotext import sqlite_utc_text
from shared.db import param_mark

InstantEncoder = Callable[[datetime | None], Any]


def sqlite_text(at: datetime) -> str:
    """An aware instant as SQLAlchemy's `DateTime` holds it on SQLite (naive UTC text)."""
    return at.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def sqlite_instant(at: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME storage format ("%04d-%02d-%02d %02d:%02d:%02d.%06d" of the
    # value's own fields): every instant here is aware UTC (another offset is converted first)
    return None if at is None else sqlite_utc_text(at)


def _native_instant(at: datetime | None) -> datetime | None:
    return at if at is None or at.tzinfo is UTC else at.astimezone(UTC)


class _Memo(dict[datetime | None, Any]):
    """`encode` of each distinct UTC instant once (other zones are encoded, not kept)."""

    def __init__(self, encode: InstantEncoder) -> None:
        super().__init__({None: None})
        self.encode = encode

    def __missing__(self, at: datetime) -> Any:
        value = self.encode(at)
        if at.tzinfo is UTC:
            self[at] = value
        return value


def instant_encoder(dialect: Dialect, *, memo: bool = False) -> InstantEncoder:
    """How to hand an instant (aware, UTC) to this dialect's driver in a raw `executemany`.
    `memo`: remember each distinct instant's value (for one batch of rows with many repeats)."""
    if dialect.name != "sqlite":
        return _native_instant
    return _Memo(sqlite_instant).__getitem__ if memo else sqlite_instant


@lru_cache(maxsize=64)
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str | None:
    try:
        mark = param_mark(dialect)
    except ValueError:
        return None
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    marks = ", ".join([mark] * len(columns))
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """INSERT `rows` (tuples in the order of `columns`, instants already encoded with
    `instant_encoder(conn.dialect)`) into `table`, in the connection's transaction."""
    if not rows:
        return
    sql = _insert_sql(conn.dialect, table, columns)
    if sql is None:  # a driver with another parameter style (not SQLite, not psycopg): the usual way
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    conn.exec_driver_sql(sql, list(rows))
