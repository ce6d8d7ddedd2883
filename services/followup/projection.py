"""The follow-up projection: keeps every child's events and re-derives the child's rows from them.

`apply` stores the new events in `fu_events`, then, for every child (stream) touched by the batch,
loads ALL of that child's events, runs the pure `project_child` and replaces the child's rows in
`fu_cases`, `fu_deadlines` and `fu_assignments`. The rows are therefore a function of the set of
events, whatever order or batching they arrived in, and the same after a replay.

Deferred mode (`FollowupProjection(settings, deferred=True)`, for a replay): `apply` only stores the
events and marks their children in `fu_dirty`; `flush` then derives every marked child once, instead
of once per batch the child appears in. Marked children are also derived by the next ordinary
`apply`, so an interrupted replay cannot leave stale rows behind for good.

Rows are written as positional tuples straight to the driver (`services.followup.bulkwrite`). An
event is stored with the event log's columns (its instants and payload as the log's texts: read
back with the log's own `log_row_to_envelope`), from its envelope (`_event_row`) or, in a bulk
rebuild that is handed the log rows, straight from them (`event_rows`): a replay
writes every event and every derived row once, so these are its hot paths. A bulk rebuild (deferred
mode) also drops the secondary indexes no rebuild can fill in order (`REBUILD_INDEXES`) and `flush`
builds them once at the end (`reset`, `restore_indexes`).

Municipality streams (`municipality-{m}`, shared.events.catalogue): a `CadenceProfileChanged` is
not a child's event. `apply` records it in `fu_profiles` (once per event id: a second delivery, or
the worker meeting an event that `PUT /profiles` applied already, changes nothing) and re-derives
every child of the municipality with an event at or after its `occurred_at` (`streams_since`: the
profile is looked up at the moments of a child's events, so other children cannot change). That
gives the same rows whether the change arrives before or after the children's events. It is never
stored in `fu_events` (whose every stream is a child). A bulk rebuild gets them first, through
`apply` (shared.messaging.runner), so the children are derived with every profile known.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, bindparam, delete, insert, select
from sqlalchemy.schema import CreateIndex, DropIndex
from sqlalchemy.sql.elements import BindParameter

from services.followup.bulkwrite import InstantEncoder, insert_many, instant_encoder, sqlite_instant
from services.followup.config import Settings
from services.followup.tables import (
    DERIVED_TABLES,
    REBUILD_INDEXES,
    fu_assignments,
    fu_cases,
    fu_deadlines,
    fu_dirty,
    fu_events,
    fu_profiles,
    metadata,
)
from shared.casework.cadence import (
    CadenceProfile,
    ProfileChange,
    ProfileLookup,
    ProfileTimeline,
    profile_change_of,
)
from shared.casework.calendar import as_utc
from shared.casework.child import project_child
from shared.casework.deadlines import DEADLINE_LABELS_DA
from shared.casework.isotext import isoformat, sqlite_utc_text_of
from shared.casework.model import ChildPicture
from shared.casework.views import ISO
from shared.db import insert_or_skip
from shared.events.catalogue import CadenceProfileChanged, EventPayload
from shared.events.envelope import EventEnvelope, is_child_stream
from shared.eventstore import store as _store
from shared.eventstore.store import LogRow, log_row_to_envelope

CHUNK = 500


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# The statements of the live path (each batch of the worker, each GET /cases), built once: building
# a statement and its cache key costs more than SQLite takes to run these (~130 us against ~35).
# `ids`: an expanding list parameter (a chunk of at most CHUNK values).
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_KNOWN_EVENTS = select(fu_events.c.event_id).where(fu_events.c.event_id.in_(_IDS))
# a stored event as a `LogRow`: the log's columns in `LOG_COLUMNS` order (the instants' texts are
# `occurred_text` and `recorded_text` here, `occurred_at` being the instant to compare)
_TEXT_COLUMNS = {"occurred_at": "occurred_text", "recorded_at": "recorded_text"}
_EVENTS_OF = select(*(fu_events.c[_TEXT_COLUMNS.get(name, name)] for name in _store.LOG_COLUMNS)).where(
    fu_events.c.stream_id.in_(_IDS)
)
_DIRTY_OF = select(fu_dirty.c.stream_id).where(fu_dirty.c.stream_id.in_(_IDS))
_DIRTY_FIRST = select(fu_dirty.c.stream_id).order_by(fu_dirty.c.stream_id).limit(bindparam("limit"))
_CLEAR_DIRTY = delete(fu_dirty).where(fu_dirty.c.stream_id.in_(_IDS))
_CLEAR_DERIVED = tuple(
    delete(table).where(table.c.stream_id.in_(_IDS)) for table in (fu_cases, fu_deadlines, fu_assignments)
)
_PROFILE_ORDER = (fu_profiles.c.changed_at, fu_profiles.c.event_id, fu_profiles.c.id)
_PROFILES = select(fu_profiles).order_by(*_PROFILE_ORDER)
_PROFILES_OF = (
    select(fu_profiles).where(fu_profiles.c.municipality.in_(bindparam("municipalities", expanding=True)))
).order_by(*_PROFILE_ORDER)


# --------------------------------------------------------------------------- profiles


def load_profile_changes(
    conn: Connection, municipalities: Iterable[str] | None = None
) -> list[ProfileChange]:
    # changes at the same instant: by event id (time-ordered ids), not by arrival
    if municipalities is None:
        rows = conn.execute(_PROFILES)
    else:
        rows = conn.execute(_PROFILES_OF, {"municipalities": sorted(set(municipalities))})
    return [
        ProfileChange(
            municipality=row.municipality,
            changed_at=as_utc(row.changed_at),
            changed_by=row.changed_by,
            profile=CadenceProfile.from_json(json.loads(row.profile)),
            caseload_target=row.caseload_target,
        )
        for row in rows
    ]


def record_profile_change(conn: Connection, change: ProfileChange, event_id: str | None = None) -> bool:
    """Add a change to `fu_profiles`; with the id of the event it comes from, only once per event.
    Returns whether a row was added."""
    row = {
        "municipality": change.municipality,
        "changed_at": as_utc(change.changed_at),
        "changed_by": change.changed_by,
        "profile": json.dumps(change.profile.to_json(), sort_keys=True),
        "caseload_target": change.caseload_target,
        "event_id": event_id,
    }
    if event_id is None:
        conn.execute(insert(fu_profiles), row)
        return True
    stmt = insert_or_skip(conn, fu_profiles, "event_id").returning(fu_profiles.c.id)
    return conn.execute(stmt, row).first() is not None


def is_child_event(env: EventEnvelope) -> bool:
    """Whether the event is one of a child's (stream `child-{m}-{child}`), the only ones that are
    stored in `fu_events` and derived into cases and deadlines."""
    return is_child_stream(env.stream_id)


# --------------------------------------------------------------------------- the projection


class FollowupProjection:
    """The `Projection` (shared.messaging.projection) of the follow-up service."""

    name = "followup"
    metadata = metadata
    # every derived row belongs to one child: replay may run in processes (the runner applies the
    # profile changes, which are not a child's, before they start)
    parallel_rebuild = True

    def __init__(self, settings: Settings | None = None, *, deferred: bool = False) -> None:
        self.settings = settings or Settings()  # type: ignore[call-arg]  # read from the environment
        self.deferred = deferred
        self.decoded = DecodedEvents()

    # --- Projection protocol -------------------------------------------------------------

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        batch = {env.event_id: env for env in events if is_child_event(env)}
        known: set[str] = set()
        for chunk in _chunks(list(batch)):
            known.update(conn.execute(_KNOWN_EVENTS, {"ids": chunk}).scalars())
        instant = instant_encoder(conn.dialect)
        rows = [_event_row(env, instant) for eid, env in batch.items() if eid not in known]
        insert_many(conn, fu_events, EVENT_COLUMNS, rows)
        touched = {env.stream_id for env in batch.values()}
        # after the batch's child events are stored: the children a profile change re-derives
        # include those of this batch at or after its moment
        touched |= self._apply_profile_changes(conn, events)
        if self.deferred:
            self._mark_dirty(conn, touched)
            return
        backlog = self._backlog(conn, CHUNK)
        self.reproject(conn, touched | set(backlog))
        self._clear_dirty(conn, [*backlog, *touched] if backlog else [])

    def _apply_profile_changes(self, conn: Connection, events: Sequence[EventEnvelope]) -> set[str]:
        """Record the batch's profile changes not recorded before; the children they re-derive.
        (Other events of non-child streams mean nothing to follow-up: skipped.)"""
        affected: set[str] = set()
        for env in events:
            if isinstance(env.payload, CadenceProfileChanged) and record_profile_change(
                conn, profile_change_of(env), env.event_id
            ):
                affected.update(self.streams_since(conn, env.municipality, env.occurred_at))
        return affected

    uses_log_rows = True
    """`prepare_children` takes the log rows of the events too (their stored texts: `event_rows`)."""

    def prepare_children(
        self,
        engine: Engine,
        children: Sequence[Sequence[EventEnvelope]],
        log_rows: Sequence[Sequence[tuple[Any, ...]]] | None = None,
    ) -> PreparedChildren:
        """The rows a bulk rebuild writes for these children (each entry the complete set of one
        child's events), computed outside the writing transaction: the runner calls this before
        it opens it, so processes rebuilding other children meanwhile are not held up on SQLite's
        single writer lock. Reads only the cadence profiles, in a short transaction of its own.
        `log_rows`: each child's events as the log holds them (`shared.eventstore.store.LogRow`,
        in the order of its envelopes), when the runner has them."""
        if log_rows is not None and len(log_rows) != len(children):
            log_rows = None
        pairs = [
            (envs, rows)
            for envs, rows in zip(
                children, log_rows if log_rows is not None else [None] * len(children), strict=True
            )
            if envs and is_child_event(envs[0])
        ]
        others = [env for envs in children for env in envs if envs and not is_child_event(envs[0])]
        with engine.connect() as conn:
            lookup = self.timeline(conn, {envs[0].municipality for envs, _ in pairs}).lookup()
        instant = instant_encoder(engine.dialect)
        events = [row for envs, rows in pairs for row in event_rows(envs, rows, instant)]
        # in the order of the primary key (the event id): its index is then filled leaf by leaf
        events.sort(key=_first)
        by_stream = {envs[0].stream_id: list(envs) for envs, _ in pairs}
        derived = self._derived_rows(engine.dialect, lookup, sorted(by_stream), by_stream)
        # a team's deadlines near each other (a worklist reads them in this order)
        derived.deadlines.sort(key=_team_and_due)
        return PreparedChildren(events, derived, others)

    def rebuild_children(
        self, conn: Connection, children: Sequence[Sequence[EventEnvelope]] | PreparedChildren
    ) -> None:
        """Bulk replay (shared.messaging.runner.bulk_replay) into a reset projection: each entry is
        the complete set of one child's events, none of them stored yet (or what `prepare_children`
        made of them). Stores them and derives each child once, the same rows `apply` would give.
        The runner hands over child streams only (it applies the others first); an entry of another
        stream (a municipality's profile change) is applied after the children are written, as
        `apply` does it (re-deriving, or in deferred mode marking, the children it changes)."""
        if not isinstance(children, PreparedChildren):
            entries = [envs for envs in children if envs]
            others = [env for envs in entries if not is_child_event(envs[0]) for env in envs]
            entries = [envs for envs in entries if is_child_event(envs[0])]
            lookup = self.timeline(conn, {envs[0].municipality for envs in entries}).lookup()
            children = self._prepared(conn.dialect, lookup, entries)
            children.others = others
        insert_many(conn, fu_events, EVENT_COLUMNS, children.events)
        _write_rows(conn, children.derived)
        if children.others:
            self.apply(conn, children.others)

    def _prepared(
        self, dialect: Dialect, lookup: ProfileLookup, children: list[Sequence[EventEnvelope]]
    ) -> PreparedChildren:
        instant = instant_encoder(dialect)
        events = [_event_row(env, instant) for envs in children for env in envs]
        by_stream = {envs[0].stream_id: list(envs) for envs in children}
        return PreparedChildren(events, self._derived_rows(dialect, lookup, sorted(by_stream), by_stream))

    def flush(self, engine: Engine, chunk: int = CHUNK) -> int:
        """Finish a deferred replay: build the indexes a rebuild dropped, and derive every child
        marked in deferred mode, one transaction per `chunk` children. Returns how many children."""
        total = 0
        while True:
            with engine.begin() as conn:
                streams = self._backlog(conn, chunk)
                if not streams:
                    return total
                self.reproject(conn, streams)
                self._clear_dirty(conn, streams)
            total += len(streams)

    def _dirty(self, conn: Connection, limit: int) -> list[str]:
        return list(conn.execute(_DIRTY_FIRST, {"limit": limit}).scalars())

    def _backlog(self, conn: Connection, limit: int) -> list[str]:
        """Up to `limit` children marked for deriving; first, if a rebuild dropped the secondary
        indexes (its mark, which sorts before every stream id), they are built again."""
        streams = self._dirty(conn, limit)
        if streams and streams[0] == REBUILDING:
            restore_indexes(conn)
            conn.execute(delete(fu_dirty).where(fu_dirty.c.stream_id == REBUILDING))
            streams = self._dirty(conn, limit)
        return streams

    def _mark_dirty(self, conn: Connection, stream_ids: set[str]) -> None:
        streams = sorted(stream_ids)
        known: set[str] = set()
        for chunk in _chunks(streams):
            known.update(conn.execute(_DIRTY_OF, {"ids": chunk}).scalars())
        fresh = [{"stream_id": s} for s in streams if s not in known]
        if fresh:
            conn.execute(insert(fu_dirty), fresh)

    def _clear_dirty(self, conn: Connection, stream_ids: Sequence[str]) -> None:
        for chunk in _chunks(sorted(set(stream_ids))):
            conn.execute(_CLEAR_DIRTY, {"ids": chunk})

    def reset(self, conn: Connection) -> None:
        """Empty the derived tables, and the profile changes that came from events (the replay
        records them again; those made before profile changes were events are kept). In deferred
        mode (a replay, which ends with `flush`) also drop the derived tables' secondary indexes
        until the rows are in, and mark that in `fu_dirty`: `flush`, or the next ordinary `apply`
        if the replay stops early, builds them again."""
        for table in reversed(DERIVED_TABLES):
            conn.execute(delete(table))
        conn.execute(delete(fu_profiles).where(fu_profiles.c.event_id.is_not(None)))
        if self.deferred:
            for index in REBUILD_INDEXES:
                conn.execute(DropIndex(index, if_exists=True))
            conn.execute(insert(fu_dirty), {"stream_id": REBUILDING})

    # --- re-deriving children ------------------------------------------------------------

    def timeline(self, conn: Connection, municipalities: Iterable[str] | None = None) -> ProfileTimeline:
        return self.timeline_of(load_profile_changes(conn, municipalities))

    def timeline_of(self, changes: Iterable[ProfileChange]) -> ProfileTimeline:
        """These changes in force over time, the configured targets before a municipality's first."""
        return ProfileTimeline(changes, self.settings.caseload_target, self.settings.caseload_targets)

    def load_events(self, conn: Connection, stream_ids: Iterable[str]) -> dict[str, list[EventEnvelope]]:
        by_stream: defaultdict[str, list[EventEnvelope]] = defaultdict(list)
        for chunk in _chunks(sorted(set(stream_ids))):
            for row in conn.execute(_EVENTS_OF, {"ids": chunk}):
                by_stream[row[2]].append(self.decoded.get(tuple(row)))
        return by_stream

    def picture(self, conn: Connection, stream_id: str) -> ChildPicture | None:
        """The child's picture now, straight from its stored events (for the API)."""
        events = self.load_events(conn, [stream_id]).get(stream_id)
        if not events:
            return None
        timeline = self.timeline(conn, [events[0].municipality])
        return project_child(events, timeline.lookup(), self.settings)

    def reproject(self, conn: Connection, stream_ids: Iterable[str]) -> int:
        """Re-derive the rows of these children from all their stored events; returns how many."""
        streams = sorted(set(stream_ids))
        if not streams:
            return 0
        by_stream = self.load_events(conn, streams)
        self._derive(conn, streams, by_stream, replace=True)
        return len(streams)

    def _derive(
        self,
        conn: Connection,
        streams: list[str],
        by_stream: dict[str, list[EventEnvelope]],
        *,
        replace: bool,
    ) -> None:
        municipalities = {events[0].municipality for events in by_stream.values() if events}
        lookup = self.timeline(conn, municipalities).lookup()
        derived = self._derived_rows(conn.dialect, lookup, streams, by_stream)
        if replace:
            for chunk in _chunks(streams):
                for stmt in _CLEAR_DERIVED:
                    conn.execute(stmt, {"ids": chunk})
        _write_rows(conn, derived)

    def _derived_rows(
        self,
        dialect: Dialect,
        lookup: ProfileLookup,
        streams: list[str],
        by_stream: dict[str, list[EventEnvelope]],
    ) -> DerivedRows:
        """Pure: the case, deadline and assignment rows of these children."""
        instant = instant_encoder(dialect, memo=True)  # the instants of cases repeat a lot
        rows = DerivedRows([], [], [])
        for stream_id in streams:
            events = by_stream.get(stream_id)
            if not events:
                continue
            picture = project_child(events, lookup, self.settings)
            _rows_of(picture, instant, rows.cases, rows.deadlines, rows.assignments)
        return rows

    def reproject_since(self, conn: Connection, municipality: str, since: datetime) -> int:
        """Re-derive every child of `municipality` with an event at or after `since` (a profile
        change applies to deadlines started from its moment on)."""
        return self.reproject(conn, self.streams_since(conn, municipality, since))

    @staticmethod
    def streams_since(conn: Connection, municipality: str, since: datetime) -> list[str]:
        """The children of `municipality` with an event at or after `since`: those whose rows a
        profile change in force from `since` can change (profiles are looked up at event moments)."""
        stmt = (
            select(fu_events.c.stream_id)
            .where(fu_events.c.municipality == municipality, fu_events.c.occurred_at >= as_utc(since))
            .distinct()
        )
        return list(conn.execute(stmt).scalars())


_first = itemgetter(0)


class DecodedEvents:
    """The envelopes of `fu_events` rows decoded lately, by event id (at most `size`, the oldest
    forgotten first; safe to share between threads).

    A child's events are read again and again: by every batch that touches the child (`reproject`)
    and by every GET /cases of it (`picture`), and decoding a row (the instants, then the payload's
    validation) is most of that read. A row never changes once stored (one per event id, the
    envelope as the log holds it), and an envelope is immutable, so one decoded before is as good.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._by_id: dict[str, EventEnvelope] = {}
        self._lock = threading.Lock()
        self.decodes = 0  # rows decoded (for tests)

    def get(self, row: LogRow) -> EventEnvelope:
        """The envelope of this stored row (a `LogRow`: `_EVENTS_OF`)."""
        event_id = row[1]
        env = self._by_id.get(event_id)
        if env is None:
            env = log_row_to_envelope(row)
            with self._lock:
                self.decodes += 1
                self._by_id[event_id] = env
                while len(self._by_id) > self.size:
                    del self._by_id[next(iter(self._by_id))]
        return env


def _team_and_due(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (row[0], row[8] or "", row[11])  # municipality, team_id, due (DEADLINE_COLUMNS)


REBUILDING = "#rebuilding"
"""The mark in `fu_dirty` of a rebuild that dropped the secondary indexes (no stream id starts with
`#`, and it sorts before them all)."""


def restore_indexes(conn: Connection) -> None:
    """Build the secondary indexes of the derived tables that are missing (after a rebuild). On
    SQLite the sorts that build them may use a helper thread per CPU (`PRAGMA threads`, off by
    default): about a fifth less time for the indexes of a million-event rebuild on 2 CPUs."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA threads = {min(4, os.cpu_count() or 1)}")
    for index in REBUILD_INDEXES:
        conn.execute(CreateIndex(index, if_not_exists=True))


