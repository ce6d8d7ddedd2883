"""The ledelsesinfo projection: keeps the period buckets of every scope up to date, incrementally.

apply(): store the new events; for each child that gained events in the batch, take the set of its
stored events and the set with the new ones, compute the contributions of both
(domain/contributions.py, over the shared engine's `project_child`), and add (new - old) to the
buckets. Because a child's contributions depend only on the set of its events, and the buckets are
integer sums of the children's contributions, the end state is the same whatever the arrival order
or the batching; a late record (a DUBU backfill) simply changes the child's contributions in the
past periods it touches.

Children are derived with the cadence profile in force at each of their events: the municipalities'
stored `CadenceProfileChanged` events (services/ledelsesinfo/profiles.py), else the projection's own
`profile_lookup`. A new change re-derives every child of its municipality with an event at or after
it (subtract the old contributions, add the new, as for a late record); see `apply`.

rebuild_children() (bulk replay into a reset projection) adds a whole page of children into one
mapping per municipality and writes the sums: the same tables, row for row, as `apply`. Driven by
the runner (`start_rebuild` .. `finish_rebuild`), the sums of a municipality are held across pages
until the log (in stream order, so municipality by municipality) has passed it, and its packed rows
are then inserted once; the events are stored from the log's own texts (`encode_log_row`).

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
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
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
from services.ledelsesinfo.profiles import (
    StoredChange,
    change_of,
    epoch_us,
    insert_changes,
    load_changes,
    lookup_of,
)
from shared.casework.cadence import ProfileLookup, default_lookup
from shared.casework.child import project_child
from shared.casework.rules import DefaultRules, RuleSettings
from shared.db import executemany, param_mark
from shared.events.catalogue import CadenceProfileChanged, decode_payload_json
from shared.events.envelope import EventEnvelope, is_child_stream
from shared.eventstore.store import LogRow

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
_s = encode_basestring  # a str as JSON text, as `_json` writes it
_DOC_FORM = 2  # see encode_event; older rows hold form 1 (the list with the payload's text as its
# last item, a JSON string) or the dict of EventEnvelope.to_wire(): decode_event reads all three


def _no_default(o: object) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


# the encoder `_json` builds on every call, built once (CPython's C accelerator)
_ONCE = None if c_make_encoder is None else c_make_encoder(
    None, _no_default, encode_basestring, None, ":", ",", False, False, True)


def _json_list(value: list[Any]) -> str:
    """`_json(value)` for a list of plain values (what the packed rows hold)."""
    return _json(value) if _ONCE is None else "".join(_ONCE(value, 0))


def encode_event(e: EventEnvelope) -> str:
    """The stored `doc` of an event: a JSON list of the envelope's fields (stream and municipality
    are columns), a newline, and the payload's JSON text as it is (form 2: nothing to escape, and
    the payload is validated straight from its text on reading). JSON never holds a raw newline,
    so the first one ends the list."""
    position = "null" if e.position is None else int(e.position)
    return (f"[{_DOC_FORM},{_s(e.event_id)},{int(e.version)},{_s(e.record_id)},"
            f"{_s(e.occurred_at.isoformat())},{_s(e.recorded_at.isoformat())},{_s(e.correlation_id)},"
            f"{_s(e.type)},{int(e.schema_version)},{position}]\n{e.data_json()}")


def encode_log_row(row: LogRow, e: EventEnvelope) -> str:
    """`encode_event(e)` of the event the log row `row` holds, from the row's own texts (the store
    writes `occurred_at.isoformat()` and `data_json()`, which is what `encode_event` writes), so
    nothing is encoded again. A row of an older schema version (its data is upcast on reading) is
    encoded from the envelope."""
    (position, event_id, _stream, version, type_, schema_version, _municipality, record_id, occurred,
     recorded, correlation, data) = row
    if schema_version != e.schema_version:
        return encode_event(e)
    return (f"[{_DOC_FORM},{_s(event_id)},{version},{_s(record_id)},{_s(occurred)},{_s(recorded)},"
            f"{_s(correlation)},{_s(type_)},{schema_version},{position}]\n{data}")


def _log_event_rows(rows: Sequence[LogRow], envs: Sequence[EventEnvelope]) -> list[tuple[str, str, str, str]]:
    """`(e.event_id, e.stream_id, e.municipality, encode_log_row(row, e))` of each log row and its
    envelope (decoded from it, so the ids are the row's own), without a call per event."""
    out: list[tuple[str, str, str, str]] = []
    q = _s
    for row, e in zip(rows, envs, strict=True):
        (position, event_id, stream_id, version, type_, schema_version, municipality, record_id,
         occurred, recorded, correlation, data) = row
        if schema_version != e.payload.schema_version:
            doc = encode_event(e)
        else:
            doc = (f"[{_DOC_FORM},{q(event_id)},{version},{q(record_id)},{q(occurred)},"
                   f"{q(recorded)},{q(correlation)},{q(type_)},{schema_version},"
                   f"{position}]\n{data}")
        out.append((event_id, stream_id, municipality, doc))
    return out


def decode_event(stream_id: str, municipality: str, doc: str) -> EventEnvelope:
    """A stored `doc` (any form) -> the envelope."""
    if doc.startswith("{"):  # the wire dict (the first form)
        return EventEnvelope.from_wire(json.loads(doc))
    head, newline, data = doc.partition("\n")
    if newline:  # form 2: the list, then the payload's text
        _form, event_id, version, record_id, occurred, recorded, correlation, typ, schema, position = (
            json.loads(head)
        )
    else:  # form 1: the payload's text is the list's last item
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
    return param_mark(conn.dialect)


def _executemany(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    executemany(conn, sql, rows, WRITE_CHUNK)


@dataclass(slots=True)
class PreparedChildren:
    """What `LedelsesinfoProjection.prepare_children` computed for a page of children: the event
    and child rows, the contribution sums to write with the page (`deltas`, as packed rows in
    `docs`), and during a bulk rebuild what to hold after the page's commit (`held`: sums of
    the municipality that may go on in the next page) and which held sums the page writes
    (`flushed`)."""

    events: list[tuple[str, str, str, str]]
    child_rows: list[tuple[str, str, int]]  # stream, municipality, last_at
    deltas: Deltas
    docs: list[tuple[Group, str]]
    held: Deltas = field(default_factory=dict)
    flushed: list[str] = field(default_factory=list)
    final: bool = False  # the rebuild's last work: holding ends with its commit
    children: list[Sequence[EventEnvelope]] = field(default_factory=list)  # the page's children
    changes: list[StoredChange] = field(default_factory=list)  # the profile changes they were derived with
    others: list[EventEnvelope] = field(default_factory=list)  # events of non-child streams: to `apply`


def _event_row(e: EventEnvelope) -> tuple[str, str, str, str]:
    return (e.event_id, e.stream_id, e.municipality, encode_event(e))


def _insert_events(conn: Connection, events: Iterable[EventEnvelope]) -> None:
    _insert_event_rows(conn, [_event_row(e) for e in events])


def _insert_event_rows(conn: Connection, rows: list[tuple[str, str, str, str]]) -> None:
    if rows:
        m = _mark(conn)
        _executemany(conn, f"INSERT INTO {tables.events.name} (event_id, stream_id, municipality, doc) "
                           f"VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (event_id) DO NOTHING", rows)


def _insert_children(conn: Connection, rows: list[tuple[str, str, int]]) -> None:
    """Insert or update child rows (stream, municipality, last_at over ALL the child's events)."""
    if rows:
        m = _mark(conn)
        _executemany(conn, f"INSERT INTO {tables.children.name} (stream_id, municipality, last_at) "
                           f"VALUES ({m}, {m}, {m}) "
                           "ON CONFLICT (stream_id) DO UPDATE SET last_at = excluded.last_at", sorted(rows))


def _last_at(events: Iterable[EventEnvelope]) -> int:
    """The latest occurred_at of a child's events, UTC epoch microseconds."""
    return epoch_us(max([e.occurred_at for e in events]))


def _child_municipalities(children: Sequence[Sequence[EventEnvelope]]) -> set[str]:
    """The municipalities of the children (child streams only) among these event sets."""
    return {envs[0].municipality for envs in children if envs and is_child_stream(envs[0].stream_id)}


def _children_since(conn: Connection, municipality: str, since_us: int) -> list[str]:
    """The children of a municipality with an event at or after `since_us` (a row from before
    `last_at` was kept counts as such: re-deriving a child the change does not touch adds 0)."""
    m = _mark(conn)
    sql = (f"SELECT stream_id FROM {tables.children.name} WHERE municipality = {m} "
           f"AND (last_at IS NULL OR last_at >= {m})")
    return [r[0] for r in conn.exec_driver_sql(sql, (municipality, since_us))]


def _has_rows(conn: Connection, table: str, municipality: str) -> bool:
    sql = f"SELECT 1 FROM {table} WHERE municipality = {_mark(conn)} LIMIT 1"
    return conn.exec_driver_sql(sql, (municipality,)).first() is not None


class LedelsesinfoProjection:
    """Implements shared.messaging.projection.Projection."""

    parallel_rebuild = True  # child rows are per child; packed rows are added to under the writer lock
    uses_log_rows = True  # the bulk rebuild stores the log's own texts (`encode_log_row`)
    HOLD_LIMIT = 300_000  # contribution keys held for one municipality across pages (about 60 MB)

    name = "ledelsesinfo"
    metadata = tables.metadata

    def __init__(
        self, rules: RuleSettings | None = None, profile_lookup: ProfileLookup = default_lookup
    ) -> None:
        """`rules` and `profile_lookup` are those of the shared case-work engine (default: 7 days to
        the child conversation, Herning's cadence profile), as the follow-up worklists use them."""
        self.rules: RuleSettings = rules if rules is not None else DefaultRules()
        self.profile_lookup = profile_lookup
        self._held: Deltas | None = None  # during a bulk rebuild: sums held across pages

    # --- Projection protocol ---------------------------------------------------------------

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        """Store the new events; re-derive every child that gained events, and, for a new cadence
        profile change, every child of its municipality with an event at or after the change (the
        rule of follow-up's `reproject_since`): add (contributions now - contributions before) to
        the buckets. "Before" is the child's stored events under the stored changes, "now" all its
        events under the stored and the new changes, so the sums stay those of every child's events
        under every change, whatever the arrival order. A child whose events all came before the
        change is left alone: the engine asks for the profile only at its events' instants, so its
        contributions do not change."""
        if not events:
            return
        batch: dict[str, dict[str, EventEnvelope]] = defaultdict(dict)  # stream -> event id -> event
        offered: dict[str, StoredChange] = {}
        for e in events:
            if is_child_stream(e.stream_id):
                batch[e.stream_id].setdefault(e.event_id, e)
            elif isinstance(e.payload, CadenceProfileChanged) and e.event_id not in offered:
                offered[e.event_id] = change_of(e)
            # any other event outside a child stream adds no figures
        municipalities = {next(iter(es.values())).municipality for es in batch.values()}
        municipalities.update(c.change.municipality for c in offered.values())
        stored_changes = load_changes(conn, municipalities)
        known = {c.event_id for c in stored_changes}
        fresh = [c for c in offered.values() if c.event_id not in known]  # a redelivery changes nothing
        before_lookup = lookup_of(stored_changes, self.profile_lookup)
        after_lookup = lookup_of([*stored_changes, *fresh], self.profile_lookup) if fresh else before_lookup
        rederive: set[str] = set()
        if fresh:
            if conn.dialect.name == "postgresql":  # see rebuild_children: a page checks under this lock
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
            insert_changes(conn, fresh)
            since: dict[str, int] = {}
            for c in fresh:
                m = c.change.municipality
                since[m] = min(since.get(m, c.changed_us), c.changed_us)
            for m, us in sorted(since.items()):
                rederive.update(_children_since(conn, m, us))
        deltas: Deltas = {}
        for chunk in _chunks(sorted(batch.keys() | rederive)):
            stored = self._load_events(conn, chunk)
            new_events: list[EventEnvelope] = []
            child_rows: list[tuple[str, str, int]] = []
            for stream in chunk:
                have = stored.get(stream, {})
                added = [e for eid, e in batch[stream].items() if eid not in have] if stream in batch else []
                if not added and stream not in rederive:
                    continue  # redelivered events: the child's set, and so its figures, are unchanged
                old_events = list(have.values())
                every = [*old_events, *added]
                if not every:
                    continue
                municipality = every[0].municipality
                data = deltas.get(municipality)
                if data is None:
                    data = deltas[municipality] = defaultdict(int)
                self._shift(data, old_events, before_lookup, every, after_lookup)
                if added:
                    new_events.extend(added)
                    child_rows.append((stream, municipality, _last_at(every)))
            _insert_events(conn, new_events)
            _insert_children(conn, child_rows)
        _write_packed(conn, deltas)

    def prepare_children(
        self,
        engine: Engine,
        children: Sequence[Sequence[EventEnvelope]],
        log_rows: Sequence[Sequence[LogRow]] | None = None,
    ) -> PreparedChildren:
        """The pure part of `rebuild_children`, which the runner calls before it opens the page's
        writing transaction (so replay processes overlap on SQLite's single writer): the encoded
        events (from the log's own texts when the runner hands over `log_rows`, the children's
        rows beside their events), the child rows and the packed entries of the page's summed
        contributions, derived under the stored cadence profile changes of the page's
        municipalities (read once per page, in a short transaction of its own). Within a bulk
        rebuild (`start_rebuild`) the sums of the page's last
        municipality are held for the next page (its children go on there when the log is read in
        stream order), and those held before are written with this page once their municipality
        is done (or too big to hold): a municipality's packed rows are then written once, not
        read, added to and written again page after page. Events of other streams than children
        (`municipality-...`) are left to `apply`, which `rebuild_children` calls with them."""
        with engine.connect() as conn:
            changes = load_changes(conn, _child_municipalities(children))
        return self._prepare(children, log_rows, changes)

    def _prepare(
        self,
        children: Sequence[Sequence[EventEnvelope]],
        log_rows: Sequence[Sequence[LogRow]] | None,
        changes: list[StoredChange],
    ) -> PreparedChildren:
        deltas: Deltas = {}
        child_rows: list[tuple[str, str, int]] = []
        events: list[tuple[str, str, str, str]] = []
        kids: list[Sequence[EventEnvelope]] = []
        others: list[EventEnvelope] = []
        lookup, rules = lookup_of(changes, self.profile_lookup), self.rules
        for i, envs in enumerate(children):
            if not envs:
                continue
            first = envs[0]
            if not is_child_stream(first.stream_id):
                others.extend(envs)
                continue
            municipality = first.municipality
            data = deltas.get(municipality)
            if data is None:
                data = deltas[municipality] = defaultdict(int)
            picture = project_child(envs, lookup, rules)
            add_contributions(picture, data)
            kids.append(envs)
            # the picture's last instant is the latest occurred_at of the child's events (_last_at)
            child_rows.append((first.stream_id, municipality, epoch_us(picture.last_occurred_at)))
            if log_rows is not None:
                events.extend(_log_event_rows(log_rows[i], envs))
            else:
                events.extend([_event_row(e) for e in envs])
        if self._held is None:
            prepared = PreparedChildren(events, child_rows, deltas, _packed_docs(deltas))
        else:
            prepared = self._hold(events, child_rows, deltas, child_rows[-1][1] if child_rows else None)
        prepared.children, prepared.changes, prepared.others = kids, changes, others
        return prepared

    def _hold(self, events: list[tuple[str, str, str, str]], child_rows: list[tuple[str, str, int]],
              deltas: Deltas, going_on: str | None) -> PreparedChildren:
        """Split a page's sums (with those held from earlier pages) into what to write now and what
        to hold: only the municipality that may go on (`going_on`) is held, while it stays small.
        Nothing held is changed here (the page's transaction may still fail): the held sums to
        write are added into the page's own mappings, and `rebuild_committed` updates the held ones."""
        held = self._held if self._held is not None else {}
        write: Deltas = {}
        hold: Deltas = {}
        flushed: list[str] = []
        for municipality in sorted(held.keys() | deltas.keys()):
            before, page = held.get(municipality), deltas.get(municipality)
            size = (len(before) if before else 0) + (len(page) if page else 0)
            if municipality == going_on and page is not None and size <= self.HOLD_LIMIT:
                hold[municipality] = page
                continue
            if before is not None:
                flushed.append(municipality)
                if page is None:
                    page = before
                else:  # a copy of the held sums (they stay as they are), the page's added to it
                    summed = defaultdict(int, before)
                    for k, v in page.items():
                        summed[k] += v
                    page = summed
            if page is not None:
                write[municipality] = page
        return PreparedChildren(events, child_rows, write, _packed_docs(write), hold, flushed)

    def start_rebuild(self) -> None:
        """The runner begins a bulk rebuild (`bulk_replay`): hold sums across pages from now on."""
        self._held = {}

    def rebuild_committed(self, work: object) -> None:
        """The page `work` (a `PreparedChildren`) is committed: forget the held sums it wrote, hold
        the ones it left for the next page."""
        if self._held is None or not isinstance(work, PreparedChildren):
            return
        if work.final:
            self._held = None
            return
        for municipality in work.flushed:
            self._held.pop(municipality, None)
        for municipality, page in work.held.items():
            before = self._held.get(municipality)
            if before is None:
                self._held[municipality] = page
            else:
                for k, v in page.items():
                    before[k] += v

    def finish_rebuild(self) -> PreparedChildren:
        """After the last page: the held sums, as a page without children (for `rebuild_children`;
        its `rebuild_committed` ends the holding)."""
        prepared = self._hold([], [], {}, None)
        prepared.final = True
        return prepared

    def rebuild_children(
        self, conn: Connection, children: Sequence[Sequence[EventEnvelope]] | PreparedChildren
    ) -> None:
        """Bulk replay (shared.messaging.runner.bulk_replay) into a reset projection: each entry is
        the complete set of one child's events, none of them stored yet (no child row either), or
        what `prepare_children` made of them. Stores the events and the child rows, adds every
        child's contributions into one mapping per municipality and writes the sums: the same
        rows as `apply`. The packed rows are read, added to and written under the writer lock, so
        processes rebuilding different children at once (`parallel_rebuild`) lose no update.
        Outside `start_rebuild` .. `finish_rebuild` every page's sums are written with the page."""
        if isinstance(children, PreparedChildren):
            prepared = children
        else:
            prepared = self._prepare(children, None, load_changes(conn, _child_municipalities(children)))
        _insert_event_rows(conn, prepared.events)
        _insert_children(conn, prepared.child_rows)
        _write_packed(conn, prepared.deltas, prepared.docs)
        if prepared.children:
            self._correct_for_new_changes(conn, prepared)
        if prepared.others:
            self.apply(conn, prepared.others)

    def _correct_for_new_changes(self, conn: Connection, prepared: PreparedChildren) -> None:
        """A profile change stored (by `apply`) after the page was prepared, but before its children
        were stored, did not re-derive them: add (contributions under the changes now - under those
        the page was derived with). Checked under the writer lock, which `apply` takes before it
        looks for the children of a new change, so one of the two always sees the other. (The
        runner applies the changes before the children's pages: then there is nothing to do.)"""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
        current = load_changes(conn, {envs[0].municipality for envs in prepared.children})
        if [c.event_id for c in current] == [c.event_id for c in prepared.changes]:
            return
        before_lookup = lookup_of(prepared.changes, self.profile_lookup)
        after_lookup = lookup_of(current, self.profile_lookup)
        deltas: Deltas = {}
        for envs in prepared.children:
            data = deltas.get(envs[0].municipality)
            if data is None:
                data = deltas[envs[0].municipality] = defaultdict(int)
            self._shift(data, envs, before_lookup, envs, after_lookup)
        _write_packed(conn, deltas)

    def _shift(
        self,
        data: defaultdict[Bucket, int],
        old: Sequence[EventEnvelope],
        old_lookup: ProfileLookup,
        new: Sequence[EventEnvelope],
        new_lookup: ProfileLookup,
    ) -> None:
        """Add to `data` a child's contributions from `new` under `new_lookup` less those from
        `old` (nothing when empty) under `old_lookup`."""
        if old:
            before: defaultdict[Bucket, int] = defaultdict(int)
            add_contributions(project_child(old, old_lookup, self.rules), before)
            for k, v in before.items():
                data[k] -= v
        add_contributions(project_child(new, new_lookup, self.rules), data)

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


def _packed_docs(deltas: Deltas) -> list[tuple[Group, str]]:
    """Pure: the contribution changes as packed rows (key, doc: the sorted non-zero entries), in key
    order: what a municipality without rows yet gets inserted (encoded before the writing
    transaction)."""
    docs: list[tuple[Group, str]] = []
    append = docs.append
    if _ONCE is None:
        for g, entries in _packed_groups(deltas).items():
            entries.sort()
            append((g, _json(entries)))
    else:
        encode = _ONCE
        for g, entries in _packed_groups(deltas).items():
            entries.sort()
            append((g, "".join(encode(entries, 0))))
    docs.sort()
    return docs


def _write_packed(conn: Connection, deltas: Deltas, docs: list[tuple[Group, str]] | None = None) -> None:
    """Add the contribution changes to the packed rows: read the touched rows (none for a
    municipality without rows yet: the usual case in a rebuild), add, and write back the rows that
    changed; a row whose entries all came to 0 is deleted. Entries are sorted and non-zero, so equal
    sums give equal rows. `docs`: `_packed_docs(deltas)` when already computed."""
    if docs is None:
        docs = _packed_docs(deltas)
    if not docs:
        return
    m = _mark(conn)
    t = tables.packed.name
    cols = ", ".join(PACKED_KEY)
    if conn.dialect.name == "postgresql":  # serialise the writers: each row is read, added to, written
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
    known = {mu for mu in deltas if _has_rows(conn, t, mu)}
    inserts: list[tuple[Any, ...]] = [(*g, doc) for g, doc in docs if g[0] not in known]
    updates: list[tuple[Any, ...]] = []
    removed: list[tuple[Any, ...]] = []
    if known:
        adding = [(g, doc) for g, doc in docs if g[0] in known]
        existing: dict[Group, str] = {}
        for chunk in _chunks([g for g, _doc in adding]):
            values = ", ".join([f"({', '.join([m] * 6)})"] * len(chunk))
            rows = conn.exec_driver_sql(f"SELECT {cols}, doc FROM {t} WHERE ({cols}) IN (VALUES {values})",
                                        tuple(x for g in chunk for x in g))
            for r in rows:
                existing[cast(Group, tuple(r[:6]))] = r[6]
        for g, doc in adding:
            old = existing.get(g)
            if old is None:
                inserts.append((*g, doc))
                continue
            sums: defaultdict[tuple[str, str], int] = defaultdict(int)
            for bucket, code, v in json.loads(old):
                sums[(bucket, code)] += v
            for bucket, code, v in json.loads(doc):
                sums[(bucket, code)] += v
            merged = sorted((b, c, v) for (b, c), v in sums.items() if v)
            if merged:
                updates.append((_json_list(merged), *g))
            else:
                removed.append(g)
    key = " AND ".join(f"{c} = {m}" for c in PACKED_KEY)
    _executemany(conn, f"INSERT INTO {t} ({cols}, doc) VALUES ({', '.join([m] * 7)})", inserts)
    _executemany(conn, f"UPDATE {t} SET doc = {m} WHERE {key}", updates)
    _executemany(conn, f"DELETE FROM {t} WHERE {key}", removed)


def _pack(municipality: str, data: dict[Bucket, int], groups: dict[Group, list[Entry]]) -> None:
    """A municipality's contribution changes as entries of packed rows, added to `groups`: a point
    change at its period, the state changes of each (bucket, code) summed into their Fenwick nodes;
    no zero entries. (Grouped first by scope, then by period or node: the rows' keys are built once
    per row, not once per entry.)"""
    points: dict[tuple[str, str, str, int], list[Entry]] = {}  # (kind, team, cw, period) -> entries
    series: dict[tuple[str, str, str, str, str], dict[int, int]] = {}  # (kind, team, cw, bucket, key)
    point_get, series_get = points.get, series.get
    for (mode, kind, period, team, cw, bucket, key), d in data.items():
        if not d:
            continue
        if mode == POINT:
            pk = (kind, team, cw, period)
            entries = point_get(pk)
            if entries is None:
                points[pk] = [(bucket, key, d)]
            else:
                entries.append((bucket, key, d))
        else:
            sk = (kind, team, cw, bucket, key)
            changes = series_get(sk)
            if changes is None:
                series[sk] = {period: d}
            else:
                changes[period] = d
    for (kind, team, cw, period), entries in points.items():
        groups[(municipality, kind, team, cw, POINT, period)] = entries
    nodes: dict[tuple[str, str, str], dict[int, list[Entry]]] = {}  # (kind, team, cw) -> node -> entries
    for (kind, team, cw, bucket, key), changes in series.items():
        scope = (kind, team, cw)
        at = nodes.get(scope)
        if at is None:
            at = nodes[scope] = {}
        for node, v in node_sums(cast(PeriodKind, kind), changes).items():
            entries = at.get(node)
            if entries is None:
                at[node] = [(bucket, key, v)]
            else:
                entries.append((bucket, key, v))
    for (kind, team, cw), at in nodes.items():
        for node, entries in at.items():
            groups[(municipality, kind, team, cw, STATE, node)] = entries
