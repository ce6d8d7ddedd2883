"""Read queries on the projection: the deadline worklist and the caseload, at any moment `t`.

The state filter runs in SQL with the same rules as `Deadline.state_at` (which then computes the
state of each returned row, so the two cannot disagree in the answer). The caseworker of a
deadline at `t` is the one the case had at `t` (from `fu_assignments`), so a past `at` shows the
worklists as they were then.

`worklist_json` is what the API serves: the same rows as `worklist`, rendered as JSON text from the
moment-independent part stored with each row (`fu_deadlines.doc`), the moment-dependent members as
they are once everything known has happened (`fu_deadlines.settled`) and the caseworker stored with
the time of the case's last assignment (`fu_deadlines.caseworker_since`; the history in
`fu_assignments` is only consulted for an earlier `t`). On SQLite the database puts each document
together (a statement compiled once per shape, run on the driver's cursor); elsewhere Python does
(`worklist_json_rendered`, also the reference the tests hold the SQLite path to, byte for byte).
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
    Integer,
    LargeBinary,
    String,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    null,
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


def caseworker_at(t: Any) -> Any:
    """Correlated subquery: the caseworker a deadline's case had at `t` (an instant, or a bound
    parameter holding one)."""
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


def states_condition(states: Iterable[str], t: Any, soon: Any = None) -> ColumnElement[bool]:
    """Deadlines in any of `states` at `t` (started by then): the same as OR-ing `_state_condition`
    over them, written so that the database can use the (municipality, team/caseworker, due)
    indexes: one range of `due` for the open states wanted, one test of `met_at` for the met ones.
    `t` and `soon` (`t + DUE_SOON_WINDOW`) may be bound parameters holding the instants."""
    wanted = set(states)
    unknown = wanted - set(STATES)
    if unknown:
        raise ValueError(f"unknown state {sorted(unknown)[0]!r}")
    if soon is None:
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


def holder_at(t: Any) -> Any:
    """The caseworker a deadline's case had at `t`: the stored one when `t` is not before its last
    assignment (`caseworker_since`), else looked up in `fu_assignments` (`caseworker_at`)."""
    return case(
        (and_(d.c.caseworker_since.is_not(None), d.c.caseworker_since <= t), d.c.caseworker_id),
        else_=caseworker_at(t),
    )


@dataclass(frozen=True, slots=True)
class WorklistJson:
    items: list[bytes]
    """Each deadline's document as UTF-8 JSON text (an object), soonest due first."""
    child_ids: list[str]
    """The child of each item, in the same order (for the audit log)."""

    def json_array(self) -> bytes:
        """The items as one JSON array (UTF-8)."""
        return self.in_document(b"", b"")

    def in_document(self, head: bytes, tail: bytes) -> bytes:
        """`head` + the JSON array of the items + `tail`, put together in one copy."""
        if not self.items:
            return head + b"[]" + tail
        parts = list(self.items)
        parts[0] = head + b"[" + parts[0]
        parts[-1] = parts[-1] + b"]" + tail
        return b",".join(parts)