@dataclass(slots=True)
class DerivedRows:
    cases: list[tuple[Any, ...]]
    deadlines: list[tuple[Any, ...]]
    assignments: list[tuple[Any, ...]]


@dataclass(slots=True)
class PreparedChildren:
    """What `prepare_children` computed for a page of children: rows ready for the driver; `others`
    the events of the page that are not a child's (applied by `rebuild_children` after the rows)."""

    events: list[tuple[Any, ...]]
    derived: DerivedRows
    others: list[EventEnvelope] = field(default_factory=list)


def _write_rows(conn: Connection, rows: DerivedRows) -> None:
    insert_many(conn, fu_cases, CASE_COLUMNS, rows.cases)
    insert_many(conn, fu_deadlines, DEADLINE_COLUMNS, rows.deadlines)
    insert_many(conn, fu_assignments, ASSIGNMENT_COLUMNS, rows.assignments)


EVENT_COLUMNS = (
    "event_id", "stream_id", "municipality", "occurred_at", "position", "version", "type", "schema_version",
    "record_id", "occurred_text", "recorded_text", "correlation_id", "data",
)  # fmt: skip
CASE_COLUMNS = (
    "municipality",
    "case_id",
    "stream_id",
    "child_id",
    "team_id",
    "caseworker_id",
    "status",
    "phase",
    "opened_at",
    "closed_at",
    "caseworker_changes",
)
ASSIGNMENT_COLUMNS = (
    "municipality",
    "stream_id",
    "child_id",
    "case_id",
    "team_id",
    "caseworker_id",
    "valid_from",
    "valid_to",
    "change",
    "case_opened_at",
    "case_closed_at",
)
DEADLINE_COLUMNS = (
    "municipality",
    "stream_id",
    "child_id",
    "deadline",
    "case_id",
    "underretning_id",
    "measure_id",
    "seq",
    "team_id",
    "caseworker_id",
    "starts_at",
    "due",
    "met_at",
    "ended_at",
    "caseworker_since",
    "doc",
    "settled",
)

