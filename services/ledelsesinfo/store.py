"""Reading the buckets and the population table (the I/O side of the reports).

A report reads the point rows of its period (and, for the 12-month figures, of the 11 months before)
and at most log2(range) Fenwick nodes of the state: one packed row each, by primary key. Its cost
does not grow with the years of history in the store.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from services.ledelsesinfo import tables
from services.ledelsesinfo.domain.contributions import POINT, STATE
from services.ledelsesinfo.domain.fenwick import prefix_nodes
from services.ledelsesinfo.domain.periods import PeriodKind
from shared.db import param_mark


@dataclass(frozen=True, slots=True)
class Scope:
    team_id: str | None = None
    caseworker_id: str | None = None

    @property
    def level(self) -> str:
        if self.caseworker_id:
            return "caseworker"
        return "team" if self.team_id else "municipality"


def _scope_sql(conn: Connection, municipality: str, kind: PeriodKind, scope: Scope) -> tuple[str, list[Any]]:
    """The WHERE clause of a scope (municipality, kind, team, caseworker), as driver SQL: the reads
    are a few indexed lookups, cheaper than building SQLAlchemy statements per request."""
    m = _mark(conn)
    sql = f"municipality = {m} AND kind = {m} AND caseworker_id = {m}"
    params: list[Any] = [municipality, kind, scope.caseworker_id or ""]
    if scope.team_id or not scope.caseworker_id:  # a caseworker without a team: all their teams
        sql += f" AND team_id = {m}"
        params.append(scope.team_id or "")
    return sql, params


def _mark(conn: Connection) -> str:
    return param_mark(conn.dialect)


def _read(conn: Connection, municipality: str, kind: PeriodKind, mode: str, positions: Sequence[int],
          scope: Scope) -> Iterator[tuple[int, str, str, int]]:
    """(position, bucket, code, value): the entries of the scope's packed rows at the given
    positions, by primary key (a caseworker's rows of several teams are all returned: the caller
    sums them)."""
    if not positions:
        return
    m = _mark(conn)
    where, params = _scope_sql(conn, municipality, kind, scope)
    inlist = ", ".join([m] * len(positions))
    rows = conn.exec_driver_sql(
        f"SELECT pos, doc FROM {tables.packed.name} WHERE {where} AND mode = {m} AND pos IN ({inlist})",
        (*params, mode, *positions),
    )
    for pos, doc in rows:
        for bucket, code, value in json.loads(doc):
            yield int(pos), bucket, code, int(value)


def read_points(conn: Connection, municipality: str, kind: PeriodKind, periods: Sequence[int], scope: Scope
                ) -> dict[tuple[int, str, str], int]:
    """(period, bucket, code) -> value for the given periods."""
    out: dict[tuple[int, str, str], int] = defaultdict(int)
    for p, b, c, v in _read(conn, municipality, kind, POINT, list(periods), scope):
        out[(p, b, c)] += v
    return {k: v for k, v in out.items() if v}


def read_state(conn: Connection, municipality: str, kind: PeriodKind, period: int, scope: Scope
               ) -> dict[tuple[str, str], int]:
    """(bucket, code) -> state value at the end of `period`."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for _n, b, c, v in _read(conn, municipality, kind, STATE, prefix_nodes(kind, period), scope):
        out[(b, c)] += v
    return {k: v for k, v in out.items() if v}


def municipalities(conn: Connection) -> list[str]:
    t = tables.children
    return sorted(r[0] for r in conn.execute(select(t.c.municipality).distinct()))


def caseworker_teams(conn: Connection, municipality: str, caseworker_id: str) -> list[str]:
    """The teams under which a caseworker has figures (to resolve a caseworker's team)."""
    t = tables.packed
    return sorted(
        r[0] for r in conn.execute(
            select(t.c.team_id).distinct().where(and_(
                t.c.municipality == municipality, t.c.caseworker_id == caseworker_id, t.c.team_id != "",
            ))
        )
    )


# --- population -------------------------------------------------------------------------------


def put_population(conn: Connection, municipality: str, year: int, children: int) -> None:
    t = tables.population
    conn.execute(t.delete().where(and_(t.c.municipality == municipality, t.c.year == year)))
    conn.execute(t.insert().values(municipality=municipality, year=year, children=children,
                                   updated_at=datetime.now(UTC)))


def population_for(conn: Connection, municipality: str, year: int) -> tuple[int, int] | None:
    """(year, children) of the latest year at or before `year`, else of the earliest later year."""
    t = tables.population
    rows = sorted(
        (int(y), int(c)) for y, c in conn.execute(
            select(t.c.year, t.c.children).where(t.c.municipality == municipality)
        )
    )
    if not rows:
        return None
    before = [r for r in rows if r[0] <= year]
    return before[-1] if before else rows[0]


def all_population(conn: Connection) -> list[dict[str, int | str]]:
    t = tables.population
    return [
        {"municipality": m, "year": int(y), "children": int(c)}
        for m, y, c in conn.execute(select(t.c.municipality, t.c.year, t.c.children)
                                    .order_by(t.c.municipality, t.c.year))
    ]
