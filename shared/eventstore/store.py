"""The event store: append with optimistic concurrency and record idempotency, read by stream or
by global position. All writes happen in the caller's transaction so that intake's own tables,
the events and their outbox rows commit together (no dual writes).

`append` writes the events of one stream; `append_many` the events of many streams in a few
statements (a bulk import's chunk), with the same per-stream guarantee."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
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

from shared.events.catalogue import json_decoder
from shared.events.envelope import EventEnvelope, make_envelope
from shared.eventstore.schema import events, outbox

IN_LIST_LIMIT = 1000  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits

# Statements built once: building and cache-keying an expression costs more than running it.
_INSERT_EVENT = insert(events).returning(events.c.position)
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
    is then planned as a scan of the whole municipality for every chunk); the lateral subquery
    has `OFFSET 0` so that the planner cannot turn it into a join of its own choosing."""

    portable: Executable
    postgres: Executable

    @staticmethod
    def of(columns: Sequence[Any], municipality: ColumnElement[Any], key: ColumnElement[Any]) -> KeyLookup:
        portable = select(*columns).where(
            municipality == bindparam("m"), key.in_(bindparam("ids", expanding=True))
        )
        wanted = _wanted()
        # OFFSET 0 keeps the subquery a subquery (PostgreSQL pulls up a plain one into a join and
        # may then plan it as a hash join over every row of the municipality: a fresh table has
        # no statistics yet, and that read 12,000 rows for 6 ids at 12,000 events, 3 ms a chunk)
        found = (
            select(*columns)
            .where(municipality == bindparam("m"), key == wanted.c.id)
            .offset(0)
            .lateral("found")
        )
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
    return _pg_insert_columns(conn, table, keys, [[row[k] for row in rows] for k in keys], returning)


def _pg_insert_columns(
    conn: Connection,
    table: Table,
    keys: Sequence[str],
    columns: Sequence[Sequence[Any]],
    returning: str | None = None,
) -> Sequence[Row[Any]]:
    """`_pg_array_sql` with the values given column by column (one list per key)."""
    params = {f"c{i}": list(column) for i, column in enumerate(columns)}
    result = conn.exec_driver_sql(_pg_array_sql(conn, table, tuple(keys), returning), params)
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
    return new_event_ids(1)[0]


def new_event_ids(n: int) -> list[str]:
    """`n` ids as `new_event_id` makes them, for many events at once (one clock reading, one call
    for the random bits): a bulk import's chunk."""
    ms = f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}"
    prefix = f"{ms[:8]}-{ms[8:]}-7"
    # per id: 12 random bits (rand_a), then the variant 10 and 62 random bits (rand_b), as before
    r = os.urandom(10 * n).hex()
    return [
        f"{prefix}{r[i : i + 3]}-{_VARIANT[r[i + 3]]}{r[i + 4 : i + 7]}-{r[i + 7 : i + 19]}"
        for i in range(0, 20 * n, 20)
    ]


# the first hex digit of rand_b: its two top bits are the variant (10), two random bits follow
_VARIANT = {f"{d:x}": f"{0b1000 | d & 0b11:x}" for d in range(16)}


def pieces(values: Iterable[str], size: int = IN_LIST_LIMIT) -> Iterable[list[str]]:
    """Distinct values in lists of at most `size` (for IN (...) lists)."""
    distinct = list(dict.fromkeys(values))
    for i in range(0, len(distinct), size):
        yield distinct[i : i + size]


def wire_bytes(env: EventEnvelope, position: int | None, data_json: str) -> bytes:
    """`env.with_position(position).to_bytes()`, without decoding and encoding the payload again."""
    return _wire(event_row(env, "", data_json), position)


def _wire(row: EventRow, position: int | None) -> bytes:
    """The Kafka value of an event row (`EventEnvelope.to_bytes` of it): orjson writes exactly what
    `json.dumps(..., separators=(",", ":"), ensure_ascii=False)` does for strings and integers."""
    head = orjson.dumps(
        {
            "event_id": row[0],
            "stream_id": row[1],
            "version": row[2],
            "type": row[3],
            "schema_version": row[4],
            "municipality": row[5],
            "record_id": row[6],
            "occurred_at": row[7],
            "recorded_at": row[8],
            "correlation_id": row[9],
            "position": position,
        }
    )
    return head[:-1] + b',"data":' + row[11].encode() + b"}"


