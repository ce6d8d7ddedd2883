"""Audit log of reads of case-level data about a child (domain.md §8).

Append-only: `write_audit` records a read in the caller's transaction, `AuditWriter` commits the
reads of concurrent answers together before they go out; the only API on the log is the `chef`'s
read by child (`audit_router`). Nothing updates or deletes entries.

One read is one row of `audit_reads` (who, role, when, which endpoint) naming the set of children
it showed; a set is stored once per municipality (`audit_child_sets`, keyed by a digest of its
sorted child pseudonyms) with one row per child (`audit_child_set_members`, indexed by child).
A worklist names a thousand children and is read again and again with the same ones, so a read
costs one row instead of a row (and a random index insertion) per child; nothing is lost: the
view `audit_log` gives the classic one entry per (read, child), and `read_audit` finds every read
of a child through the member index.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import (
    DDL,
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
    UniqueConstraint,
    event,
    select,
)

from shared.auth import CurrentPrincipal, Principal, require_role
from shared.casework.isotext import sqlite_utc_text
from shared.db import executemany, param_mark, read_only, write_transaction

audit_metadata = MetaData()


def _id_column() -> Column[int]:
    return Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)


audit_reads = Table(
    "audit_reads",
    audit_metadata,
    _id_column(),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("sub", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("municipality", String(3), nullable=False),
    Column("endpoint", String(300), nullable=False),
    Column("service", String(50), nullable=False),
    Column("child_set_id", BigInteger(), nullable=False),
    Index("ix_audit_reads_child_set_at", "child_set_id", "at"),
)

audit_child_sets = Table(
    "audit_child_sets",
    audit_metadata,
    _id_column(),
    Column("municipality", String(3), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("size", Integer(), nullable=False),
    UniqueConstraint("municipality", "digest", name="uq_audit_child_sets_municipality_digest"),
)

audit_child_set_members = Table(
    "audit_child_set_members",
    audit_metadata,
    Column("set_id", BigInteger(), primary_key=True),
    Column("child_id", String(100), primary_key=True),
    Column("municipality", String(3), nullable=False),
    Index("ix_audit_child_set_members_child", "municipality", "child_id", "set_id"),
)

# The classic shape, one entry per (read, child): a view, for people and tests reading the log by
# hand. It is not part of `audit_metadata` (nothing creates it as a table).
AUDIT_LOG_VIEW_SQL = (
    "SELECT r.id AS id, r.at AS at, r.sub AS sub, r.role AS role, r.municipality AS municipality, "
    "m.child_id AS child_id, r.endpoint AS endpoint, r.service AS service "
    "FROM audit_reads r JOIN audit_child_set_members m ON m.set_id = r.child_set_id"
)
audit_view_metadata = MetaData()
audit_log = Table(
    "audit_log",
    audit_view_metadata,
    Column("id", BigInteger()),
    Column("at", DateTime(timezone=True)),
    Column("sub", String(200)),
    Column("role", String(20)),
    Column("municipality", String(3)),
    Column("child_id", String(100)),
    Column("endpoint", String(300)),
    Column("service", String(50)),
)
event.listen(
    audit_metadata,
    "after_create",
    DDL(f"CREATE VIEW IF NOT EXISTS audit_log AS {AUDIT_LOG_VIEW_SQL}").execute_if(dialect="sqlite"),
)
event.listen(
    audit_metadata,
    "after_create",
    DDL(f"CREATE OR REPLACE VIEW audit_log AS {AUDIT_LOG_VIEW_SQL}").execute_if(dialect="postgresql"),
)
event.listen(audit_metadata, "before_drop", DDL("DROP VIEW IF EXISTS audit_log"))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One read: `principal` saw data about `children` (distinct, sorted) through `endpoint`;
    `digest` keys the set of children (`child_set_digest`)."""

    at: datetime
    sub: str
    role: str
    municipality: str
    children: tuple[str, ...]
    digest: str
    endpoint: str
    service: str