_ORDER = (d.c.due, d.c.deadline, d.c.case_id, d.c.underretning_id, d.c.measure_id, d.c.seq, d.c.id)


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
    completed with what depends on `t`. On SQLite the database renders each document itself
    (`_worklist_sqlite`), elsewhere Python does (`worklist_json_rendered`); both give the same bytes."""
    if conn.dialect.name == "sqlite":
        found = _worklist_sqlite(
            conn,
            municipality,
            t,
            teams=teams,
            caseworker_id=caseworker_id,
            states=states,
            limit=limit,
            offset=offset,
        )
        if found is not None:
            return found
    return worklist_json_rendered(
        conn,
        municipality,
        t,
        teams=teams,
        caseworker_id=caseworker_id,
        states=states,
        limit=limit,
        offset=offset,
    )


def _conditions(
    municipality: str,
    t: datetime,
    wanted: Iterable[str],
    teams: Collection[str] | None,
    caseworker_id: str | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [d.c.municipality == municipality, states_condition(wanted, t)]
    if teams is not None:
        conditions.append(d.c.team_id.in_(sorted(teams)) if teams else false())
    if caseworker_id is not None:
        conditions.append(holder_at(t) == caseworker_id)
    return conditions


def worklist_json_rendered(
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
    """`worklist_json` rendered in Python from the rows (any database). The state comes from
    `state_of`; on SQLite the instants are compared and rendered from the stored text (its
    fixed-width UTC form orders as time does)."""
    t = as_utc(t)
    wanted = tuple(dict.fromkeys(states))
    sqlite = conn.dialect.name == "sqlite"
    instants = [type_coerce(c, String) for c in _INSTANT_COLUMNS] if sqlite else list(_INSTANT_COLUMNS)
    stmt = (
        select(d.c.id, d.c.doc, d.c.child_id, *instants, holder_at(t).label("holder"))
        .where(*_conditions(municipality, t, wanted, teams, caseworker_id))
        .order_by(*_ORDER)
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
    return WorklistJson([item.encode() for item in items], child_ids)


# --- the worklist rendered by SQLite ------------------------------------------------------------

_ISO_FUNCTION = "fu_copenhagen_iso"
"""A SQL function (registered on the SQLite connection) of one stored instant: `iso` of it."""


def _state_sql(t: Any, soon: Any) -> ColumnElement[Any]:
    """`state_of` in SQL (NULL: not listed at `t`)."""
    met = and_(
        d.c.met_at.is_not(None), d.c.met_at <= t, or_(d.c.ended_at.is_(None), d.c.met_at <= d.c.ended_at)
    )
    return case(
        (d.c.starts_at > t, null()),
        (met, case((d.c.met_at <= d.c.due, literal("met_on_time")), else_=literal("met_late"))),
        (and_(d.c.ended_at.is_not(None), d.c.ended_at <= t), null()),
        (d.c.due < t, literal("overdue")),
        (d.c.due <= soon, literal("due_soon")),
        else_=literal("upcoming"),
    )


def _shown_iso(column: Any, t: Any) -> ColumnElement[Any]:
    """JSON of the instant in `column` if it had happened by `t`, else `null`."""
    text = getattr(func, _ISO_FUNCTION)(type_coerce(column, String), type_=String)
    return case(
        (and_(column.is_not(None), column <= t), literal('"') + text + literal('"')), else_=literal("null")
    )


@dataclass(frozen=True, slots=True)
class _Statement:
    """A worklist query compiled for SQLite: its text, and the name of each of its positional
    parameters (those named in `_worklist_statement`, and the constants' own)."""

    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]


@lru_cache(maxsize=256)
def _worklist_statement(
    wanted: tuple[str, ...], teams: int | None, by_caseworker: bool, limit: bool, offset: bool
) -> _Statement:
    """The SQLite worklist query of one shape (the states wanted, how many teams or None for every
    team, whether for one caseworker, whether paged), built and compiled once. Its parameters:
    `now` and `soon` (the stored text of `t` and of `t + DUE_SOON_WINDOW`), `municipality`,
    `team_0`.., `caseworker`, `limit`, `offset`."""
    from sqlalchemy.dialects import sqlite

    t = bindparam("now", type_=String)
    soon = bindparam("soon", type_=String)
    state = _state_sql(t, soon)
    settled_by_t = and_(
        d.c.settled.is_not(None),
        or_(d.c.met_at.is_(None), d.c.met_at <= t),
        or_(d.c.ended_at.is_(None), d.c.ended_at <= t),
        or_(d.c.caseworker_since.is_(None), d.c.caseworker_since <= t),
    )
    at_t = (
        literal(',"met_at":')
        + _shown_iso(d.c.met_at, t)
        + literal(',"ended_at":')
        + _shown_iso(d.c.ended_at, t)
        + literal(',"caseworker_id":')
        + func.json_quote(type_coerce(holder_at(t), String), type_=String)
    )
    moment = case((settled_by_t, d.c.settled), else_=at_t)
    document = literal("{") + d.c.doc + moment + literal(',"state":"') + state + literal('"}')
    conditions: list[ColumnElement[bool]] = [
        d.c.municipality == bindparam("municipality", type_=String),
        states_condition(wanted, t, soon),
    ]
    if teams is not None:
        conditions.append(
            d.c.team_id.in_([bindparam(f"team_{i}", type_=String) for i in range(teams)])
            if teams
            else false()
        )
    if by_caseworker:
        conditions.append(holder_at(t) == bindparam("caseworker", type_=String))
    if set(wanted) != set(STATES):  # (every state: any listed row, which `states_condition` selects)
        conditions.append(state.in_([literal(s) for s in wanted]))
    stmt = select(cast(document, LargeBinary), d.c.child_id).where(*conditions).order_by(*_ORDER)
    if limit:
        stmt = stmt.limit(bindparam("limit", type_=Integer))
    if offset:
        stmt = stmt.offset(bindparam("offset", type_=Integer))
    compiled = stmt.compile(dialect=sqlite.dialect())
    if "POSTCOMPILE" in str(compiled):  # (every parameter is its own: nothing to expand at run time)
        raise RuntimeError("a worklist statement with an expanding parameter")
    names = tuple(compiled.positiontup or ())
    params = compiled.params
    return _Statement(str(compiled), names, {n: params[n] for n in names})


