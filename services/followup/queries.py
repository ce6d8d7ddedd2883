"""Read queries on the projection: the deadline worklist and the caseload, at any moment `t`.

The state filter runs in SQL with the same rules as `Deadline.state_at` (which then computes the
state of each returned row, so the two cannot disagree in the answer). The caseworker of a
deadline at `t` is the one the case had at `t` (from `fu_assignments`), so a past `at` shows the
worklists as they were then.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, func, or_, select

from services.followup.tables import fu_assignments, fu_cases, fu_deadlines
from shared.casework.calendar import as_utc
from shared.casework.deadlines import DUE_SOON_WINDOW, STATES, Deadline

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
    conditions: list[ColumnElement[bool]] = [
        d.c.municipality == municipality,
        d.c.starts_at <= t,
        or_(*(_state_condition(s, t) for s in wanted)) if wanted else false(),
    ]
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