# The columns of an event row as `append_rows` takes it (all of `events` but `position`).
EVENT_COLUMNS = (
    "event_id",
    "stream_id",
    "version",
    "type",
    "schema_version",
    "municipality",
    "record_id",
    "occurred_at",
    "recorded_at",
    "correlation_id",
    "content_hash",
    "data",
)
EventRow = tuple[str, str, int, str, int, str, str, str, str, str, str, str]


def event_row(env: EventEnvelope, content_hash: str, data_json: str) -> EventRow:
    """The `events` row of an envelope (times as ISO 8601 with their offsets), `EVENT_COLUMNS`."""
    return (
        env.event_id,
        env.stream_id,
        env.version,
        env.type,
        env.schema_version,
        env.municipality,
        env.record_id,
        env.occurred_at.isoformat(),
        env.recorded_at.isoformat(),
        env.correlation_id,
        content_hash,
        data_json,
    )


def _event_row(env: EventEnvelope, content_hash: str, data_json: str) -> dict[str, Any]:
    return dict(zip(EVENT_COLUMNS, event_row(env, content_hash, data_json), strict=True))


_SQLITE_INSERT_EVENTS = (
    f"INSERT INTO events (position, {', '.join(EVENT_COLUMNS)}) VALUES ({', '.join(['?'] * 13)})"
)
_PG_NEXT_POSITIONS = (
    "SELECT nextval(pg_get_serial_sequence('events', 'position')) FROM generate_series(1, %(n)s)"
)
_PG_COPY_EVENTS = f"COPY events (position, {', '.join(EVENT_COLUMNS)}) FROM STDIN"
_PG_COPY_OUTBOX = "COPY outbox (position, topic, key, payload, created_at) FROM STDIN"


def _pg_copy(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY rows in the connection's transaction; a unique-key violation as SQLAlchemy's
    IntegrityError, as an INSERT would raise it."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    try:
        with dbapi.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)
    except dbapi.IntegrityError as exc:  # type: ignore[attr-defined]
        raise IntegrityError(sql, None, exc) from exc


