"""Read queries on the projection: the deadline worklist and the caseload, at any moment `t`.

The state filter runs in SQL with the same rules as `Deadline.state_at` (which then computes the
state of each returned row, so the two cannot disagree in the answer). The caseworker of a
deadline at `t` is the one the case had at `t` (from `fu_assignments`), so a past `at` shows the
worklists as they were then.

`worklist_json` is what the API serves: the same rows as `worklist`, rendered as JSON text from the
moment-independent part stored with each row (`fu_deadlines.doc`) and the caseworker stored with
the time of the case's last assignment (`fu_deadlines.caseworker_since`; the history in
`fu_assignments` is only consulted for an earlier `t`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    case,
    false,
    func,
    or_,
    select,
    type_coerce,
)

from services.followup.bulkwrite import sqlite_text
from services.followup.tables import fu_assignments, fu_cases, fu_deadlines
from shared.casework.calendar import TZ, as_utc
from shared.casework.deadlines import DEADLINE_LABELS_DA, DUE_SOON_WINDOW, STATES, Deadline, state_of
from shared.casework.views import iso

d = fu_deadlines
a = fu_assignments


def _state_condition(state: str, t: datetime) -> ColumnElement[bool]:
    met = and_(d.c.met_at.is_not(None), d.c.met_at <= t)
    not_met = or_(d.c.met_at.is_(None), d.c.met_at > t)
    not_ended = or_(d.c.ended_at.is_(None), d.c.ended_at > t)
    open_ = and_(not_met, not_ended)
    soon = t + DUE_SOON_WINDOW
    if state == "overdue":
        return and_(open_, d.c.due < t)
    if state == "due_soon":
        return and_(open_, d.c.due >= t, d.c.due <= soon)
    if state == "upcoming":
        return and_(open_, d.c.due > soon)
    if state == "met_on_time":
        return and_(met, d.c.met_at <= d.c.due)
    if state == "met_late":
        return and_(met, d.c.met_at > d.c.due)
    raise ValueError(f"unknown state {state!r}")


def caseworker_at(t: datetime) -> Any:
    """Correlated subquery: the caseworker a deadline's case had at `t`."""
    return (
        select(a.c.caseworker_id)
        .where(
            a.c.municipality == d.c.municipality,
            a.c.case_id == d.c.case_id,
            a.c.stream_id == d.c.stream_id,
            a.c.valid_from <= t,
            or_(a.c.valid_to.is_(None), a.c.valid_to > t),
        )
        .order_by(a.c.valid_from.desc())
        .limit(1)
        .scalar_subquery()
    )


def states_condition(states: Iterable[str], t: datetime) -> ColumnElement[bool]:
    """Deadlines in any of `states` at `t` (started by then): the same as OR-ing `_state_condition`
    over them, written so that the database can use the (municipality, team/caseworker, due)
    indexes: one range of `due` for the open states wanted, one test of `met_at` for the met ones."""
    wanted = set(states)
    unknown = wanted - set(STATES)
    if unknown:
        raise ValueError(f"unknown state {sorted(unknown)[0]!r}")
    soon = t + DUE_SOON_WINDOW
    parts: list[ColumnElement[bool]] = []
    open_wanted = wanted & {"overdue", "due_soon", "upcoming"}
    if open_wanted:
        not_met = or_(d.c.met_at.is_(None), d.c.met_at > t)
        not_ended = or_(d.c.ended_at.is_(None), d.c.ended_at > t)
        due: ColumnElement[bool] | None
        if open_wanted == {"overdue", "due_soon", "upcoming"}:
            due = None
        elif open_wanted == {"overdue", "due_soon"}:
            due = d.c.due <= soon
        elif open_wanted == {"due_soon", "upcoming"}:
            due = d.c.due >= t
        elif open_wanted == {"overdue", "upcoming"}:
            due = or_(d.c.due < t, d.c.due > soon)
        elif open_wanted == {"overdue"}:
            due = d.c.due < t
        elif open_wanted == {"due_soon"}:
            due = and_(d.c.due >= t, d.c.due <= soon)
        else:  # upcoming
            due = d.c.due > soon
        parts.append(and_(not_met, not_ended) if due is None else and_(not_met, not_ended, due))
    met_wanted = wanted & {"met_on_time", "met_late"}
    if met_wanted:
        met = and_(d.c.met_at.is_not(None), d.c.met_at <= t)
        if met_wanted == {"met_on_time"}:
            met = and_(met, d.c.met_at <= d.c.due)
        elif met_wanted == {"met_late"}:
            met = and_(met, d.c.met_at > d.c.due)
        parts.append(met)
    if not parts:
        return false()
    return and_(d.c.starts_at <= t, or_(*parts) if len(parts) > 1 else parts[0])


# --- the worklist as JSON text ----------------------------------------------------------------

