"""Reading the buckets and the population table (the I/O side of the reports).

A report reads the point rows of its period (and, for the 12-month figures, of the 11 months before)
and at most log2(range) Fenwick nodes per state bucket: its cost does not grow with the years of
history in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, and_, func, select

from services.ledelsesinfo import tables
from services.ledelsesinfo.domain.fenwick import prefix_nodes
from services.ledelsesinfo.domain.periods import PeriodKind


@dataclass(frozen=True, slots=True)
class Scope:
    team_id: str | None = None
    caseworker_id: str | None = None

    @property
    def level(self) -> str:
        if self.caseworker_id:
            return "caseworker"
        return "team" if self.team_id else "municipality"


def _scope_filter(table: tables.Table, municipality: str, kind: PeriodKind, scope: Scope
                  ) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = [table.c.municipality == municipality, table.c.kind == kind]
    if scope.caseworker_id:
        cond.append(table.c.caseworker_id == scope.caseworker_id)
        if scope.team_id:
            cond.append(table.c.team_id == scope.team_id)
    else:
        cond.append(table.c.caseworker_id == "")
        cond.append(table.c.team_id == (scope.team_id or ""))
    return cond


def read_points(conn: Connection, municipality: str, kind: PeriodKind, periods: Sequence[int], scope: Scope
                ) -> dict[tuple[int, str, str], int]:
    """(period, bucket, code) -> value for the given periods."""
    t = tables.points
    rows = conn.execute(
        select(t.c.period, t.c.bucket, t.c.code, func.sum(t.c.value))
        .where(and_(*_scope_filter(t, municipality, kind, scope), t.c.period.in_(list(periods))))
        .group_by(t.c.period, t.c.bucket, t.c.code)
    )
    return {(int(p), b, c): int(v) for p, b, c, v in rows if v}


def read_state(conn: Connection, municipality: str, kind: PeriodKind, period: int, scope: Scope
               ) -> dict[tuple[str, str], int]:
    """(bucket, code) -> state value at the end of `period`."""
    nodes = prefix_nodes(kind, period)
    if not nodes:
        return {}
    t = tables.state
    rows = conn.execute(
        select(t.c.bucket, t.c.code, func.sum(t.c.value))
        .where(and_(*_scope_filter(t, municipality, kind, scope), t.c.node.in_(nodes)))
        .group_by(t.c.bucket, t.c.code)
    )
    return {(b, c): int(v) for b, c, v in rows if v}


def municipalities(conn: Connection) -> list[str]:
    t = tables.children
    return sorted(r[0] for r in conn.execute(select(t.c.municipality).distinct()))


def caseworker_teams(conn: Connection, municipality: str, caseworker_id: str) -> list[str]:
    """The teams under which a caseworker has figures (to resolve a caseworker's team)."""
    t = tables.points
    s = tables.state
    found: set[str] = set()
    for table in (t, s):
        found.update(
            r[0] for r in conn.execute(
                select(table.c.team_id).distinct().where(and_(
                    table.c.municipality == municipality, table.c.caseworker_id == caseworker_id,
                    table.c.team_id != "",
                ))
            )
        )
    return sorted(found)


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