def child_set_digest(children: Sequence[str]) -> str:
    """The key of a set of children: SHA-256 of the sorted distinct pseudonyms, one per line."""
    return hashlib.sha256("\n".join(children).encode()).hexdigest()


def audit_entry(
    principal: Principal,
    child_ids: Iterable[str],
    endpoint: str,
    service: str,
    at: datetime | None = None,
) -> AuditEntry | None:
    """The entry that `principal` read data about each child at `at` (default now); None when
    the answer named no child (nothing to record)."""
    children = tuple(sorted(set(child_ids)))
    if not children:
        return None
    return AuditEntry(
        at or datetime.now(UTC),
        principal.sub,
        principal.role,
        principal.municipality,
        children,
        child_set_digest(children),
        endpoint,
        service,
    )


SetKey = tuple[str, str]
"""(municipality, digest) of a stored set of children."""


@dataclass(frozen=True, slots=True)
class _Sql:
    """The statements of the write path, written for the driver (a read of a case writes one
    entry: SQLAlchemy's statement machinery would cost more than SQLite takes to run them)."""

    find_set: str
    new_set: str
    new_member: str
    new_read: str

    @staticmethod
    def with_mark(m: str) -> _Sql:
        return _Sql(
            find_set=f"SELECT id FROM audit_child_sets WHERE municipality = {m} AND digest = {m}",
            new_set=(
                f"INSERT INTO audit_child_sets (municipality, digest, size) VALUES ({m}, {m}, {m}) "
                "ON CONFLICT (municipality, digest) DO NOTHING RETURNING id"
            ),
            new_member=(
                f"INSERT INTO audit_child_set_members (set_id, child_id, municipality) VALUES ({m}, {m}, {m})"
            ),
            new_read=(
                "INSERT INTO audit_reads (at, sub, role, municipality, endpoint, service, child_set_id) "
                f"VALUES ({', '.join([m] * 7)})"
            ),
        )


_STATEMENTS = {mark: _Sql.with_mark(mark) for mark in ("?", "%s")}


def _child_set_id(
    conn: Connection, sql: _Sql, municipality: str, digest: str, children: Sequence[str]
) -> int:
    """The id of this set of children (distinct, sorted) in `municipality`, stored with its
    members in the caller's transaction the first time it is seen (the callers look in their
    cache of committed sets first, so the insert is tried first). Safe against a concurrent
    writer storing the same set: the unique digest decides, the loser reads the winner's id."""
    new = conn.exec_driver_sql(sql.new_set, (municipality, digest, len(children))).scalar_one_or_none()
    if new is None:  # stored before (or by a concurrent transaction that committed meanwhile)
        return int(conn.exec_driver_sql(sql.find_set, (municipality, digest)).scalar_one())
    set_id = int(new)
    executemany(conn, sql.new_member, [(set_id, child, municipality) for child in children])
    return set_id


def insert_audit_entries(
    conn: Connection, entries: Sequence[AuditEntry], known_sets: Mapping[SetKey, int] | None = None
) -> dict[SetKey, int]:
    """Record `entries` in the caller's transaction: one `audit_reads` row each, their child sets
    found (in `known_sets`, sets known to be committed, or in the database) or stored first.
    Returns the set id of every entry's set, for the caller to remember once committed."""
    if not entries:
        return {}
    sql = _STATEMENTS[param_mark(conn.dialect)]
    known = known_sets or {}
    set_ids: dict[SetKey, int] = {}
    reads: list[tuple[Any, ...]] = []
    sqlite = conn.dialect.name == "sqlite"
    for entry in entries:
        key = (entry.municipality, entry.digest)
        set_id = set_ids.get(key) or known.get(key)
        if set_id is None:
            set_id = _child_set_id(conn, sql, entry.municipality, entry.digest, entry.children)
        set_ids[key] = set_id
        at: Any = sqlite_utc_text(entry.at) if sqlite else entry.at  # as SQLAlchemy's DateTime stores it
        reads.append((at, entry.sub, entry.role, entry.municipality, entry.endpoint, entry.service, set_id))
    executemany(conn, sql.new_read, reads)
    return set_ids