_string = json.encoder.encode_basestring  # a JSON string literal, as json.dumps(ensure_ascii=False)


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else _string(value)


def deadline_doc(
    deadline: str,
    case_id: str | None,
    underretning_id: str | None,
    measure_id: str | None,
    child_id: str,
    seq: int,
    starts_at: str | None,
    due: str | None,
    team_id: str | None,
) -> str:
    """The members of a worklist document that do not depend on the moment, as JSON text without
    the braces (stored in `fu_deadlines.doc`): those of `shared.casework.views.deadline_view` but
    `met_at`, `ended_at`, `caseworker_id` and `state`. `starts_at` and `due` are already rendered
    (`iso`)."""
    return (
        f'"deadline":{_string(deadline)},"label":{_string(DEADLINE_LABELS_DA.get(deadline, deadline))},'
        f'"case_id":{_json_or_null(case_id)},"underretning_id":{_json_or_null(underretning_id)},'
        f'"measure_id":{_json_or_null(measure_id)},"child_id":{_string(child_id)},"seq":{int(seq)},'
        f'"starts_at":{_json_or_null(starts_at)},"due":{_json_or_null(due)},"team_id":{_json_or_null(team_id)}'
    )


@lru_cache(maxsize=65536)
def _iso_of_sqlite_text(text: str) -> str:
    """An instant as SQLite holds it (naive UTC text) in Copenhagen time with its offset."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).astimezone(TZ).isoformat()


def holder_at(t: datetime) -> Any:
    """The caseworker a deadline's case had at `t`: the stored one when `t` is not before its last
    assignment (`caseworker_since`), else looked up in `fu_assignments` (`caseworker_at`)."""
    return case(
        (and_(d.c.caseworker_since.is_not(None), d.c.caseworker_since <= t), d.c.caseworker_id),
        else_=caseworker_at(t),
    )


@dataclass(frozen=True, slots=True)
class WorklistJson:
    items: list[str]
    """Each deadline's document as JSON text (an object), soonest due first."""
    child_ids: list[str]
    """The child of each item, in the same order (for the audit log)."""


