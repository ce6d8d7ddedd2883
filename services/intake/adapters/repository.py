"""Reads the state snapshot `decide` needs and writes the lookup tables after an accepted record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, insert, select, update

from services.intake.adapters.tables import cases, measures, underretninger
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
from shared.eventstore.store import KeyLookup, run_many


def ts(moment: datetime) -> str:
    """A timestamp as stored: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def case_info(row: Any) -> CaseInfo:
    opened = _dt(row.opened_at)
    assert opened is not None
    return CaseInfo(
        case_id=row.case_id,
        child_id=row.child_id,
        team_id=row.team_id,
        opened_at=opened,
        closed_at=_dt(row.closed_at),
        caseworker_id=row.caseworker_id,
        assigned_at=_dt(row.assigned_at),
    )


def refs(record: RecordBase) -> tuple[str | None, str | None, str | None]:
    """(case_id, measure_id, underretning_id) the record's data names. Read from the models'
    `__dict__`: `getattr` with a default is slow on a pydantic model lacking the field."""
    data = record.__dict__.get("data")
    if data is None:
        return None, None, None
    fields = data.__dict__
    return fields.get("case_id"), fields.get("measure_id"), fields.get("underretning_id")


# Statements built once (bind parameters), as they run several times for every record.
_M: BindParameter[str] = bindparam("m")
_CASE = select(cases).where(cases.c.municipality == _M, cases.c.case_id == bindparam("id"))
_CASE_CHILD = select(cases.c.child_id).where(cases.c.municipality == _M, cases.c.case_id == bindparam("id"))
_MEASURE = select(measures).where(measures.c.municipality == _M, measures.c.measure_id == bindparam("id"))
_UNDERRETNING = select(underretninger).where(
    underretninger.c.municipality == _M, underretninger.c.underretning_id == bindparam("id")
)
_UNDERRETNING_CHILD = select(underretninger.c.child_id).where(
    underretninger.c.municipality == _M, underretninger.c.underretning_id == bindparam("id")
)
_CHILD_CASES = (
    select(cases)
    .where(cases.c.municipality == _M, cases.c.child_id == bindparam("child"))
    .order_by(cases.c.opened_at, cases.c.case_id)
)


def find_case(conn: Connection, municipality: str, case_id: str) -> CaseInfo | None:
    row = conn.execute(_CASE, {"m": municipality, "id": case_id}).first()
    return case_info(row) if row else None


def find_measure(conn: Connection, municipality: str, measure_id: str) -> MeasureInfo | None:
    row = conn.execute(_MEASURE, {"m": municipality, "id": measure_id}).first()
    return measure_info(row) if row else None


def find_underretning(conn: Connection, municipality: str, underretning_id: str) -> UnderretningInfo | None:
    row = conn.execute(_UNDERRETNING, {"m": municipality, "id": underretning_id}).first()
    return underretning_info(row) if row else None


def cases_of_child(conn: Connection, municipality: str, child_id: str) -> tuple[CaseInfo, ...]:
    rows = conn.execute(_CHILD_CASES, {"m": municipality, "child": child_id}).all()
    return tuple(case_info(r) for r in rows)


def stream_child(
    conn: Connection, municipality: str, record: RecordBase, child: ChildRef | None
) -> str | None:
    """The child whose stream the record's event goes to, from immutable facts only (a case's,
    an underretning's child never changes); None when the reference is missing."""
    if child is not None:
        return child.child_id
    case_id, _, underretning_id = refs(record)
    if underretning_id is not None:
        found = conn.execute(_UNDERRETNING_CHILD, {"m": municipality, "id": underretning_id}).scalar()
        if found is not None or case_id is None:
            return found
    if case_id is not None:
        found = conn.execute(_CASE_CHILD, {"m": municipality, "id": case_id}).scalar()
        return found
    return None


