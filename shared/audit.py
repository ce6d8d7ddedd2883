"""Audit log of reads of case-level data about a child (domain.md §8).

Append-only: `write_audit` inserts rows in the caller's transaction; the only API on the log is the
`chef`'s read by child (`audit_router`). Nothing updates or deletes entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)

from shared.auth import CurrentPrincipal, Principal, require_role

audit_metadata = MetaData()

audit_log = Table(
    "audit_log",
    audit_metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("sub", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("municipality", String(3), nullable=False),
    Column("child_id", String(100), nullable=False),
    Column("endpoint", String(300), nullable=False),
    Column("service", String(50), nullable=False),
    Index("ix_audit_log_municipality_child", "municipality", "child_id", "at"),
)


def write_audit(
    conn: Connection,
    principal: Principal,
    child_ids: Iterable[str],
    endpoint: str,
    service: str,
) -> None:
    """Record that `principal` read data about each child, one row per distinct child id.

    Runs in the caller's transaction (commit with the read, or not at all). `endpoint` is what was
    called, e.g. `"GET /cases/{case_id}"`; never put a CPR or a token in it.
    """
    at = datetime.now(UTC)
    rows = [
        {
            "at": at,
            "sub": principal.sub,
            "role": principal.role,
            "municipality": principal.municipality,
            "child_id": child_id,
            "endpoint": endpoint,
            "service": service,
        }
        for child_id in dict.fromkeys(child_ids)
    ]
    if rows:
        conn.execute(insert(audit_log), rows)


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; every value was written in UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def read_audit(conn: Connection, municipality: str, child_id: str) -> list[dict[str, Any]]:
    """The entries about one child of one municipality, oldest first."""
    stmt = (
        select(audit_log.c.at, audit_log.c.sub, audit_log.c.role, audit_log.c.endpoint, audit_log.c.service)
        .where(audit_log.c.municipality == municipality, audit_log.c.child_id == child_id)
        .order_by(audit_log.c.at, audit_log.c.id)
    )
    return [
        {
            "at": _utc(row.at).isoformat(),
            "sub": row.sub,
            "role": row.role,
            "endpoint": row.endpoint,
            "service": row.service,
        }
        for row in conn.execute(stmt)
    ]


def audit_router(service: str) -> APIRouter:
    """`GET /audit?child_id=..[&municipality=..]`: who read what about a child (`chef` only).

    Reads from `request.app.state.engine`, which must hold the `audit_log` table.
    """
    router = APIRouter(tags=["audit"])

    @router.get("/audit", summary=f"Audit log of reads about a child ({service})")
    def get_audit(
        request: Request,
        principal: CurrentPrincipal,
        child_id: Annotated[str, Query(min_length=1, max_length=100, description="Child pseudonym")],
        municipality: Annotated[
            str | None, Query(pattern=r"^[0-9]{3}$", description="Defaults to your own")
        ] = None,
    ) -> dict[str, Any]:
        require_role(principal, "chef")
        if municipality is not None and municipality != principal.municipality:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail="this municipality is outside your credentials",
            )
        engine: Engine = request.app.state.engine
        with engine.connect() as conn:
            entries = read_audit(conn, principal.municipality, child_id)
        return {
            "child_id": child_id,
            "municipality": principal.municipality,
            "entries": entries,
        }

    return router
