"""Audit log of reads of case-level data about a child (domain.md §8).

Append-only: `write_audit` inserts rows in the caller's transaction, `AuditWriter` commits the rows
of concurrent reads together before their answers go out; the only API on the log is the `chef`'s
read by child (`audit_router`). Nothing updates or deletes entries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
from shared.casework.isotext import sqlite_utc_text
from shared.db import executemany, param_mark, read_only, write_transaction

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


AUDIT_COLUMNS = ("at", "sub", "role", "municipality", "child_id", "endpoint", "service")

AuditRow = tuple[datetime, str, str, str, str, str, str]


def audit_rows(
    principal: Principal,
    child_ids: Iterable[str],
    endpoint: str,
    service: str,
    at: datetime | None = None,
) -> list[AuditRow]:
    """The entries (in the order of `AUDIT_COLUMNS`) that `principal` read data about each child:
    one per distinct child id, all at `at` (default now), in the order of the log's index."""
    when = at or datetime.now(UTC)
    sub, role, municipality = principal.sub, principal.role, principal.municipality
    return [(when, sub, role, municipality, child, endpoint, service) for child in sorted(set(child_ids))]


def insert_audit_rows(conn: Connection, rows: Sequence[AuditRow]) -> None:
    """INSERT `rows` in the caller's transaction, as positional tuples straight to the driver (a
    worklist can name a thousand children); the instant is stored as SQLAlchemy's `DateTime` stores
    it (naive UTC text on SQLite)."""
    if not rows:
        return
    try:
        mark = param_mark(conn.dialect)
    except ValueError:  # another driver than the two this project runs on: the usual way
        conn.execute(insert(audit_log), [dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in rows])
        return
    if conn.dialect.name == "sqlite":
        rows = [(sqlite_utc_text(row[0]), *row[1:]) for row in rows]  # type: ignore[misc]
    marks = ", ".join([mark] * len(AUDIT_COLUMNS))
    sql = f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}) VALUES ({marks})"
    executemany(conn, sql, rows)


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
    insert_audit_rows(conn, audit_rows(principal, child_ids, endpoint, service))


class _Pending:
    __slots__ = ("rows", "done", "error")

    def __init__(self, rows: list[AuditRow]) -> None:
        self.rows = rows
        self.done = False
        self.error: BaseException | None = None


AuditNote = Callable[[Principal, Iterable[str], str, str], None]


class AuditWriter:
    """Audit entries of answers read from `engine`, committed before the answers go out.

    `reading()` gives the connection to read an answer with and the function to note its entries.
    On SQLite the read is a snapshot (`shared.db.read_only`: it holds up no writer) and the entries
    are then committed when the read ends, together with those of concurrent answers (group commit): of
    the requests waiting at a moment, one commits everything pending in one transaction while the
    others wait on a condition here, instead of each taking the database's one write lock in turn
    (sleeping in SQLite's busy handler). On PostgreSQL, where readers never block writers and
    concurrent commits share their WAL flushes anyway, read and entries are one transaction (a
    second transaction per answer would only add round trips). Either way an error committing the
    entries is raised, so an answer never goes out unaudited.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._flushing = False
        self.commits = 0  # transactions committed (for tests and metrics)

    @contextmanager
    def reading(self) -> Iterator[tuple[Connection, AuditNote]]:
        """`(conn, note)`: read the answer through `conn` and call `note(principal, child_ids,
        endpoint, service)` for what it shows; the entries are committed when the block ends
        without an error (nothing is noted for an answer that failed)."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:

                def write_now(who: Principal, child_ids: Iterable[str], endpoint: str, service: str) -> None:
                    write_audit(conn, who, child_ids, endpoint, service)

                yield conn, write_now
            return
        noted: list[AuditRow] = []

        def note(principal: Principal, child_ids: Iterable[str], endpoint: str, service: str) -> None:
            noted.extend(audit_rows(principal, child_ids, endpoint, service))

        with read_only(self.engine).connect() as conn:
            yield conn, note
        self._record_rows(noted)

    def _record_rows(self, rows: list[AuditRow]) -> None:
        """Commit these entries (with those of concurrent callers); returns once they are in."""
        if not rows:
            return
        mine = _Pending(rows)
        with self._cond:
            self._pending.append(mine)
            while not mine.done:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                self._cond.release()
                error: BaseException | None = None
                try:
                    self._commit(batch)
                except BaseException as exc:  # every waiter of this batch learns it
                    error = exc
                finally:
                    self._cond.acquire()
                    for entry in batch:
                        entry.done, entry.error = True, error
                    self._flushing = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error

    def _commit(self, batch: list[_Pending]) -> None:
        with write_transaction(self.engine) as conn:
            insert_audit_rows(conn, [row for entry in batch for row in entry.rows])
        self.commits += 1


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
        with read_only(engine).connect() as conn:
            entries = read_audit(conn, principal.municipality, child_id)
        return {
            "child_id": child_id,
            "municipality": principal.municipality,
            "entries": entries,
        }

    return router