def stream_child_of(record: RecordBase, child: ChildRef | None, state: State) -> str | None:
    """As `stream_child`, from the state read for the record (its case and underretning)."""
    if child is not None:
        return child.child_id
    case_id, _, underretning_id = refs(record)
    if underretning_id is not None:
        u = state.underretning
        if u is not None or case_id is None:
            return u.child_id if u is not None else None
    if case_id is not None:
        return state.case.child_id if state.case is not None else None
    return None


def load_state(
    conn: Connection,
    municipality: str,
    record: RecordBase,
    child: ChildRef | None,
    measure_types: Mapping[str, MeasureType],
) -> State:
    case_id, measure_id, underretning_id = refs(record)
    return State(
        child=child,
        case=find_case(conn, municipality, case_id) if case_id else None,
        measure=find_measure(conn, municipality, measure_id) if measure_id else None,
        underretning=find_underretning(conn, municipality, underretning_id) if underretning_id else None,
        child_cases=(
            cases_of_child(conn, municipality, child.child_id)
            if child is not None and isinstance(record, CaseOpenedRecord)
            else ()
        ),
        measure_types=measure_types,
    )


# --- the lookup tables as a whole chunk sees them (bulk import) -------------------------------------

_CASES = KeyLookup.of(list(cases.c), cases.c.municipality, cases.c.case_id)
_MEASURES = KeyLookup.of(list(measures.c), measures.c.municipality, measures.c.measure_id)
_UNDERRETNINGER = KeyLookup.of(
    list(underretninger.c), underretninger.c.municipality, underretninger.c.underretning_id
)
_CHILDREN_CASES = KeyLookup.of(list(cases.c), cases.c.municipality, cases.c.child_id)


def measure_info(row: Any) -> MeasureInfo:
    started = _dt(row.started_at)
    assert started is not None
    return MeasureInfo(
        measure_id=row.measure_id,
        case_id=row.case_id,
        measure_type=row.measure_type,
        started_at=started,
        ended_at=_dt(row.ended_at) if row.ended else None,
    )


def underretning_info(row: Any) -> UnderretningInfo:
    received = _dt(row.received_at)
    assert received is not None
    return UnderretningInfo(
        underretning_id=row.underretning_id,
        child_id=row.child_id,
        team_id=row.team_id,
        received_at=received,
        case_id=row.case_id,
    )


def cases_by_id(conn: Connection, municipality: str, case_ids: Iterable[str]) -> dict[str, CaseInfo]:
    return {r.case_id: case_info(r) for r in _CASES.rows(conn, municipality, case_ids)}


def measures_by_id(conn: Connection, municipality: str, measure_ids: Iterable[str]) -> dict[str, MeasureInfo]:
    return {r.measure_id: measure_info(r) for r in _MEASURES.rows(conn, municipality, measure_ids)}


def underretninger_by_id(
    conn: Connection, municipality: str, underretning_ids: Iterable[str]
) -> dict[str, UnderretningInfo]:
    rows = _UNDERRETNINGER.rows(conn, municipality, underretning_ids)
    return {r.underretning_id: underretning_info(r) for r in rows}


def cases_of_children(conn: Connection, municipality: str, child_ids: Iterable[str]) -> list[CaseInfo]:
    return [case_info(r) for r in _CHILDREN_CASES.rows(conn, municipality, child_ids)]


# --- writing -----------------------------------------------------------------------------------------

_INSERT_UNDERRETNING = insert(underretninger)
_INSERT_CASE = insert(cases)
_INSERT_MEASURE = insert(measures)
_LINK_UNDERRETNING = (
    update(underretninger)
    .where(
        underretninger.c.municipality == _M,
        underretninger.c.underretning_id == bindparam("u"),
        underretninger.c.case_id.is_(None),
    )
    .values(case_id=bindparam("c"))
)
# Only a newer assignment replaces the current one (ISO UTC strings order by time).
_ASSIGN = (
    update(cases)
    .where(
        cases.c.municipality == _M,
        cases.c.case_id == bindparam("c"),
        (cases.c.assigned_at.is_(None)) | (cases.c.assigned_at <= bindparam("at")),
    )
    .values(caseworker_id=bindparam("w"), assigned_at=bindparam("at"))
)
_END_MEASURE = (
    update(measures)
    .where(measures.c.municipality == _M, measures.c.measure_id == bindparam("x"))
    .values(ended=True, ended_at=bindparam("at"))
)
_CLOSE_CASE = (
    update(cases)
    .where(cases.c.municipality == _M, cases.c.case_id == bindparam("c"))
    .values(status="closed", closed_at=bindparam("at"))
)


