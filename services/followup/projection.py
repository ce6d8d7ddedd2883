"""The follow-up projection: keeps every child's events and re-derives the child's rows from them.

`apply` stores the new events in `fu_events`, then, for every child (stream) touched by the batch,
loads ALL of that child's events, runs the pure `project_child` and replaces the child's rows in
`fu_cases`, `fu_deadlines` and `fu_assignments`. The rows are therefore a function of the set of
events, whatever order or batching they arrived in, and the same after a replay.

Deferred mode (`FollowupProjection(settings, deferred=True)`, for a replay): `apply` only stores the
events and marks their children in `fu_dirty`; `flush` then derives every marked child once, instead
of once per batch the child appears in. Marked children are also derived by the next ordinary
`apply`, so an interrupted replay cannot leave stale rows behind for good.

Rows are written as positional tuples straight to the driver (`services.followup.bulkwrite`), and
an event's stored body is put together from its fields and its payload's JSON (`event_body`): a
replay writes every event and every derived row once, so these are its hot paths.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, delete, insert, select

from services.followup.bulkwrite import InstantEncoder, insert_many, instant_encoder
from services.followup.config import Settings
from services.followup.queries import deadline_doc
from services.followup.tables import (
    DERIVED_TABLES,
    fu_assignments,
    fu_cases,
    fu_deadlines,
    fu_dirty,
    fu_events,
    fu_profiles,
    metadata,
)
from shared.casework.cadence import CadenceProfile, ProfileChange, ProfileLookup, ProfileTimeline
from shared.casework.calendar import as_utc
from shared.casework.child import project_child
from shared.casework.model import ChildPicture
from shared.casework.views import case_view, iso
from shared.events.envelope import EventEnvelope

CHUNK = 500


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- profiles


def load_profile_changes(
    conn: Connection, municipalities: Iterable[str] | None = None
) -> list[ProfileChange]:
    stmt = select(fu_profiles).order_by(fu_profiles.c.changed_at, fu_profiles.c.id)
    if municipalities is not None:
        stmt = stmt.where(fu_profiles.c.municipality.in_(sorted(set(municipalities))))
    return [
        ProfileChange(
            municipality=row.municipality,
            changed_at=as_utc(row.changed_at),
            changed_by=row.changed_by,
            profile=CadenceProfile.from_json(json.loads(row.profile)),
            caseload_target=row.caseload_target,
        )
        for row in conn.execute(stmt)
    ]


def record_profile_change(conn: Connection, change: ProfileChange) -> None:
    conn.execute(
        insert(fu_profiles),
        {
            "municipality": change.municipality,
            "changed_at": as_utc(change.changed_at),
            "changed_by": change.changed_by,
            "profile": json.dumps(change.profile.to_json(), sort_keys=True),
            "caseload_target": change.caseload_target,
        },
    )


# --------------------------------------------------------------------------- the projection


class FollowupProjection:
    """The `Projection` (shared.messaging.projection) of the follow-up service."""

    name = "followup"
    metadata = metadata
    # every derived row belongs to one child (profiles are only read): replay may run in processes
    parallel_rebuild = True

    def __init__(self, settings: Settings | None = None, *, deferred: bool = False) -> None:
        self.settings = settings or Settings()  # type: ignore[call-arg]  # read from the environment
        self.deferred = deferred

    # --- Projection protocol -------------------------------------------------------------

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        if not events:
            return
        batch = {env.event_id: env for env in events}
        known: set[str] = set()
        for chunk in _chunks(list(batch)):
            known.update(
                conn.execute(select(fu_events.c.event_id).where(fu_events.c.event_id.in_(chunk))).scalars()
            )
        instant = instant_encoder(conn.dialect)
        rows = [_event_row(env, instant) for eid, env in batch.items() if eid not in known]
        insert_many(conn, fu_events, EVENT_COLUMNS, rows)
        touched = {env.stream_id for env in batch.values()}
        if self.deferred:
            self._mark_dirty(conn, touched)
            return
        backlog = self._dirty(conn, CHUNK)
        self.reproject(conn, touched | set(backlog))
        self._clear_dirty(conn, [*backlog, *touched] if backlog else [])

    def prepare_children(
        self, engine: Engine, children: Sequence[Sequence[EventEnvelope]]
    ) -> PreparedChildren:
        """The rows a bulk rebuild writes for these children (each entry the complete set of one
        child's events), computed outside the writing transaction: the runner calls this before
        it opens it, so processes rebuilding other children meanwhile are not held up on SQLite's
        single writer lock. Reads only the cadence profiles, in a short transaction of its own."""
        children = [envs for envs in children if envs]
        with engine.connect() as conn:
            lookup = self.timeline(conn, {envs[0].municipality for envs in children}).lookup()
        return self._prepared(engine.dialect, lookup, children)

    def rebuild_children(
        self, conn: Connection, children: Sequence[Sequence[EventEnvelope]] | PreparedChildren
    ) -> None:
        """Bulk replay (shared.messaging.runner.bulk_replay) into a reset projection: each entry is
        the complete set of one child's events, none of them stored yet (or what `prepare_children`
        made of them). Stores them and derives each child once, the same rows `apply` would give."""
        if not isinstance(children, PreparedChildren):
            children = [envs for envs in children if envs]
            lookup = self.timeline(conn, {envs[0].municipality for envs in children}).lookup()
            children = self._prepared(conn.dialect, lookup, children)
        insert_many(conn, fu_events, EVENT_COLUMNS, children.events)
        _write_rows(conn, children.derived)

    def _prepared(
        self, dialect: Dialect, lookup: ProfileLookup, children: list[Sequence[EventEnvelope]]
    ) -> PreparedChildren:
        instant = instant_encoder(dialect)
        events = [_event_row(env, instant) for envs in children for env in envs]
        by_stream = {envs[0].stream_id: list(envs) for envs in children}
        return PreparedChildren(events, self._derived_rows(dialect, lookup, sorted(by_stream), by_stream))

    def flush(self, engine: Engine, chunk: int = CHUNK) -> int:
        """Derive every child marked in deferred mode, one transaction per `chunk` children."""
        total = 0
        while True:
            with engine.begin() as conn:
                streams = self._dirty(conn, chunk)
                if not streams:
                    return total
                self.reproject(conn, streams)
                self._clear_dirty(conn, streams)
            total += len(streams)

    def _dirty(self, conn: Connection, limit: int) -> list[str]:
        stmt = select(fu_dirty.c.stream_id).order_by(fu_dirty.c.stream_id).limit(limit)
        return list(conn.execute(stmt).scalars())

    def _mark_dirty(self, conn: Connection, stream_ids: set[str]) -> None:
        streams = sorted(stream_ids)
        known: set[str] = set()
        for chunk in _chunks(streams):
            known.update(
                conn.execute(select(fu_dirty.c.stream_id).where(fu_dirty.c.stream_id.in_(chunk))).scalars()
            )
        fresh = [{"stream_id": s} for s in streams if s not in known]
        if fresh:
            conn.execute(insert(fu_dirty), fresh)

    def _clear_dirty(self, conn: Connection, stream_ids: Sequence[str]) -> None:
        for chunk in _chunks(sorted(set(stream_ids))):
            conn.execute(delete(fu_dirty).where(fu_dirty.c.stream_id.in_(chunk)))

    def reset(self, conn: Connection) -> None:
        for table in reversed(DERIVED_TABLES):
            conn.execute(delete(table))

    # --- re-deriving children ------------------------------------------------------------

    def timeline(self, conn: Connection, municipalities: Iterable[str] | None = None) -> ProfileTimeline:
        return ProfileTimeline(load_profile_changes(conn, municipalities), self.settings.caseload_target)

    def load_events(self, conn: Connection, stream_ids: Iterable[str]) -> dict[str, list[EventEnvelope]]:
        by_stream: defaultdict[str, list[EventEnvelope]] = defaultdict(list)
        for chunk in _chunks(sorted(set(stream_ids))):
            stmt = select(fu_events.c.stream_id, fu_events.c.body).where(fu_events.c.stream_id.in_(chunk))
            for stream_id, body in conn.execute(stmt):
                by_stream[stream_id].append(EventEnvelope.from_wire(json.loads(body)))
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
                for table in (fu_cases, fu_deadlines, fu_assignments):
                    conn.execute(delete(table).where(table.c.stream_id.in_(chunk)))
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
        stmt = (
            select(fu_events.c.stream_id)
            .where(fu_events.c.municipality == municipality, fu_events.c.occurred_at >= as_utc(since))
            .distinct()
        )
        return self.reproject(conn, list(conn.execute(stmt).scalars()))


@dataclass(slots=True)
class DerivedRows:
    cases: list[tuple[Any, ...]]
    deadlines: list[tuple[Any, ...]]
    assignments: list[tuple[Any, ...]]


@dataclass(slots=True)
class PreparedChildren:
    """What `prepare_children` computed for a page of children: rows ready for the driver."""

    events: list[tuple[Any, ...]]
    derived: DerivedRows


def _write_rows(conn: Connection, rows: DerivedRows) -> None:
    insert_many(conn, fu_cases, CASE_COLUMNS, rows.cases)
    insert_many(conn, fu_deadlines, DEADLINE_COLUMNS, rows.deadlines)
    insert_many(conn, fu_assignments, ASSIGNMENT_COLUMNS, rows.assignments)


EVENT_COLUMNS = ("event_id", "stream_id", "municipality", "occurred_at", "body")
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
    "detail",
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
)

_string = json.encoder.encode_basestring  # a JSON string literal, as json.dumps(ensure_ascii=False)


def event_body(env: EventEnvelope) -> str:
    """`EventEnvelope.to_wire()` as compact JSON (what `load_events` reads back with `from_wire`),
    put together from the known fields and the payload's own JSON instead of re-encoding it."""
    position = "null" if env.position is None else str(int(env.position))
    payload = env.payload
    return (
        f'{{"event_id":{_string(env.event_id)},"stream_id":{_string(env.stream_id)},'
        f'"version":{int(env.version)},"type":{_string(payload.event_type)},'
        f'"schema_version":{int(payload.schema_version)},"municipality":{_string(env.municipality)},'
        f'"record_id":{_string(env.record_id)},"occurred_at":"{env.occurred_at.isoformat()}",'
        f'"recorded_at":"{env.recorded_at.isoformat()}","correlation_id":{_string(env.correlation_id)},'
        f'"position":{position},"data":{env.data_json()}}}'
    )