_string = json.encoder.encode_basestring  # a JSON string literal, as json.dumps(ensure_ascii=False)


def _payload_parts(cls: type[EventPayload]) -> tuple[str, int, Callable[[Any], bytes]]:
    """A payload class's type and schema version, and its JSON serializer (what `model_dump_json`
    calls: `EventEnvelope.data_json`, the text the log keeps)."""
    parts = _PAYLOADS[cls] = (cls.event_type, int(cls.schema_version), cls.__pydantic_serializer__.to_json)
    return parts


_PAYLOADS: dict[type, tuple[str, int, Callable[[Any], bytes]]] = {}


def _event_row(env: EventEnvelope, instant: InstantEncoder) -> tuple[Any, ...]:
    """The `fu_events` row of an envelope (EVENT_COLUMNS): the log's texts as the event store writes
    them (`isoformat` of the instants, the payload's JSON)."""
    payload = env.payload
    kind, schema, to_json = _PAYLOADS.get(type(payload)) or _payload_parts(type(payload))
    return (
        env.event_id, env.stream_id, env.municipality, instant(env.occurred_at), env.position, env.version,
        kind, schema, env.record_id, isoformat(env.occurred_at), isoformat(env.recorded_at),
        env.correlation_id, to_json(payload).decode(),
    )  # fmt: skip