@dataclass
class Changes:
    """The lookup-table writes of accepted records, collected in record order and then run with one
    (executemany) statement per kind: every row is inserted before it is updated, and updates of
    one kind keep their order (updates of different kinds touch different columns)."""

    underretning_rows: list[dict[str, Any]] = field(default_factory=list)
    case_rows: list[dict[str, Any]] = field(default_factory=list)
    measure_rows: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    measure_ends: list[dict[str, Any]] = field(default_factory=list)
    closings: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, municipality: str, record: RecordBase, decision: Accept, utc: datetime | None = None
    ) -> None:
        """Note the writes for an accepted record (`utc`: its `occurred_at` in UTC, when known)."""
        m = municipality
        match record:
            case UnderretningReceivedRecord(data=d):
                at = ts(utc or record.occurred_at)
                self.underretning_rows.append(
                    {
                        "municipality": m,
                        "underretning_id": d.underretning_id,
                        "child_id": decision.child_id,
                        "team_id": d.team_id,
                        "case_id": d.case_id,
                        "received_at": at,
                    }
                )
            case CaseOpenedRecord(data=d):
                at = ts(utc or record.occurred_at)
                self.case_rows.append(
                    {
                        "municipality": m,
                        "case_id": d.case_id,
                        "child_id": decision.child_id,
                        "team_id": d.team_id,
                        "status": "open",
                        "opened_at": at,
                        "closed_at": None,
                        "caseworker_id": None,
                        "assigned_at": None,
                        "opened_by_record": record.record_id,
                    }
                )
                if d.underretning_id is not None:
                    self.links.append({"m": m, "u": d.underretning_id, "c": d.case_id})
            case CaseworkerAssignedRecord(data=d):
                at = ts(utc or record.occurred_at)
                self.assignments.append({"m": m, "c": d.case_id, "w": d.caseworker_id, "at": at})
            case MeasureStartedRecord(data=d):
                at = ts(utc or record.occurred_at)
                self.measure_rows.append(
                    {
                        "municipality": m,
                        "measure_id": d.measure_id,
                        "case_id": d.case_id,
                        "measure_type": d.measure_type,
                        "started_at": at,
                        "ended": False,
                        "ended_at": None,
                    }
                )
            case MeasureEndedRecord(data=d):
                self.measure_ends.append({"m": m, "x": d.measure_id, "at": ts(utc or record.occurred_at)})
            case CaseClosedRecord(data=d):
                self.closings.append({"m": m, "c": d.case_id, "at": ts(utc or record.occurred_at)})
            case _:
                pass

    def write(self, conn: Connection) -> None:
        run_many(conn, _INSERT_UNDERRETNING, self.underretning_rows)
        run_many(conn, _INSERT_CASE, self.case_rows)
        run_many(conn, _INSERT_MEASURE, self.measure_rows)
        updates = (
            (_LINK_UNDERRETNING, self.links),
            (_ASSIGN, self.assignments),
            (_END_MEASURE, self.measure_ends),
            (_CLOSE_CASE, self.closings),
        )
        if conn.dialect.name != "postgresql":
            for statement, params in updates:
                run_many(conn, statement, params)
            return
        # PostgreSQL: one set-based UPDATE per kind (an executemany is a statement per row, and a
        # prepared statement may keep a plan made while the table was still small: a scan per row).
        # A set-based UPDATE applies at most one source row per target row, so the updates of one
        # row are first folded into the one that applying them in order would leave in effect.
        for statement, params in updates:
            if len(params) == 1:
                conn.execute(statement, params[0])
            elif params:
                sql, keys, fold = _PG_UPDATES[id(statement)]
                rows = fold(params)
                conn.exec_driver_sql(sql, {key: [row[key] for row in rows] for key in keys})