_SQLITE_INSERT_OUTBOX = (
    "INSERT INTO outbox (position, topic, key, payload, created_at) VALUES (?, ?, ?, ?, ?)"
)


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
            raise _classified(exc, new_events[0].record_id, new_events[0].stream_id) from None
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
        rows = [
            event_row(
                item.envelope,
                item.content_hash,
                item.data_json if item.data_json is not None else item.envelope.data_json(),
            )
            for item in items
        ]
        return self.append_rows(conn, rows, expected_versions=expected_versions)

    def append_rows(
        self,
        conn: Connection,
        rows: Sequence[EventRow],
        *,
        expected_versions: Mapping[str, int],
    ) -> list[int]:
        """`append_many` for events already written as rows (`event_row`, `EVENT_COLUMNS`): a bulk
        import builds them without an envelope per event. The same checks and guarantees."""
        if not rows:
            return []
        following: dict[str, int] = {}
        for row in rows:
            stream_id, version = row[1], row[2]
            before = following.get(stream_id)
            if before is None:
                before = expected_versions[stream_id]
            if version != before + 1:
                raise ValueError(f"event versions of stream {stream_id} must follow its expected version")
            following[stream_id] = version
        self._lock(conn)
        try:
            with savepoint(conn):
                positions = self._insert_events(conn, rows)
                if self.outbox_topic:
                    self._insert_outbox(conn, rows, positions)
        except IntegrityError as exc:
            raise _classified(exc, rows[0][6], rows[0][1]) from None
        return positions

    @staticmethod
    def _insert_events(conn: Connection, rows: Sequence[EventRow]) -> list[int]:
        """Insert event rows; their positions, in the order given."""
        if conn.dialect.name == "sqlite":
            # One writer at a time (the write lock is held from the first write of the transaction,
            # `BEGIN IMMEDIATE` in shared.db), so the next positions are known: number the rows
            # ourselves and skip RETURNING. A position taken meanwhile after all (a connection
            # not opened by shared.db) hits the primary key: IntegrityError, nothing written.
            head = int(conn.exec_driver_sql(_SQLITE_HEAD).scalar_one())
            positions = list(range(head + 1, head + 1 + len(rows)))
            conn.exec_driver_sql(
                _SQLITE_INSERT_EVENTS, [(p, *row) for p, row in zip(positions, rows, strict=True)]
            )
            return positions
        # PostgreSQL: take the positions from the column's sequence first (in order: under the append
        # lock when projections tail the log by position), then COPY the rows with them: psycopg
        # writes COPY rows in C, where an INSERT of arrays has every value dumped in Python.
        positions = sorted(
            int(p) for p in conn.exec_driver_sql(_PG_NEXT_POSITIONS, {"n": len(rows)}).scalars()
        )
        _pg_copy(conn, _PG_COPY_EVENTS, [(p, *row) for p, row in zip(positions, rows, strict=True)])
        return positions

    def _insert_outbox(self, conn: Connection, rows: Sequence[EventRow], positions: Sequence[int]) -> None:
        """The outbox rows of the events (same transaction): the Kafka value is the event's wire form."""
        created = datetime.now(UTC).isoformat()
        topic = self.outbox_topic
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                _SQLITE_INSERT_OUTBOX,
                [
                    (position, topic, row[1], _wire(row, position), created)
                    for row, position in zip(rows, positions, strict=True)
                ],
            )
            return
        _pg_copy(
            conn,
            _PG_COPY_OUTBOX,
            [(p, topic, row[1], _wire(row, p), created) for row, p in zip(rows, positions, strict=True)],
        )

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


def _classified(exc: IntegrityError, record_id: str, stream_id: str) -> Exception:
    """A unique-key violation of the events table as the store's own error."""
    if "record" in str(exc.orig):
        return DuplicateRecordError(record_id)
    return ConcurrencyError(stream_id)


def row_to_envelope(row: object) -> EventEnvelope:
    """An `events` row (selected with all columns) -> its envelope, the payload validated from its text."""
    r = row._mapping  # type: ignore[attr-defined]
    return EventEnvelope(
        event_id=r["event_id"],
        stream_id=r["stream_id"],
        version=r["version"],
        municipality=r["municipality"],
        record_id=r["record_id"],
        occurred_at=_fromisoformat(r["occurred_at"]),
        recorded_at=_fromisoformat(r["recorded_at"]),
        correlation_id=r["correlation_id"],
        payload=json_decoder(r["type"], r["schema_version"])(r["data"]),
        position=r["position"],
    )


# --- the bulk read: log rows as plain tuples ------------------------------------------------------

LOG_COLUMNS: tuple[str, ...] = (
    "position", "event_id", "stream_id", "version", "type", "schema_version", "municipality",
    "record_id", "occurred_at", "recorded_at", "correlation_id", "data",
)
"""The columns of a `LogRow`, in its order (a bulk reader selects them so, straight from the driver)."""

LogRow = tuple[Any, ...]
"""(position, event_id, stream_id, version, type, schema_version, municipality, record_id,
occurred_at, recorded_at, correlation_id, data): an `events` row as the driver returns it."""

_fromisoformat = datetime.fromisoformat


def log_row_to_envelope(row: LogRow) -> EventEnvelope:
    """A `LogRow` -> its envelope: the same as `row_to_envelope` of the same row (the payload is
    validated from its text just the same), without SQLAlchemy's row objects. Raises what
    `row_to_envelope` raises for an undecodable row."""
    (position, event_id, stream_id, version, type_, schema_version, municipality, record_id,
     occurred_at, recorded_at, correlation_id, data) = row
    return make_envelope(
        event_id,
        stream_id,
        version,
        municipality,
        record_id,
        _fromisoformat(occurred_at),
        _fromisoformat(recorded_at),
        correlation_id,
        json_decoder(type_, schema_version)(data),
        position,
    )