def worklist_json(
    conn: Connection,
    municipality: str,
    t: datetime,
    *,
    teams: Collection[str] | None = None,
    caseworker_id: str | None = None,
    states: Iterable[str] = STATES,
    limit: int | None = None,
    offset: int = 0,
) -> WorklistJson:
    """The worklist of `worklist` as the API's documents (the members of
    `shared.casework.views.deadline_view` with `state`), as JSON text: the stored `doc` of each row
    completed with what depends on `t`. The state comes from `state_of`; on SQLite the instants are
    compared and rendered from the stored text (its fixed-width UTC form orders as time does)."""
    t = as_utc(t)
    wanted = tuple(dict.fromkeys(states))
    sqlite = conn.dialect.name == "sqlite"
    instants = [type_coerce(c, String) for c in _INSTANT_COLUMNS] if sqlite else list(_INSTANT_COLUMNS)
    conditions: list[ColumnElement[bool]] = [d.c.municipality == municipality, states_condition(wanted, t)]
    if teams is not None:
        conditions.append(d.c.team_id.in_(sorted(teams)) if teams else false())
    if caseworker_id is not None:
        conditions.append(holder_at(t) == caseworker_id)
    stmt = (
        select(d.c.id, d.c.doc, d.c.child_id, *instants, holder_at(t).label("holder"))
        .where(*conditions)
        .order_by(d.c.due, d.c.deadline, d.c.case_id, d.c.underretning_id, d.c.measure_id, d.c.seq, d.c.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    soon_at = t + DUE_SOON_WINDOW
    now: Any = sqlite_text(t) if sqlite else t
    soon: Any = sqlite_text(soon_at) if sqlite else soon_at
    render: Callable[[Any], str | None] = _iso_of_sqlite_text if sqlite else iso
    wanted_set = frozenset(wanted)
    items: list[str] = []
    child_ids: list[str] = []
    missing: dict[int, int] = {}  # row id -> index in items, of rows without a stored doc
    rows: Iterable[Any] = conn.execute(stmt).all()
    for row_id, doc, child_id, starts, due, met, ended, holder in rows:
        state = state_of(now, soon, starts, due, met, ended)
        if state is None or state not in wanted_set:  # cannot happen: SQL and Python share the rules
            continue
        met_json = f'"{render(met)}"' if met is not None and met <= now else "null"
        ended_json = f'"{render(ended)}"' if ended is not None and ended <= now else "null"
        holder_json = "null" if holder is None else _string(holder)
        if doc is None:
            missing[row_id] = len(items)
            doc = ""  # filled in below
        items.append(
            f'{{{doc},"met_at":{met_json},"ended_at":{ended_json},'
            f'"caseworker_id":{holder_json},"state":"{state}"}}'
        )
        child_ids.append(child_id)
    if missing:
        _fill_missing_docs(conn, items, missing)
    return WorklistJson(items, child_ids)


def _fill_missing_docs(conn: Connection, items: list[str], missing: dict[int, int]) -> None:
    """Rows derived before `fu_deadlines.doc` existed: their doc from the columns."""
    ids = list(missing)
    for i in range(0, len(ids), 500):
        stmt = select(
            d.c.id,
            d.c.deadline,
            d.c.case_id,
            d.c.underretning_id,
            d.c.measure_id,
            d.c.child_id,
            d.c.seq,
            d.c.starts_at,
            d.c.due,
            d.c.team_id,
        ).where(d.c.id.in_(ids[i : i + 500]))
        for r in conn.execute(stmt):
            doc = deadline_doc(
                r.deadline,
                r.case_id,
                r.underretning_id,
                r.measure_id,
                r.child_id,
                r.seq,
                iso(as_utc(r.starts_at)),
                iso(as_utc(r.due)),
                r.team_id,
            )
            index = missing[r.id]
            items[index] = "{" + doc + items[index][1:]


_INSTANT_COLUMNS = (d.c.starts_at, d.c.due, d.c.met_at, d.c.ended_at)


@dataclass(frozen=True, slots=True)
class WorklistRow:
    deadline: Deadline
    state: str
    caseworker_id: str | None


def worklist(
    conn: Connection,
    municipality: str,
    t: datetime,
    *,
    teams: Collection[str] | None = None,
    caseworker_id: str | None = None,
    states: Iterable[str] = STATES,
    limit: int | None = None,
) -> list[WorklistRow]:
    """Deadlines listed at `t` (see `Deadline.state_at`), narrowed to `teams` (None = all) and to the
    caseworker holding the case at `t`, in the given states; soonest due first."""
    t = as_utc(t)
    wanted = list(dict.fromkeys(states))
    holder = caseworker_at(t).label("holder")
    conditions: list[ColumnElement[bool]] = [d.c.municipality == municipality, states_condition(wanted, t)]
    if teams is not None:
        conditions.append(d.c.team_id.in_(sorted(teams)) if teams else false())
    if caseworker_id is not None:
        conditions.append(caseworker_at(t) == caseworker_id)
    stmt = (
        select(d, holder)
        .where(*conditions)
        .order_by(d.c.due, d.c.deadline, d.c.case_id, d.c.underretning_id, d.c.measure_id, d.c.seq, d.c.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    result: list[WorklistRow] = []
    for row in conn.execute(stmt):
        deadline = Deadline(
            deadline=row.deadline,
            child_id=row.child_id,
            starts_at=as_utc(row.starts_at),
            due=as_utc(row.due),
            case_id=row.case_id,
            underretning_id=row.underretning_id,
            measure_id=row.measure_id,
            seq=row.seq,
            team_id=row.team_id,
            met_at=as_utc(row.met_at) if row.met_at is not None else None,
            ended_at=as_utc(row.ended_at) if row.ended_at is not None else None,
        )
        state = deadline.state_at(t)
        if state is None or state not in wanted:  # cannot happen: SQL and Python share the rules
            continue
        result.append(WorklistRow(deadline, state, row.holder))
    return result


def caseload(
    conn: Connection, municipality: str, t: datetime, *, teams: Collection[str] | None = None
) -> dict[str, int]:
    """Open cases per caseworker at `t`: cases open then (opened, not closed) assigned to them then."""
    t = as_utc(t)
    conditions: list[ColumnElement[bool]] = [
        a.c.municipality == municipality,
        a.c.valid_from <= t,
        or_(a.c.valid_to.is_(None), a.c.valid_to > t),
        a.c.case_opened_at.is_not(None),
        a.c.case_opened_at <= t,
        or_(a.c.case_closed_at.is_(None), a.c.case_closed_at > t),
    ]
    if teams is not None:
        conditions.append(a.c.team_id.in_(sorted(teams)) if teams else false())
    stmt = (
        select(a.c.caseworker_id, func.count(func.distinct(a.c.stream_id + "/" + a.c.case_id)))
        .where(*conditions)
        .group_by(a.c.caseworker_id)
        .order_by(a.c.caseworker_id)
    )
    return {cw: n for cw, n in conn.execute(stmt)}


def find_case(conn: Connection, municipality: str, case_id: str) -> Any | None:
    """The case row; when a source system gave two children the same case id, the opened one."""
    rows = conn.execute(
        select(fu_cases).where(fu_cases.c.municipality == municipality, fu_cases.c.case_id == case_id)
    ).all()
    if not rows:
        return None
    return sorted(rows, key=lambda r: (r.opened_at is None, r.status != "open", r.stream_id))[0]