def event_rows(
    envs: Sequence[EventEnvelope], log_rows: Sequence[tuple[Any, ...]] | None, instant: InstantEncoder
) -> list[tuple[Any, ...]]:
    """The `fu_events` rows of one child's events (in the order of EVENT_COLUMNS). With the events'
    log rows (`shared.eventstore.store.LogRow`, one per envelope, in the same order) the row takes
    the log's own texts, which are what `_event_row` writes: the log keeps each envelope's
    `isoformat` and `data_json` (`shared.eventstore.store`); a row whose payload is not of the
    current schema version (upcast when decoded), or whose instants are not in that form, gets
    `_event_row` of its envelope."""
    if log_rows is None or _LOG is None or len(log_rows) != len(envs):
        return [_event_row(env, instant) for env in envs]
    (p_pos, p_id, p_stream, p_version, p_type, p_schema, p_muni, p_record,
     p_occurred, p_recorded, p_corr, p_data) = _LOG  # fmt: skip
    from_text = instant is sqlite_instant
    out: list[tuple[Any, ...]] = []
    for env, row in zip(envs, log_rows, strict=True):
        payload = env.payload
        cls = type(payload)
        occurred, recorded = row[p_occurred], row[p_recorded]
        if (
            row[p_id] != env.event_id
            or row[p_stream] != env.stream_id
            or row[p_muni] != env.municipality
            or row[p_type] != cls.event_type
            or row[p_schema] != cls.schema_version
            or not (_canonical_instant(occurred) and _canonical_instant(recorded))
        ):
            out.append(_event_row(env, instant))
            continue
        out.append(
            (
                row[p_id], row[p_stream], row[p_muni],
                sqlite_utc_text_of(occurred) if from_text else instant(env.occurred_at),
                row[p_pos], row[p_version], row[p_type], row[p_schema], row[p_record], occurred, recorded,
                row[p_corr], row[p_data],
            )  # fmt: skip
        )
    return out