def _event_row(env: EventEnvelope, instant: InstantEncoder) -> tuple[Any, ...]:
    return (env.event_id, env.stream_id, env.municipality, instant(as_utc(env.occurred_at)), event_body(env))


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _rows_of(
    picture: ChildPicture,
    instant: InstantEncoder,
    case_rows: list[tuple[Any, ...]],
    deadline_rows: list[tuple[Any, ...]],
    assignment_rows: list[tuple[Any, ...]],
) -> None:
    """The picture's rows of `fu_cases`, `fu_deadlines` and `fu_assignments` (as tuples in the order
    of CASE_COLUMNS, DEADLINE_COLUMNS and ASSIGNMENT_COLUMNS)."""
    muni, stream_id, child_id = picture.municipality, picture.stream_id, picture.child_id
    cases = picture.cases
    for case in cases.values():
        case_id, team_id = case.case_id, case.team_id
        opened_at, closed_at = instant(case.opened_at), instant(case.closed_at)
        detail = case_view(picture, case_id)
        case_rows.append(
            (
                muni,
                case_id,
                stream_id,
                child_id,
                team_id,
                case.caseworker_id,
                case.status,
                detail["phase"],  # picture.final_phase(case_id)
                opened_at,
                closed_at,
                case.caseworker_changes,
                _compact(detail),
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
    for d in picture.deadlines:
        holder = cases.get(d.case_id) if d.case_id is not None else None
        last = holder.assignments[-1] if holder is not None and holder.assignments else None
        deadline_rows.append(
            (
                muni,
                stream_id,
                child_id,
                d.deadline,
                d.case_id,
                d.underretning_id,
                d.measure_id,
                d.seq,
                d.team_id,
                last.caseworker_id if last is not None else None,
                instant(d.starts_at),
                instant(d.due),
                instant(d.met_at),
                instant(d.ended_at),
                instant(last.assigned_at) if last is not None else None,
                deadline_doc(
                    d.deadline,
                    d.case_id,
                    d.underretning_id,
                    d.measure_id,
                    d.child_id,
                    d.seq,
                    iso(d.starts_at),
                    iso(d.due),
                    d.team_id,
                ),
            )
        )
