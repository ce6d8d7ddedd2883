"""What a chunk of records sees of the event log and intake's lookup tables (bulk import).

`ChunkView.load` reads, with a few IN-queries, everything the chunk's records can touch: the record
ids already taken, the cases, measures and underretninger they name, the other cases of each child
a `CaseOpened` names, the versions of every stream they may append to, and which children the vault
knows. The records are then decided one after another in memory; `accept` applies each accepted
record to the view exactly as `repository.apply` changes the tables, so every record sees the
effects of the ones before it as the database would show them (timestamps as stored: UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from services.intake.adapters import repository as repo
from services.intake.adapters.vault import Vault
from services.intake.domain.decide import Accept, CaseInfo, MeasureInfo, State, UnderretningInfo
from services.intake.domain.records import (
    CaseClosedRecord,
    CaseOpenedRecord,
    CaseworkerAssignedRecord,
    MeasureEndedRecord,
    MeasureStartedRecord,
    RecordBase,
    UnderretningReceivedRecord,
)
from shared.events.catalogue import ChildRef
from shared.events.codes import MeasureType
from shared.events.envelope import stream_id_for_child
from shared.eventstore.store import EventStore

Key = tuple[str, str]  # (municipality, id)


@dataclass(slots=True)
class Seen:
    """A record id that is taken: in the log (`position`), or by an earlier record of the chunk
    (`line`: its index in the chunk; its position is known once the chunk is written)."""

    content_hash: str
    position: int | None = None
    line: int | None = None


Refs = tuple[str | None, str | None, str | None]  # (case_id, measure_id, underretning_id): `repo.refs`


class ChunkView:
    def __init__(self) -> None:
        self.records: dict[Key, Seen] = {}
        self.cases: dict[Key, CaseInfo] = {}
        self.measures: dict[Key, MeasureInfo] = {}
        self.underretninger: dict[Key, UnderretningInfo] = {}
        self.child_cases: dict[Key, list[str]] = {}  # loaded only for the children of CaseOpened records
        self.versions: dict[str, int] = {}
        self.known_children: set[Key] = set()

    # --- reading once ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        conn: Connection,
        store: EventStore,
        items: Sequence[tuple[RecordBase, ChildRef | None, Refs]],
    ) -> ChunkView:
        """The view of the records: each with its child and its `repo.refs`."""
        view = cls()
        by_municipality: dict[str, list[tuple[RecordBase, ChildRef | None, Refs]]] = {}
        for item in items:
            by_municipality.setdefault(item[0].municipality, []).append(item)
        streams: set[str] = set()
        for m, group in by_municipality.items():
            record_ids: list[str] = []
            case_ids: set[str] = set()
            measure_ids: set[str] = set()
            underretning_ids: set[str] = set()
            children: set[str] = set()
            opening_children: set[str] = set()
            for record, child, (case_id, measure_id, underretning_id) in group:
                record_ids.append(record.record_id)
                if case_id is not None:
                    case_ids.add(case_id)
                if measure_id is not None:
                    measure_ids.add(measure_id)
                if underretning_id is not None:
                    underretning_ids.add(underretning_id)
                if child is not None:
                    children.add(child.child_id)
                    if isinstance(record, CaseOpenedRecord):
                        opening_children.add(child.child_id)
            if _json_lists(conn):
                _load_sqlite(conn, view, m, record_ids, case_ids, measure_ids, underretning_ids)
            else:
                for record_id, stored in store.find_records(conn, m, record_ids).items():
                    view.records[(m, record_id)] = Seen(stored.content_hash, stored.position)
                for case_id, case in repo.cases_by_id(conn, m, case_ids).items():
                    view.cases[(m, case_id)] = case
                for measure_id, measure in repo.measures_by_id(conn, m, measure_ids).items():
                    view.measures[(m, measure_id)] = measure
                for underretning_id, u in repo.underretninger_by_id(conn, m, underretning_ids).items():
                    view.underretninger[(m, underretning_id)] = u
            for child_id in opening_children:
                view.child_cases[(m, child_id)] = []
            opened = (
                [repo.case_info(r) for r in _rows(conn, _SQLITE_CHILD_CASES, m, opening_children)]
                if _json_lists(conn)
                else repo.cases_of_children(conn, m, opening_children)
            )
            for case in opened:
                view.cases[(m, case.case_id)] = case
                view.child_cases[(m, case.child_id)].append(case.case_id)
            owners = children | {c.child_id for (cm, _), c in view.cases.items() if cm == m}
            owners |= {u.child_id for (um, _), u in view.underretninger.items() if um == m}
            streams.update(stream_id_for_child(m, child_id) for child_id in owners)
            known = (
                {r[0] for r in _rows(conn, _SQLITE_KNOWN, m, children)}
                if _json_lists(conn)
                else Vault.known(conn, m, children)
            )
            view.known_children.update((m, child_id) for child_id in known)
        if _json_lists(conn):
            view.versions = dict.fromkeys(streams, 0)
            view.versions.update((r[0], int(r[1])) for r in _rows(conn, _SQLITE_VERSIONS, None, streams))
        else:
            view.versions = store.stream_versions(conn, streams)
        return view

    # --- what one record sees ----------------------------------------------------------------------

    def seen(self, municipality: str, record_id: str) -> Seen | None:
        return self.records.get((municipality, record_id))

    def situation(
        self,
        municipality: str,
        record: RecordBase,
        child: ChildRef | None,
        measure_types: Mapping[str, MeasureType],
        refs: Refs | None = None,
    ) -> tuple[str | None, State]:
        """What `write` reads for the record, on this view: the child whose stream the record's event
        goes to (as `repository.stream_child`) and the state to decide on (`repository.load_state`)."""
        m = municipality
        case_id, measure_id, underretning_id = refs if refs is not None else repo.refs(record)
        case = self.cases.get((m, case_id)) if case_id else None
        u = self.underretninger.get((m, underretning_id)) if underretning_id else None
        child_cases: tuple[CaseInfo, ...] = ()
        if child is not None and isinstance(record, CaseOpenedRecord):
            ids = self.child_cases[(m, child.child_id)]
            child_cases = tuple(
                sorted((self.cases[(m, c)] for c in ids), key=lambda c: (c.opened_at, c.case_id))
            )
        state = State(
            child,
            case,
            self.measures.get((m, measure_id)) if measure_id else None,
            u,
            child_cases,
            measure_types,
        )
        # the stream's child: `repository.stream_child_of(record, child, state)`
        stream_child: str | None
        if child is not None:
            stream_child = child.child_id
        elif underretning_id is not None and (u is not None or case_id is None):
            stream_child = u.child_id if u is not None else None
        elif case_id is not None:
            stream_child = case.child_id if case is not None else None
        else:
            stream_child = None
        return stream_child, state

    def version(self, stream_id: str) -> int | None:
        return self.versions.get(stream_id)

    def child_known(self, municipality: str, child_id: str) -> bool:
        return (municipality, child_id) in self.known_children

    # --- after a record was accepted -----------------------------------------------------------------

    def accept(
        self,
        municipality: str,
        record: RecordBase,
        decision: Accept,
        line: int,
        content_hash: str,
        stream_id: str,
        version: int,
        new_child: bool,
        at: datetime | None = None,
    ) -> None:
        """Apply an accepted record (its event at `version` of `stream_id`) to the view. `at`: the
        record's `occurred_at` in UTC, as stored and read back (computed here when not given)."""
        m = municipality
        self.records[(m, record.record_id)] = Seen(content_hash, None, line)
        self.versions[stream_id] = version
        if new_child:
            self.known_children.add((m, decision.child_id))
        match record:
            case UnderretningReceivedRecord(data=d):
                self.underretninger[(m, d.underretning_id)] = UnderretningInfo(
                    d.underretning_id, decision.child_id, d.team_id, at or _utc(record), d.case_id
                )
            case CaseOpenedRecord(data=d):
                self.cases[(m, d.case_id)] = CaseInfo(
                    d.case_id, decision.child_id, d.team_id, at or _utc(record)
                )
                self.child_cases.setdefault((m, decision.child_id), []).append(d.case_id)
                if d.underretning_id is not None:
                    u = self.underretninger.get((m, d.underretning_id))
                    if u is not None and u.case_id is None:
                        self.underretninger[(m, d.underretning_id)] = UnderretningInfo(
                            u.underretning_id, u.child_id, u.team_id, u.received_at, d.case_id
                        )
            case CaseworkerAssignedRecord(data=d):
                case = self.cases.get((m, d.case_id))
                when = at or _utc(record)
                if case is not None and (case.assigned_at is None or case.assigned_at <= when):
                    self.cases[(m, d.case_id)] = CaseInfo(
                        case.case_id,
                        case.child_id,
                        case.team_id,
                        case.opened_at,
                        case.closed_at,
                        d.caseworker_id,
                        when,
                    )
            case MeasureStartedRecord(data=d):
                self.measures[(m, d.measure_id)] = MeasureInfo(
                    d.measure_id, d.case_id, d.measure_type, at or _utc(record)
                )
            case MeasureEndedRecord(data=d):
                measure = self.measures.get((m, d.measure_id))
                if measure is not None:
                    self.measures[(m, d.measure_id)] = MeasureInfo(
                        measure.measure_id,
                        measure.case_id,
                        measure.measure_type,
                        measure.started_at,
                        at or _utc(record),
                    )
            case CaseClosedRecord(data=d):
                case = self.cases.get((m, d.case_id))
                if case is not None:
                    self.cases[(m, d.case_id)] = CaseInfo(
                        case.case_id,
                        case.child_id,
                        case.team_id,
                        case.opened_at,
                        at or _utc(record),
                        case.caseworker_id,
                        case.assigned_at,
                    )
            case _:
                pass