def write_audit(
    conn: Connection,
    principal: Principal,
    child_ids: Iterable[str],
    endpoint: str,
    service: str,
    known_sets: Mapping[SetKey, int] | None = None,
) -> dict[SetKey, int]:
    """Record that `principal` read data about each child (nothing when there is none).

    Runs in the caller's transaction (commit with the read, or not at all). `endpoint` is what was
    called, e.g. `"GET /cases/{case_id}"`; never put a CPR or a token in it. `known_sets` and the
    result as in `insert_audit_entries`.
    """
    entry = audit_entry(principal, child_ids, endpoint, service)
    return {} if entry is None else insert_audit_entries(conn, [entry], known_sets)


_KNOWN_SETS = 20_000  # child set ids an AuditWriter remembers (then it starts over)


class _Pending:
    __slots__ = ("entries", "done", "error")

    def __init__(self, entries: list[AuditEntry]) -> None:
        self.entries = entries
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
        self._set_ids: dict[SetKey, int] = {}  # child sets known to be committed (never deleted)
        self.commits = 0  # transactions committed (for tests and metrics)

    @contextmanager
    def reading(self) -> Iterator[tuple[Connection, AuditNote]]:
        """`(conn, note)`: read the answer through `conn` and call `note(principal, child_ids,
        endpoint, service)` for what it shows; the entries are committed when the block ends
        without an error (nothing is noted for an answer that failed)."""
        if self.engine.dialect.name != "sqlite":
            written: dict[SetKey, int] = {}
            with self.engine.begin() as conn:

                def write_now(who: Principal, child_ids: Iterable[str], endpoint: str, service: str) -> None:
                    written.update(write_audit(conn, who, child_ids, endpoint, service, self._set_ids))

                yield conn, write_now
            self._remember(written)  # committed
            return
        noted: list[AuditEntry] = []

        def note(principal: Principal, child_ids: Iterable[str], endpoint: str, service: str) -> None:
            entry = audit_entry(principal, child_ids, endpoint, service)
            if entry is not None:
                noted.append(entry)

        with read_only(self.engine).connect() as conn:
            yield conn, note
        self._record(noted)

    def _record(self, entries: list[AuditEntry]) -> None:
        """Commit these entries (with those of concurrent callers); returns once they are in."""
        if not entries:
            return
        mine = _Pending(entries)
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
                    for pending in batch:
                        pending.done, pending.error = True, error
                    self._flushing = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error

    def _commit(self, batch: list[_Pending]) -> None:
        entries = [entry for pending in batch for entry in pending.entries]
        with write_transaction(self.engine) as conn:
            set_ids = insert_audit_entries(conn, entries, self._set_ids)
        self.commits += 1
        self._remember(set_ids)

    def _remember(self, set_ids: dict[SetKey, int]) -> None:
        """Keep the ids of these committed child sets (a bounded number: then start over)."""
        if len(self._set_ids) + len(set_ids) > _KNOWN_SETS:
            self._set_ids.clear()
        self._set_ids.update(set_ids)


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; every value was written in UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def read_audit(conn: Connection, municipality: str, child_id: str) -> list[dict[str, Any]]:
    """The reads of one child of one municipality, oldest first."""
    member, read = audit_child_set_members, audit_reads
    stmt = (
        select(read.c.at, read.c.sub, read.c.role, read.c.endpoint, read.c.service)
        .select_from(member.join(read, read.c.child_set_id == member.c.set_id))
        .where(member.c.municipality == municipality, member.c.child_id == child_id)
        .order_by(read.c.at, read.c.id)
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

    Reads from `request.app.state.engine`, which must hold the audit tables (`audit_metadata`).
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
