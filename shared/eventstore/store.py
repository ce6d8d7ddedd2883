"""The event store: append with optimistic concurrency and record idempotency, read by stream or
by global position. All writes happen in the caller's transaction so that intake's own tables,
the events and their outbox rows commit together (no dual writes).

`append` writes the events of one stream; `append_many` the events of many streams in a few
statements (a bulk import's chunk), with the same per-stream guarantee."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Row,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert

from shared.events.catalogue import decode_payload_json
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events, outbox

IN_LIST_LIMIT = 1000  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits

# Statements built once: building and cache-keying an expression costs more than running it.
_INSERT_EVENT = insert(events).returning(events.c.position)
_INSERT_EVENTS_SQLITE = insert(events)
_INSERT_OUTBOX = insert(outbox)
_STREAM_VERSION = select(func.coalesce(func.max(events.c.version), 0)).where(
    events.c.stream_id == bindparam("stream")
)
_STREAM_VERSIONS = (
    select(events.c.stream_id, func.max(events.c.version))
    .where(events.c.stream_id.in_(bindparam("ids", expanding=True)))
    .group_by(events.c.stream_id)
)
_FIND_RECORD = select(events.c.position, events.c.content_hash).where(
    events.c.municipality == bindparam("m"), events.c.record_id == bindparam("record")
)


def _wanted() -> Any:
    """`unnest(:ids) AS wanted(id)`: the ids looked up, as a table (PostgreSQL)."""
    return (
        func.unnest(bindparam("ids", type_=postgresql.ARRAY(String)))
        .table_valued("id")
        .render_derived(name="wanted")
    )


@dataclass(frozen=True)
class KeyLookup:
    """Rows of a table whose key (with the municipality) is among many ids, in one statement per
    IN_LIST_LIMIT ids. Portable: `municipality = :m AND key IN (...)`. On PostgreSQL a lateral
    join over `unnest(:ids)` instead, which looks every id up in the key's index whatever the
    planner's statistics say (a table filled by a first big import has none yet, and the IN form
    is then planned as a scan of the whole municipality for every chunk)."""

    portable: Executable
    postgres: Executable

    @staticmethod
    def of(columns: Sequence[Any], municipality: ColumnElement[Any], key: ColumnElement[Any]) -> KeyLookup:
        portable = select(*columns).where(
            municipality == bindparam("m"), key.in_(bindparam("ids", expanding=True))
        )
        wanted = _wanted()
        found = select(*columns).where(municipality == bindparam("m"), key == wanted.c.id).lateral("found")
        return KeyLookup(portable, select(found).select_from(wanted).join(found, true()))

    def rows(self, conn: Connection, municipality: str, ids: Iterable[str]) -> list[Row[Any]]:
        statement = self.postgres if conn.dialect.name == "postgresql" else self.portable
        out: list[Row[Any]] = []
        for piece in pieces(ids):
            out += conn.execute(statement, {"m": municipality, "ids": piece}).all()
        return out


_FIND_RECORDS = KeyLookup.of(
    [events.c.record_id, events.c.position, events.c.content_hash], events.c.municipality, events.c.record_id
)


def _stream_versions_pg() -> Executable:
    """The newest version of each stream named in `:ids` (a correlated max per id: an index lookup)."""
    wanted = _wanted()
    newest = select(func.max(events.c.version)).where(events.c.stream_id == wanted.c.id).scalar_subquery()
    return select(wanted.c.id, func.coalesce(newest, 0)).select_from(wanted)


_STREAM_VERSIONS_PG = _stream_versions_pg()
_LOCK_APPENDS = text("SELECT pg_advisory_xact_lock(727274)")
_SQLITE_HEAD = "SELECT coalesce(max(position), 0) FROM events"


_SQLITE_COMPILED: dict[tuple[int, tuple[str, ...]], tuple[str, Any, tuple[str, ...]]] = {}


def run_many(conn: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run a prebuilt INSERT or UPDATE once per parameter set (an executemany).

    On SQLite straight through the driver's executemany, the statement compiled once per set of
    keys: SQLAlchemy's own executemany processes every parameter set in Python, which costs more
    than SQLite's work. On PostgreSQL an INSERT of many rows is one `INSERT .. SELECT FROM
    unnest(arrays)` (`_pg_insert_arrays`); an UPDATE goes through SQLAlchemy (psycopg pipelines
    it). Values go to the driver as they are (str, int, bool, bytes, None): the rows must hold
    plain values.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql" and isinstance(statement, Insert) and len(rows) > 1:
        _pg_insert_arrays(conn, statement.table, rows)  # type: ignore[arg-type]
        return
    if conn.dialect.name != "sqlite":
        conn.execute(statement, list(rows) if len(rows) > 1 else rows[0])
        return
    keys = tuple(rows[0])
    cache_key = (id(statement), keys)
    hit = _SQLITE_COMPILED.get(cache_key)
    if hit is None:
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(keys))  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup)
        fixed = tuple(n for n in dict.fromkeys(names) if n not in keys)  # values given in the statement
        if fixed:
            defaults = {n: compiled.params[n] for n in fixed}
            sql = str(compiled)

            def getter(row: Mapping[str, Any], _names: tuple[str, ...] = names) -> tuple[Any, ...]:
                return tuple(row[n] if n in row else defaults[n] for n in _names)

            hit = (sql, getter, names)
        else:
            hit = (
                str(compiled),
                itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],)),
                names,
            )
        _SQLITE_COMPILED[cache_key] = hit
    sql, get, _ = hit
    conn.exec_driver_sql(sql, [get(row) for row in rows])


_PG_ARRAY_SQL: dict[tuple[str, tuple[str, ...], str | None], str] = {}


def _pg_array_sql(conn: Connection, table: Table, keys: tuple[str, ...], returning: str | None) -> str:
    """`INSERT INTO table (keys) SELECT .. FROM unnest(:c0::type[], ..) WITH ORDINALITY .. ORDER BY`:
    one short statement (parsed and planned once) for any number of rows, inserted in the order
    given. SQLAlchemy's own many-row INSERT writes a statement with a placeholder per value, which
    psycopg then parses in Python: for 500 events that costs more than PostgreSQL's work."""
    cache_key = (table.name, keys, returning)
    sql = _PG_ARRAY_SQL.get(cache_key)
    if sql is None:
        preparer = conn.dialect.identifier_preparer
        arrays = ", ".join(
            f"CAST(%(c{i})b AS {table.c[k].type.compile(dialect=conn.dialect)}[])" for i, k in enumerate(keys)
        )
        names = [preparer.quote(k) for k in keys]
        row_names = ", ".join(f"r.{n}" for n in names)
        sql = (
            f"INSERT INTO {preparer.format_table(table)} ({', '.join(names)}) SELECT {row_names}"
            f" FROM unnest({arrays}) WITH ORDINALITY AS r({', '.join(names)}, ordinality)"
            " ORDER BY r.ordinality"
        )
        if returning:
            sql += f" RETURNING {returning}"
        _PG_ARRAY_SQL[cache_key] = sql
    return sql