# --- SQLite: each lookup as one statement with the ids as one JSON list ------------------------------------
# (`x IN (SELECT value FROM json_each(?))` looks every id up in the key's index, as the store's and
# the repository's IN lists do, without a bind parameter per id for SQLAlchemy to expand and render.)

_SQLITE_RECORDS = (
    "SELECT record_id, position, content_hash FROM events"
    " WHERE municipality = ? AND record_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_VERSIONS = (
    "SELECT stream_id, max(version) FROM events"
    " WHERE stream_id IN (SELECT value FROM json_each(?)) GROUP BY stream_id"
)
_IN_LIST = "IN (SELECT value FROM json_each(?))"
_SQLITE_CASES = f"SELECT * FROM intake_cases WHERE municipality = ? AND case_id {_IN_LIST}"
_SQLITE_MEASURES = (
    "SELECT * FROM intake_measures WHERE municipality = ? AND measure_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_UNDERRETNINGER = (
    "SELECT * FROM intake_underretninger"
    " WHERE municipality = ? AND underretning_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_CHILD_CASES = f"SELECT * FROM intake_cases WHERE municipality = ? AND child_id {_IN_LIST}"
_SQLITE_KNOWN = f"SELECT child_id FROM intake_children WHERE municipality = ? AND child_id {_IN_LIST}"
_JSON_LISTS: dict[str, bool] = {}  # per SQLite library version: has json_each


def _json_lists(conn: Connection) -> bool:
    if conn.dialect.name != "sqlite":
        return False
    version = str(conn.dialect.dbapi.sqlite_version if conn.dialect.dbapi else "")
    usable = _JSON_LISTS.get(version)
    if usable is None:
        try:
            conn.exec_driver_sql("SELECT count(*) FROM json_each('[1]')").scalar_one()
            usable = True
        except Exception:  # a library built without JSON: the portable IN lists
            usable = False
        _JSON_LISTS[version] = usable
    return usable


def _rows(conn: Connection, sql: str, municipality: str | None, ids: Iterable[str]) -> list[Any]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    text = orjson.dumps(wanted).decode()
    params = (text,) if municipality is None else (municipality, text)
    return list(conn.exec_driver_sql(sql, params).all())


def _load_sqlite(
    conn: Connection,
    view: ChunkView,
    m: str,
    record_ids: list[str],
    case_ids: set[str],
    measure_ids: set[str],
    underretning_ids: set[str],
) -> None:
    for r in _rows(conn, _SQLITE_RECORDS, m, record_ids):
        view.records[(m, r[0])] = Seen(r[2], r[1])
    for r in _rows(conn, _SQLITE_CASES, m, case_ids):
        view.cases[(m, r.case_id)] = repo.case_info(r)
    for r in _rows(conn, _SQLITE_MEASURES, m, measure_ids):
        view.measures[(m, r.measure_id)] = repo.measure_info(r)
    for r in _rows(conn, _SQLITE_UNDERRETNINGER, m, underretning_ids):
        view.underretninger[(m, r.underretning_id)] = repo.underretning_info(r)


def _utc(record: RecordBase) -> datetime:
    return record.occurred_at.astimezone(UTC)  # as stored and read back