def _canonical_instant(text: str) -> bool:
    """Whether `text` has the form `datetime.isoformat` gives an aware value (the log's instants
    are written so: it parsed, so its digits are right): `YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM`, the
    fraction only when not zero, never `-00:00`."""
    n = len(text)
    return (
        (n == 25 or (n == 32 and text[19] == "." and text[20:26] != "000000"))
        and text[10] == "T"
        and text[-6] in "+-"
        and text[-3] == ":"
        and text[-6:] != "-00:00"
    )


def _log_positions(columns: Sequence[str] | None) -> tuple[int, ...] | None:
    """Where each field is in a log row of these columns (the runner's `LOG_COLUMNS`), in the order
    `event_rows` takes them; None without columns (a runner that hands no log rows)."""
    names = (
        "position", "event_id", "stream_id", "version", "type", "schema_version", "municipality",
        "record_id", "occurred_at", "recorded_at", "correlation_id", "data",
    )  # fmt: skip
    if columns is None or not set(names) <= set(columns):
        return None
    return tuple(list(columns).index(name) for name in names)


_LOG = _log_positions(getattr(_store, "LOG_COLUMNS", None))


class _Json(dict[str | None, str]):
    """JSON of a string or None (`null`), each distinct value encoded once (ids repeat a lot)."""

    def __init__(self) -> None:
        super().__init__({None: "null"})

    def __missing__(self, value: str) -> str:
        text = self[value] = _string(value)
        return text