def _worklist_sqlite(
    conn: Connection,
    municipality: str,
    t: datetime,
    *,
    teams: Collection[str] | None,
    caseworker_id: str | None,
    states: Iterable[str],
    limit: int | None,
    offset: int,
) -> WorklistJson | None:
    """`worklist_json` with each document put together by SQLite from the stored `doc` and `settled`
    (no Python per row: the rows come back as the documents' UTF-8 bytes). The same rules as the
    Python renderer: the state is `state_of` written in SQL; `met_at`, `ended_at` and the caseworker
    are the stored `settled` members when all of them had happened by `t`, else put together as
    there (`met_at` / `ended_at` when they happened by `t`, rendered by `_iso_of_sqlite_text`,
    registered as a SQL function; the caseworker the case had at `t`, `holder_at`).
    The query of each shape is compiled once (`_worklist_statement`) and run on the driver's cursor.
    None when a selected row has no stored `doc` yet (derived before the column existed)."""
    t = as_utc(t)
    wanted = tuple(dict.fromkeys(states))
    team_list = sorted(teams) if teams is not None else None
    statement = _worklist_statement(
        wanted,
        None if team_list is None else len(team_list),
        caseworker_id is not None,
        limit is not None,
        bool(offset),
    )
    values = dict(statement.constants)
    values.update(
        now=sqlite_text(t),
        soon=sqlite_text(t + DUE_SOON_WINDOW),
        municipality=municipality,
        caseworker=caseworker_id,
        limit=limit,
        offset=offset,
    )
    for i, team in enumerate(team_list or ()):
        values[f"team_{i}"] = team
    driver = conn.connection.driver_connection
    driver.create_function(_ISO_FUNCTION, 1, _iso_of_sqlite_text, deterministic=True)  # type: ignore[union-attr]
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:  # in the connection's transaction; the rows as the driver gives them (bytes, str)
        cursor.execute(statement.sql, tuple(values[name] for name in statement.names))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    items: list[bytes] = [row[0] for row in rows]
    if None in items:
        return None
    return WorklistJson(items, [row[1] for row in rows])


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


_CASE = select(fu_cases).where(
    fu_cases.c.municipality == bindparam("municipality"), fu_cases.c.case_id == bindparam("case_id")
)  # built once (GET /cases/{case_id} runs it every time)


def find_case(conn: Connection, municipality: str, case_id: str) -> Any | None:
    """The case row; when a source system gave two children the same case id, the opened one."""
    rows = conn.execute(_CASE, {"municipality": municipality, "case_id": case_id}).all()
    if not rows:
        return None
    return sorted(rows, key=lambda r: (r.opened_at is None, r.status != "open", r.stream_id))[0]
