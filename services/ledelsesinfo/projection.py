"""The ledelsesinfo projection: keeps the period buckets of every scope up to date, incrementally.

apply(): store the new events; for each child that gained events in the batch, take the set of its
stored events and the set with the new ones, compute the contributions of both
(domain/contributions.py, over the shared engine's `project_child`), and add (new - old) to the
buckets. Because a child's contributions depend only on the set of its events, and the buckets are
integer sums of the children's contributions, the end state is the same whatever the arrival order
or the batching; a late record (a DUBU backfill) simply changes the child's contributions in the
past periods it touches.

rebuild_children() (bulk replay into a reset projection) adds a whole page of children into one
mapping per municipality and writes the sums: the same tables, row for row, as `apply`.

The buckets are stored packed (tables.packed): one row per (municipality, kind, team, caseworker,
mode, position) holding its non-zero (bucket, code, value) entries, sorted; a row with no entries
is deleted. So the tables are a function of the sums alone (a replay and the live projection give
the same rows), a report reads one row per position it needs, and a rebuild writes about a sixth of
the rows one row per (bucket, code) would take. Adding changes reads the touched rows, adds, and
writes them back; writers are serialised (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction
advisory lock), so concurrent workers cannot lose an update.

All bulk writes go straight to the driver (`exec_driver_sql` with positional tuples, `?` on SQLite,
`%s` on psycopg 3): SQLAlchemy's per-row parameter processing would cost more than the figures.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, delete, select

from services.ledelsesinfo import tables
from services.ledelsesinfo.domain.contributions import (
    POINT,
    STATE,
    Bucket,
    add_contributions,
)
from services.ledelsesinfo.domain.fenwick import node_sums
from services.ledelsesinfo.domain.periods import PeriodKind
from shared.casework.cadence import ProfileLookup, default_lookup
from shared.casework.child import project_child
from shared.casework.rules import DefaultRules, RuleSettings
from shared.events.catalogue import decode_payload_json
from shared.events.envelope import EventEnvelope

T = TypeVar("T")
Group = tuple[str, str, str, str, str, int]  # a packed row: municipality, kind, team, caseworker, mode, pos
Entry = tuple[str, str, int]  # bucket, code, value
Deltas = dict[str, defaultdict[Bucket, int]]  # municipality -> contribution key -> change
CHUNK = 500
WRITE_CHUNK = 20_000
PACKED_KEY = ("municipality", "kind", "team_id", "caseworker_id", "mode", "pos")
WRITER_LOCK = 0x6C656465  # PostgreSQL advisory lock id of the ledelsesinfo writers ("lede")


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# --- the stored event form -----------------------------------------------------------------

_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DOC_FORM = 1  # a compact list; rows written before it hold the dict of EventEnvelope.to_wire()


def encode_event(e: EventEnvelope) -> str:
    """The stored `doc` of an event: a JSON list of the envelope's fields (stream and municipality
    are columns) with the payload's JSON text, cheaper to write and to read than the wire dict."""
    return _json([_DOC_FORM, e.event_id, e.version, e.record_id, e.occurred_at.isoformat(),
                  e.recorded_at.isoformat(), e.correlation_id, e.type, e.schema_version, e.position,
                  e.data_json()])


def decode_event(stream_id: str, municipality: str, doc: str) -> EventEnvelope:
    """A stored `doc` (either form) -> the envelope."""
    if doc.startswith("{"):
        return EventEnvelope.from_wire(json.loads(doc))
    _form, event_id, version, record_id, occurred, recorded, correlation, typ, schema, position, data = (
        json.loads(doc)
    )
    return EventEnvelope(
        event_id=event_id,
        stream_id=stream_id,
        version=int(version),
        municipality=municipality,
        record_id=record_id,
        occurred_at=datetime.fromisoformat(occurred),
        recorded_at=datetime.fromisoformat(recorded),
        correlation_id=correlation,
        payload=decode_payload_json(typ, int(schema), data),
        position=position,
    )