def _first_per(*keys: str) -> Any:
    def fold(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            out.setdefault(tuple(row[k] for k in keys), row)
        return list(out.values())

    return fold


def _last_per(*keys: str) -> Any:
    def fold(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list({tuple(row[k] for k in keys): row for row in rows}.values())

    return fold


def _newest_assignment(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assignments applied in order, each only if not older than the case's current one, leave the
    newest in effect (the later one of equal times); it alone, with the same condition, does too."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["m"], row["c"])
        if key not in out or row["at"] >= out[key]["at"]:
            out[key] = row
    return list(out.values())


_PG_UPDATES: dict[int, tuple[str, tuple[str, ...], Any]] = {
    id(_LINK_UNDERRETNING): (
        "UPDATE intake_underretninger AS t SET case_id = u.c"
        " FROM unnest(%(m)b::varchar[], %(u)b::varchar[], %(c)b::varchar[]) AS u(m, u, c)"
        " WHERE t.municipality = u.m AND t.underretning_id = u.u AND t.case_id IS NULL",
        ("m", "u", "c"),
        _first_per("m", "u"),  # only the first link sticks (`case_id IS NULL`)
    ),
    id(_ASSIGN): (
        "UPDATE intake_cases AS t SET caseworker_id = u.w, assigned_at = u.at"
        " FROM unnest(%(m)b::varchar[], %(c)b::varchar[], %(w)b::varchar[], %(at)b::varchar[])"
        " AS u(m, c, w, at) WHERE t.municipality = u.m AND t.case_id = u.c"
        " AND (t.assigned_at IS NULL OR t.assigned_at <= u.at)",
        ("m", "c", "w", "at"),
        _newest_assignment,
    ),
    id(_END_MEASURE): (
        "UPDATE intake_measures AS t SET ended = true, ended_at = u.at"
        " FROM unnest(%(m)b::varchar[], %(x)b::varchar[], %(at)b::varchar[]) AS u(m, x, at)"
        " WHERE t.municipality = u.m AND t.measure_id = u.x",
        ("m", "x", "at"),
        _last_per("m", "x"),
    ),
    id(_CLOSE_CASE): (
        "UPDATE intake_cases AS t SET status = 'closed', closed_at = u.at"
        " FROM unnest(%(m)b::varchar[], %(c)b::varchar[], %(at)b::varchar[]) AS u(m, c, at)"
        " WHERE t.municipality = u.m AND t.case_id = u.c",
        ("m", "c", "at"),
        _last_per("m", "c"),
    ),
}


def apply(conn: Connection, municipality: str, record: RecordBase, decision: Accept) -> None:
    """Update the lookup tables for an accepted record (same transaction as its event)."""
    changes = Changes()
    changes.add(municipality, record, decision)
    changes.write(conn)


def child_scopes(conn: Connection, municipality: str, child_id: str) -> list[tuple[str, str | None]]:
    """(team_id, caseworker_id) of every case and underretning of the child: who may see them."""
    out: list[tuple[str, str | None]] = [
        (r.team_id, r.caseworker_id)
        for r in conn.execute(
            select(cases.c.team_id, cases.c.caseworker_id).where(
                cases.c.municipality == municipality, cases.c.child_id == child_id
            )
        )
    ]
    out += [
        (r.team_id, None)
        for r in conn.execute(
            select(underretninger.c.team_id).where(
                underretninger.c.municipality == municipality, underretninger.c.child_id == child_id
            )
        )
    ]
    return out