def _pg_insert_arrays(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], returning: str | None = None
) -> Sequence[Row[Any]]:
    keys = tuple(rows[0])
    params = {f"c{i}": [row[k] for row in rows] for i, k in enumerate(keys)}
    result = conn.exec_driver_sql(_pg_array_sql(conn, table, keys, returning), params)
    return result.all() if returning else []


_SAVEPOINT_NAMES = itertools.count(1)


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """`conn.begin_nested()`: a savepoint, rolled back if the block raises. On SQLite issued as plain
    SQL (a quarter of the cost of SQLAlchemy's nested transaction, which compiles both statements
    every time); SQLAlchemy's own savepoints may nest inside it."""
    if conn.dialect.name != "sqlite":
        with conn.begin_nested():
            yield
        return
    name = f"es_sp_{next(_SAVEPOINT_NAMES)}"
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        raise
    conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")


def new_event_id() -> str:
    """A time-ordered UUID (version 7, RFC 9562): as unique as a random one (74 random bits), but
    ids made later sort after earlier ones, so the unique index on `events.event_id` grows at its
    end instead of at a random page for every insert. On SQLite a bulk import's commits then
    write a fraction of the index pages (a bare insert of 200,000 events: 2.6x the rate)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    tail = (0b10 << 62) | (rand & ((1 << 62) - 1))  # variant 10, then 62 random bits
    head = f"{ms & 0xFFFFFFFFFFFF:012x}"
    return f"{head[:8]}-{head[8:]}-7{rand >> 68:03x}-{tail >> 48:04x}-{tail & 0xFFFFFFFFFFFF:012x}"


def pieces(values: Iterable[str], size: int = IN_LIST_LIMIT) -> Iterable[list[str]]:
    """Distinct values in lists of at most `size` (for IN (...) lists)."""
    distinct = list(dict.fromkeys(values))
    for i in range(0, len(distinct), size):
        yield distinct[i : i + size]


def wire_bytes(env: EventEnvelope, position: int | None, data_json: str) -> bytes:
    """`env.with_position(position).to_bytes()`, without decoding and encoding the payload again."""
    head = json.dumps(
        {
            "event_id": env.event_id,
            "stream_id": env.stream_id,
            "version": env.version,
            "type": env.type,
            "schema_version": env.schema_version,
            "municipality": env.municipality,
            "record_id": env.record_id,
            "occurred_at": env.occurred_at.isoformat(),
            "recorded_at": env.recorded_at.isoformat(),
            "correlation_id": env.correlation_id,
            "position": position,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return (head[:-1] + ',"data":' + data_json + "}").encode()


def _event_row(env: EventEnvelope, content_hash: str, data_json: str) -> dict[str, Any]:
    return {
        "event_id": env.event_id,
        "stream_id": env.stream_id,
        "version": env.version,
        "type": env.type,
        "schema_version": env.schema_version,
        "municipality": env.municipality,
        "record_id": env.record_id,
        "occurred_at": env.occurred_at.isoformat(),
        "recorded_at": env.recorded_at.isoformat(),
        "correlation_id": env.correlation_id,
        "content_hash": content_hash,
        "data": data_json,
    }


class ConcurrencyError(Exception):
    """Another writer appended to the stream at the same version first."""


class DuplicateRecordError(Exception):
    """The (municipality, record_id) is already in the log."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    position: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event for `append_many`: its envelope, the content hash of the record it comes from, and
    the payload's JSON when the caller has it already (else it is encoded here, once)."""

    envelope: EventEnvelope
    content_hash: str
    data_json: str | None = None