# --- driver-level statements ----------------------------------------------------------------


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def _executemany(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    for chunk in _chunks(rows, WRITE_CHUNK):
        conn.exec_driver_sql(sql, list(chunk))


@dataclass(slots=True)
class PreparedChildren:
    """What `LedelsesinfoProjection.prepare_children` computed for a page of children."""

    events: list[tuple[str, str, str, str]]
    child_rows: list[tuple[str, str]]
    deltas: Deltas
    groups: dict[Group, list[Entry]]


def _event_row(e: EventEnvelope) -> tuple[str, str, str, str]:
    return (e.event_id, e.stream_id, e.municipality, encode_event(e))


def _insert_events(conn: Connection, events: Iterable[EventEnvelope]) -> None:
    _insert_event_rows(conn, [_event_row(e) for e in events])


def _insert_event_rows(conn: Connection, rows: list[tuple[str, str, str, str]]) -> None:
    if rows:
        m = _mark(conn)
        _executemany(conn, f"INSERT INTO {tables.events.name} (event_id, stream_id, municipality, doc) "
                           f"VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (event_id) DO NOTHING", rows)


def _insert_children(conn: Connection, rows: list[tuple[str, str]]) -> None:
    if rows:
        m = _mark(conn)
        _executemany(conn, f"INSERT INTO {tables.children.name} (stream_id, municipality) VALUES ({m}, {m}) "
                           "ON CONFLICT (stream_id) DO NOTHING", sorted(rows))


def _has_rows(conn: Connection, table: str, municipality: str) -> bool:
    sql = f"SELECT 1 FROM {table} WHERE municipality = {_mark(conn)} LIMIT 1"
    return conn.exec_driver_sql(sql, (municipality,)).first() is not None


class LedelsesinfoProjection:
    """Implements shared.messaging.projection.Projection."""

    parallel_rebuild = True  # child rows are per child; packed rows are added to under the writer lock

    name = "ledelsesinfo"
    metadata = tables.metadata

    def __init__(
        self, rules: RuleSettings | None = None, profile_lookup: ProfileLookup = default_lookup
    ) -> None:
        """`rules` and `profile_lookup` are those of the shared case-work engine (default: 7 days to
        the child conversation, Herning's cadence profile), as the follow-up worklists use them."""
        self.rules: RuleSettings = rules if rules is not None else DefaultRules()
        self.profile_lookup = profile_lookup

    # --- Projection protocol ---------------------------------------------------------------

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        batch: dict[str, dict[str, EventEnvelope]] = defaultdict(dict)  # stream -> event id -> event
        for e in events:
            batch[e.stream_id].setdefault(e.event_id, e)
        deltas: Deltas = {}
        for chunk in _chunks(sorted(batch)):
            stored = self._load_events(conn, chunk)
            new_events: list[EventEnvelope] = []
            new_children: list[tuple[str, str]] = []
            for stream in chunk:
                old_events = list(stored.get(stream, {}).values())
                added = [e for eid, e in batch[stream].items() if eid not in stored.get(stream, {})]
                if not added:
                    continue  # redelivered events: the child's set, and so its figures, are unchanged
                new_events.extend(added)
                municipality = added[0].municipality
                data = deltas.get(municipality)
                if data is None:
                    data = deltas[municipality] = defaultdict(int)
                if old_events:
                    before: defaultdict[Bucket, int] = defaultdict(int)
                    add_contributions(project_child(old_events, self.profile_lookup, self.rules), before)
                    for k, v in before.items():
                        data[k] -= v
                else:
                    new_children.append((stream, municipality))
                add_contributions(project_child([*old_events, *added], self.profile_lookup, self.rules), data)
            _insert_events(conn, new_events)
            _insert_children(conn, new_children)
        _write_packed(conn, deltas)

    def prepare_children(
        self, engine: Engine, children: Sequence[Sequence[EventEnvelope]]
    ) -> PreparedChildren:
        """The pure part of `rebuild_children`, which the runner calls before it opens the page's
        writing transaction (so replay processes overlap on SQLite's single writer): the encoded
        events, the child rows and the packed entries of the page's summed contributions."""
        children = [envs for envs in children if envs]
        deltas: Deltas = {}
        child_rows: list[tuple[str, str]] = []
        for envs in children:
            municipality = envs[0].municipality
            data = deltas.get(municipality)
            if data is None:
                data = deltas[municipality] = defaultdict(int)
            add_contributions(project_child(envs, self.profile_lookup, self.rules), data)
            child_rows.append((envs[0].stream_id, municipality))
        events = [_event_row(e) for envs in children for e in envs]
        return PreparedChildren(events, child_rows, deltas, _packed_groups(deltas))

    def rebuild_children(
        self, conn: Connection, children: Sequence[Sequence[EventEnvelope]] | PreparedChildren
    ) -> None:
        """Bulk replay (shared.messaging.runner.bulk_replay) into a reset projection: each entry is
        the complete set of one child's events, none of them stored yet (no child row either), or
        what `prepare_children` made of them. Stores the events and the child rows, adds every
        child's contributions into one mapping per municipality and writes the sums once: the same
        rows as `apply`. The packed rows are read, added to and written under the writer lock, so
        processes rebuilding different children at once (`parallel_rebuild`) lose no update."""
        prepared = children if isinstance(children, PreparedChildren) else self.prepare_children(
            conn.engine, children)
        _insert_event_rows(conn, prepared.events)
        _insert_children(conn, prepared.child_rows)
        _write_packed(conn, prepared.deltas, prepared.groups)

    def reset(self, conn: Connection) -> None:
        for table in tables.DERIVED:
            conn.execute(delete(table))

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _load_events(conn: Connection, streams: Sequence[str]) -> dict[str, dict[str, EventEnvelope]]:
        """stream -> event id -> the stored event."""
        out: dict[str, dict[str, EventEnvelope]] = defaultdict(dict)
        t = tables.events
        rows = conn.execute(
            select(t.c.event_id, t.c.stream_id, t.c.municipality, t.c.doc).where(t.c.stream_id.in_(streams))
        )
        for event_id, stream_id, municipality, doc in rows:
            out[stream_id][event_id] = decode_event(stream_id, municipality, doc)
        return out


# --- the packed bucket rows ------------------------------------------------------------------


def _packed_groups(deltas: Deltas) -> dict[Group, list[Entry]]:
    """Pure: the contribution changes as entries of packed rows."""
    groups: dict[Group, list[Entry]] = {}
    for municipality, data in deltas.items():
        _pack(municipality, data, groups)
    return groups


def _write_packed(conn: Connection, deltas: Deltas, groups: dict[Group, list[Entry]] | None = None) -> None:
    """Add the contribution changes to the packed rows: read the touched rows (none for a
    municipality without rows yet: the usual case in a rebuild), add, and write back the rows that
    changed; a row whose entries all came to 0 is deleted. Entries are sorted and non-zero, so equal
    sums give equal rows. `groups`: `_packed_groups(deltas)` when already computed."""
    if groups is None:
        groups = _packed_groups(deltas)
    if not groups:
        return
    m = _mark(conn)
    t = tables.packed.name
    cols = ", ".join(PACKED_KEY)
    if conn.dialect.name == "postgresql":  # serialise the writers: each row is read, added to, written
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
    known = {mu for mu in deltas if _has_rows(conn, t, mu)}
    existing: dict[Group, str] = {}
    for chunk in _chunks(sorted(g for g in groups if g[0] in known)):
        values = ", ".join([f"({', '.join([m] * 6)})"] * len(chunk))
        rows = conn.exec_driver_sql(f"SELECT {cols}, doc FROM {t} WHERE ({cols}) IN (VALUES {values})",
                                    tuple(x for g in chunk for x in g))
        for r in rows:
            existing[cast(Group, tuple(r[:6]))] = r[6]
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    removed: list[tuple[Any, ...]] = []
    for g, entries in sorted(groups.items()):
        old = existing.get(g)
        if old is None:
            inserts.append((*g, _json(sorted(entries))))
            continue
        sums: defaultdict[tuple[str, str], int] = defaultdict(int)
        for bucket, code, v in json.loads(old):
            sums[(bucket, code)] += v
        for bucket, code, v in entries:
            sums[(bucket, code)] += v
        merged = sorted((b, c, v) for (b, c), v in sums.items() if v)
        if merged:
            updates.append((_json(merged), *g))
        else:
            removed.append(g)
    key = " AND ".join(f"{c} = {m}" for c in PACKED_KEY)
    _executemany(conn, f"INSERT INTO {t} ({cols}, doc) VALUES ({', '.join([m] * 7)})", inserts)
    _executemany(conn, f"UPDATE {t} SET doc = {m} WHERE {key}", updates)
    _executemany(conn, f"DELETE FROM {t} WHERE {key}", removed)


def _pack(municipality: str, data: dict[Bucket, int], groups: dict[Group, list[Entry]]) -> None:
    """A municipality's contribution changes as entries of packed rows, added to `groups`: a point
    change at its period, the state changes of each (bucket, code) summed into their Fenwick nodes;
    no zero entries."""
    series: dict[tuple[str, str, str, str, str], dict[int, int]] = {}
    get = groups.get
    for (mode, kind, period, team, cw, bucket, key), d in data.items():
        if not d:
            continue
        if mode == POINT:
            g = (municipality, kind, team, cw, POINT, period)
            entries = get(g)
            if entries is None:
                groups[g] = [(bucket, key, d)]
            else:
                entries.append((bucket, key, d))
        else:
            sk = (kind, team, cw, bucket, key)
            changes = series.get(sk)
            if changes is None:
                series[sk] = {period: d}
            else:
                changes[period] = d
    for (kind, team, cw, bucket, key), changes in series.items():
        for node, v in node_sums(cast(PeriodKind, kind), changes).items():
            g = (municipality, kind, team, cw, STATE, node)
            entries = get(g)
            if entries is None:
                groups[g] = [(bucket, key, v)]
            else:
                entries.append((bucket, key, v))