_KINDS: dict[str, str] = {}


def _kind_json(deadline: str) -> str:
    """The `"deadline":..,"label":..` members of a deadline's document."""
    text = _KINDS.get(deadline)
    if text is None:
        label = DEADLINE_LABELS_DA.get(deadline, deadline)
        text = _KINDS[deadline] = f'"deadline":{_string(deadline)},"label":{_string(label)}'
    return text


def _rows_of(
    picture: ChildPicture,
    instant: InstantEncoder,
    case_rows: list[tuple[Any, ...]],
    deadline_rows: list[tuple[Any, ...]],
    assignment_rows: list[tuple[Any, ...]],
) -> None:
    """The picture's rows of `fu_cases`, `fu_deadlines` and `fu_assignments` (as tuples in the order
    of CASE_COLUMNS, DEADLINE_COLUMNS and ASSIGNMENT_COLUMNS).

    A deadline's `doc` is `deadline_doc` of its fields and its `settled` the moment-dependent
    members of `deadline_view` once every known fact has happened (both checked in tests/followup).
    A case row carries no document: GET /cases/{case_id} recomputes the case from the child's
    events (it answers for any `at`)."""
    muni, stream_id, child_id = picture.municipality, picture.stream_id, picture.child_id
    cases = picture.cases
    q = _Json()
    child_json = q[child_id]
    holders: dict[str | None, tuple[Any, ...]] = {}  # case id -> what its deadlines take from it
    for d in picture.deadlines:
        case_id = d.case_id
        holding = holders.get(case_id)
        if holding is None:
            holder = cases.get(case_id) if case_id is not None else None
            last = holder.assignments[-1] if holder is not None and holder.assignments else None
            caseworker_id = last.caseworker_id if last is not None else None
            since = instant(last.assigned_at) if last is not None else None
            holding = holders[case_id] = (caseworker_id, since, q[case_id], q[caseworker_id])
        caseworker_id, since, case_json, caseworker_json = holding
        starts_at, due, met_at, ended_at = d.starts_at, d.due, d.met_at, d.ended_at
        kind = d.deadline
        head = (
            f'{_KINDS.get(kind) or _kind_json(kind)},"case_id":{case_json},'
            f'"underretning_id":{q[d.underretning_id]},"measure_id":{q[d.measure_id]},'
            f'"child_id":{child_json},"seq":{int(d.seq)},"starts_at":"{ISO[starts_at]}","due":"{ISO[due]}"'
        )
        team_json = q[d.team_id]
        met_json = "null" if met_at is None else f'"{ISO[met_at]}"'
        ended_json = "null" if ended_at is None else f'"{ISO[ended_at]}"'
        # met_at, ended_at and the caseworker (the case's last) once all of them have happened
        settled = f',"met_at":{met_json},"ended_at":{ended_json},"caseworker_id":{caseworker_json}'
        deadline_rows.append(
            (
                muni,
                stream_id,
                child_id,
                kind,
                case_id,
                d.underretning_id,
                d.measure_id,
                d.seq,
                d.team_id,
                caseworker_id,
                instant(starts_at),
                instant(due),
                instant(met_at),
                instant(ended_at),
                since,
                f'{head},"team_id":{team_json}',
                settled,
            )
        )
    for case in cases.values():
        case_id, team_id = case.case_id, case.team_id
        opened_at, closed_at = instant(case.opened_at), instant(case.closed_at)
        case_rows.append(
            (
                muni,
                case_id,
                stream_id,
                child_id,
                team_id,
                case.caseworker_id,
                case.status,
                picture.final_phase(case_id),
                opened_at,
                closed_at,
                case.caseworker_changes,
            )
        )
        assignments = case.assignments
        for i, a in enumerate(assignments):
            following = assignments[i + 1].assigned_at if i + 1 < len(assignments) else None
            assignment_rows.append(
                (
                    muni,
                    stream_id,
                    child_id,
                    case_id,
                    team_id,
                    a.caseworker_id,
                    instant(a.assigned_at),
                    instant(following),
                    a.change,
                    opened_at,
                    closed_at,
                )
            )