class EventStore:
    """Append-only event log on SQLAlchemy Core.

    `outbox_topic`: when set, every appended event also gets an outbox row in the same
    transaction, for the relay to publish to Kafka. `serialize_appends`: on PostgreSQL, take a
    transaction-level advisory lock so positions become visible in order (needed only when
    projections tail the SQL log by position instead of consuming Kafka).
    """

    def __init__(self, *, outbox_topic: str | None = None, serialize_appends: bool = False) -> None:
        self.outbox_topic = outbox_topic
        self.serialize_appends = serialize_appends

    # --- writing ---------------------------------------------------------------------------

    def append(
        self,
        conn: Connection,
        new_events: Sequence[EventEnvelope],
        *,
        expected_version: int,
        content_hash: str,
    ) -> list[EventEnvelope]:
        """Append events of ONE stream after `expected_version`; returns them with positions.

        Raises ConcurrencyError if the stream moved on, DuplicateRecordError if the record id
        is taken. Nothing is written in either case (a savepoint is rolled back).
        """
        if not new_events:
            return []
        stream_ids = {e.stream_id for e in new_events}
        if len(stream_ids) != 1:
            raise ValueError("append takes the events of one stream")
        self._lock(conn)
        stored: list[EventEnvelope] = []
        try:
            with savepoint(conn):
                for offset, env in enumerate(new_events, start=1):
                    if env.version != expected_version + offset:
                        raise ValueError("event versions must follow expected_version")
                    data_json = env.data_json()
                    position = conn.execute(
                        _INSERT_EVENT, _event_row(env, content_hash, data_json)
                    ).scalar_one()
                    stored.append(env.with_position(position))
                    if self.outbox_topic:
                        conn.execute(_INSERT_OUTBOX, self._outbox_row(env, position, data_json))
        except IntegrityError as exc:
            raise _classified(exc, new_events[0]) from None
        return stored

    def append_many(
        self,
        conn: Connection,
        items: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, int],
    ) -> list[int]:
        """Append the events of MANY streams in a few statements; returns their positions, in order.

        The events of each stream must carry the versions `expected_versions[stream] + 1, + 2, ...`
        in the order given (streams may interleave); positions are assigned in the order given.
        The same guarantees as `append`, for every stream: ConcurrencyError if any stream moved on
        (one of its versions is taken), DuplicateRecordError if any record id is taken. Nothing is
        written in either case (a savepoint is rolled back): the caller may then append the events
        one by one to find out which of them lost.
        """
        if not items:
            return []
        following: dict[str, int] = {}
        for item in items:
            env = item.envelope
            version = following.get(env.stream_id)
            if version is None:
                version = expected_versions[env.stream_id]
            if env.version != version + 1:
                raise ValueError(f"event versions of stream {env.stream_id} must follow its expected version")
            following[env.stream_id] = env.version
        self._lock(conn)
        rows: list[dict[str, Any]] = []
        encoded: list[str] = []
        for item in items:
            data_json = item.data_json if item.data_json is not None else item.envelope.data_json()
            encoded.append(data_json)
            rows.append(_event_row(item.envelope, item.content_hash, data_json))
        try:
            with savepoint(conn):
                positions = self._insert_events(conn, rows)
                if self.outbox_topic:
                    run_many(
                        conn,
                        _INSERT_OUTBOX,
                        [
                            self._outbox_row(item.envelope, position, data_json)
                            for item, position, data_json in zip(items, positions, encoded, strict=True)
                        ],
                    )
        except IntegrityError as exc:
            raise _classified(exc, items[0].envelope) from None
        return positions

    @staticmethod
    def _insert_events(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert event rows; their positions, in the order given."""
        if conn.dialect.name == "sqlite":
            # One writer at a time (the write lock is held from the first write of the transaction,
            # `BEGIN IMMEDIATE` in shared.db), so the next positions are known: number the rows
            # ourselves and skip RETURNING. A position taken meanwhile after all (a connection
            # not opened by shared.db) hits the primary key: IntegrityError, nothing written.
            head = int(conn.exec_driver_sql(_SQLITE_HEAD).scalar_one())
            positions = list(range(head + 1, head + 1 + len(rows)))
            for row, position in zip(rows, positions, strict=True):
                row["position"] = position
            run_many(conn, _INSERT_EVENTS_SQLITE, rows)
            return positions
        # PostgreSQL: the rows are inserted in the order given, but match the returned positions to
        # the rows by event id rather than trust the order RETURNING lists them in.
        returned: dict[str, int] = {
            r.event_id: int(r.position)
            for r in _pg_insert_arrays(conn, events, rows, returning="event_id, position")
        }
        if len(returned) != len(rows):
            raise RuntimeError("append_many: the database returned fewer positions than rows")
        return [returned[row["event_id"]] for row in rows]

    def _lock(self, conn: Connection) -> None:
        if self.serialize_appends and conn.dialect.name == "postgresql":
            conn.execute(_LOCK_APPENDS)

    def _outbox_row(self, env: EventEnvelope, position: int, data_json: str) -> dict[str, Any]:
        return {
            "position": position,
            "topic": self.outbox_topic,
            "key": env.stream_id,
            "payload": wire_bytes(env, position, data_json),
            "created_at": datetime.now(UTC).isoformat(),
        }

    # --- reading ---------------------------------------------------------------------------

    def stream_version(self, conn: Connection, stream_id: str) -> int:
        return int(conn.execute(_STREAM_VERSION, {"stream": stream_id}).scalar_one())

    def stream_versions(self, conn: Connection, stream_ids: Iterable[str]) -> dict[str, int]:
        """The current version of each stream (0 for a stream without events)."""
        found: dict[str, int] = {}
        statement = _STREAM_VERSIONS_PG if conn.dialect.name == "postgresql" else _STREAM_VERSIONS
        for piece in pieces(stream_ids):
            found.update({stream: 0 for stream in piece})
            found.update((row[0], int(row[1])) for row in conn.execute(statement, {"ids": piece}))
        return found

    def find_record(self, conn: Connection, municipality: str, record_id: str) -> StoredRecord | None:
        row = conn.execute(_FIND_RECORD, {"m": municipality, "record": record_id}).first()
        return StoredRecord(row.position, row.content_hash) if row else None

    def find_records(
        self, conn: Connection, municipality: str, record_ids: Iterable[str]
    ) -> dict[str, StoredRecord]:
        """The stored records among `record_ids` of the municipality, by record id."""
        return {
            row.record_id: StoredRecord(row.position, row.content_hash)
            for row in _FIND_RECORDS.rows(conn, municipality, record_ids)
        }

    def read_stream(self, conn: Connection, stream_id: str) -> list[EventEnvelope]:
        rows = conn.execute(
            select(events).where(events.c.stream_id == stream_id).order_by(events.c.version)
        ).all()
        return [row_to_envelope(r) for r in rows]

    def read_all(self, conn: Connection, after_position: int, limit: int = 1000) -> list[EventEnvelope]:
        rows = conn.execute(
            select(events).where(events.c.position > after_position).order_by(events.c.position).limit(limit)
        ).all()
        return [row_to_envelope(r) for r in rows]

    def head_position(self, conn: Connection) -> int:
        return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())

    def count(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def _classified(exc: IntegrityError, first: EventEnvelope) -> Exception:
    """A unique-key violation of the events table as the store's own error."""
    if "record" in str(exc.orig):
        return DuplicateRecordError(first.record_id)
    return ConcurrencyError(first.stream_id)


def row_to_envelope(row: object) -> EventEnvelope:
    """An `events` row (selected with all columns) -> its envelope, the payload validated from its text."""
    r = row._mapping  # type: ignore[attr-defined]
    return EventEnvelope(
        event_id=r["event_id"],
        stream_id=r["stream_id"],
        version=r["version"],
        municipality=r["municipality"],
        record_id=r["record_id"],
        occurred_at=datetime.fromisoformat(r["occurred_at"]),
        recorded_at=datetime.fromisoformat(r["recorded_at"]),
        correlation_id=r["correlation_id"],
        payload=decode_payload_json(r["type"], r["schema_version"], r["data"]),
        position=r["position"],
    )
