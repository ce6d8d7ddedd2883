"""Audit log: written in the caller's transaction, read back by the chef only (domain.md §8)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from shared.audit import (
    AuditWriter,
    audit_child_set_members,
    audit_child_sets,
    audit_log,
    audit_metadata,
    audit_reads,
    audit_router,
    child_set_digest,
    read_audit,
    write_audit,
)
from shared.auth import Principal
from shared.db import make_engine, read_only

from .conftest import claims, hs256, hs_settings

TEAMLEDER = Principal("bo", "teamleder", "657", frozenset({"t1"}), None)
CASEWORKER = Principal("ida", "sagsbehandler", "657", frozenset({"t1"}), "cw1")
OTHER_MUNI = Principal("eva", "chef", "101", frozenset(), None)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    audit_metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine) -> TestClient:
    app = FastAPI()
    app.state.settings = hs_settings()
    app.state.engine = engine
    app.include_router(audit_router("followup"))
    return TestClient(app)


def _bearer(**overrides: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(claims(**overrides))}"}


def _count(engine: Engine) -> int:
    with read_only(engine).connect() as conn:
        return conn.execute(select(func.count()).select_from(audit_log)).scalar_one()


def test_one_row_per_distinct_child(engine: Engine) -> None:
    with engine.begin() as conn:
        write_audit(conn, CASEWORKER, ["c1", "c2", "c1", "c2", "c3"], "GET /deadlines", "followup")
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.child_id).order_by(audit_log.c.id, audit_log.c.child_id)
        ).scalars().all()
    assert rows == ["c1", "c2", "c3"]


def test_a_set_of_children_is_stored_once_per_municipality(engine: Engine) -> None:
    """Reads of the same children (in any order, with repeats) share one stored set; each read is a
    row of its own, and each is found by each of its children."""
    odd = 'c-"Ærø"'
    with engine.begin() as conn:
        write_audit(conn, CASEWORKER, ["c2", odd, "c1"], "GET /deadlines", "followup")
    with engine.begin() as conn:
        write_audit(conn, TEAMLEDER, ["c1", "c2", odd, "c2"], "GET /deadlines", "followup")
        write_audit(conn, TEAMLEDER, ["c1"], "GET /cases/{case_id}", "followup")
        write_audit(conn, OTHER_MUNI, ["c1", "c2", odd], "GET /deadlines", "followup")
    with engine.connect() as conn:
        sets = conn.execute(
            select(audit_child_sets.c.municipality, audit_child_sets.c.size).order_by(audit_child_sets.c.id)
        ).all()
        members = conn.execute(
            select(audit_child_set_members.c.child_id).where(audit_child_set_members.c.set_id == 1)
        ).scalars().all()
        reads = conn.execute(select(func.count()).select_from(audit_reads)).scalar_one()
        by_child = {c: read_audit(conn, "657", c) for c in ("c1", "c2", odd)}
    assert [tuple(s) for s in sets] == [("657", 3), ("657", 1), ("101", 3)]
    assert sorted(members) == sorted(["c1", "c2", odd])
    assert reads == 4
    assert [e["sub"] for e in by_child["c1"]] == ["ida", "bo", "bo"]
    assert [e["sub"] for e in by_child[odd]] == ["ida", "bo"] == [e["sub"] for e in by_child["c2"]]
    assert _count(engine) == 3 + 3 + 1 + 3  # the view: one entry per (read, child)


@pytest.mark.postgres
def test_concurrent_first_reads_of_a_new_set_store_it_once(fresh_pg_url: str) -> None:
    """Two transactions naming the same new set of children at once: the unique digest makes the
    second wait for the first, then use its set; both reads are kept."""
    engine = make_engine(fresh_pg_url)
    try:
        audit_metadata.create_all(engine)
        first = engine.connect()
        first.begin()
        write_audit(first, CASEWORKER, ["c1", "c2"], "GET /deadlines", "followup")
        errors: list[BaseException] = []

        def second() -> None:
            try:
                with engine.begin() as conn:
                    write_audit(conn, TEAMLEDER, ["c2", "c1"], "GET /deadlines", "followup")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.5)
        assert other.is_alive()  # waiting on the first one's new set
        first.commit()
        first.close()
        other.join(30)
        assert not errors
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(audit_child_sets)).scalar_one() == 1
            assert [e["sub"] for e in read_audit(conn, "657", "c2")] == ["ida", "bo"]
    finally:
        engine.dispose()


def test_no_children_no_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        write_audit(conn, CASEWORKER, [], "GET /deadlines", "followup")
    assert _count(engine) == 0


def test_written_in_the_callers_transaction(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        write_audit(conn, CASEWORKER, ["c1"], "GET /cases/{case_id}", "followup")
        raise RuntimeError("the read failed")
    assert _count(engine) == 0


def test_chef_reads_the_entries_of_a_child(engine: Engine, client: TestClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    with engine.begin() as conn:
        write_audit(conn, CASEWORKER, ["c1", "c2"], "GET /cases/{case_id}", "followup")
    with engine.begin() as conn:
        write_audit(conn, TEAMLEDER, ["c1"], "GET /deadlines", "followup")
    with engine.begin() as conn:
        write_audit(conn, OTHER_MUNI, ["c1"], "GET /cases/{case_id}", "followup")

    response = client.get("/audit", params={"child_id": "c1"}, headers=_bearer())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["child_id"] == "c1"
    entries = body["entries"]
    assert [(e["sub"], e["role"], e["endpoint"], e["service"]) for e in entries] == [
        ("ida", "sagsbehandler", "GET /cases/{case_id}", "followup"),
        ("bo", "teamleder", "GET /deadlines", "followup"),
    ]
    for entry in entries:
        at = datetime.fromisoformat(entry["at"])
        assert at.tzinfo is not None
        assert before <= at <= datetime.now(UTC) + timedelta(seconds=1)

    explicit = client.get("/audit", params={"child_id": "c1", "municipality": "657"}, headers=_bearer())
    assert explicit.json()["entries"] == entries

    other_chef = client.get("/audit", params={"child_id": "c1"}, headers=_bearer(municipality="101"))
    assert [e["sub"] for e in other_chef.json()["entries"]] == ["eva"]

    unknown = client.get("/audit", params={"child_id": "nobody"}, headers=_bearer())
    assert unknown.json() == {"child_id": "nobody", "municipality": "657", "entries": []}


@pytest.mark.parametrize(
    "token_claims",
    [
        {"role": "teamleder", "teams": ["t1"]},
        {"role": "sagsbehandler", "teams": ["t1"], "caseworker_id": "cw1"},
        {"role": "udvalg"},
        {"role": "system"},
    ],
    ids=["teamleder", "sagsbehandler", "udvalg", "system"],
)
def test_only_chef_may_read(client: TestClient, token_claims: dict[str, object]) -> None:
    response = client.get("/audit", params={"child_id": "c1"}, headers=_bearer(**token_claims))
    assert response.status_code == 403


def test_chef_of_another_municipality_is_refused(client: TestClient) -> None:
    response = client.get("/audit", params={"child_id": "c1", "municipality": "101"}, headers=_bearer())
    assert response.status_code == 403


def test_unauthenticated_is_401(client: TestClient) -> None:
    response = client.get("/audit", params={"child_id": "c1"})
    assert response.status_code == 401


def test_child_id_is_required(client: TestClient) -> None:
    assert client.get("/audit", headers=_bearer()).status_code == 422


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_log_cannot_be_changed_over_http(engine: Engine, client: TestClient, method: str) -> None:
    with engine.begin() as conn:
        write_audit(conn, CASEWORKER, ["c1"], "GET /cases/{case_id}", "followup")
    response = client.request(method, "/audit", params={"child_id": "c1"}, headers=_bearer())
    assert response.status_code == 405
    assert _count(engine) == 1


# --------------------------------------------------------------------------- AuditWriter (group commit)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _audited_read(writer: AuditWriter, who: Principal, child_ids: list[str], endpoint: str) -> None:
    """An answer read through `writer` that shows these children (its entries committed on exit)."""
    with writer.reading() as (_conn, note):
        note(who, child_ids, endpoint, "followup")


def test_writer_commits_the_entries_of_waiting_requests_together(engine: Engine) -> None:
    writer = AuditWriter(engine)
    errors: list[BaseException] = []

    def read(child: str) -> None:
        try:
            _audited_read(writer, CASEWORKER, [child], "GET /cases/{case_id}")
        except BaseException as exc:
            errors.append(exc)

    holder = engine.connect()
    holder.begin()  # BEGIN IMMEDIATE: the write lock, as a projection worker's batch holds it
    first = threading.Thread(target=read, args=("c0",))
    first.start()
    _wait_for(lambda: writer._flushing, "the first request to start committing")
    rest = [threading.Thread(target=read, args=(f"c{i}",)) for i in range(1, 16)]
    for t in rest:
        t.start()
    _wait_for(lambda: len(writer._pending) == 15, "the other requests to queue")
    assert _count(engine) == 0  # nothing is answered before it is committed
    holder.rollback()
    holder.close()
    for t in [first, *rest]:
        t.join(30)
    assert not errors
    assert writer.commits == 2  # the first request's own, then the fifteen that waited, together
    with engine.connect() as conn:
        children = conn.execute(select(audit_log.c.child_id)).scalars().all()
    assert sorted(children) == sorted(f"c{i}" for i in range(16))


def test_writer_raises_to_every_request_of_a_failed_commit(engine: Engine) -> None:
    writer = AuditWriter(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_reads RENAME TO audit_reads_away")
    with pytest.raises(OperationalError):
        _audited_read(writer, CASEWORKER, ["c1"], "GET /cases/{case_id}")
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_reads_away RENAME TO audit_reads")
    assert _count(engine) == 0
    _audited_read(writer, CASEWORKER, ["c2", "c2"], "GET /deadlines")
    _audited_read(writer, CASEWORKER, [], "GET /deadlines")  # no children: nothing to commit
    assert writer.commits == 1
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.child_id)).scalars().all() == ["c2"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_audited_read_commits_its_entries_and_a_failed_one_none(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    engine = make_engine(url)
    try:
        audit_metadata.create_all(engine)
        writer = AuditWriter(engine)
        with writer.reading() as (conn, note):
            assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 0
            note(CASEWORKER, ["c1", "c2", "c1"], "GET /deadlines", "followup")
        assert _count(engine) == 2  # committed when the block ended: before the answer goes out
        with pytest.raises(LookupError), writer.reading() as (conn, note):
            note(TEAMLEDER, ["c3"], "GET /cases/{case_id}", "followup")
            raise LookupError("no such case")  # the answer failed: nothing is recorded
        assert _count(engine) == 2
        # SQLite: the read was a snapshot and the entries were group-committed; PostgreSQL: one
        # transaction for both, no group commit
        assert writer.commits == (1 if backend == "sqlite" else 0)
        # the committed set is remembered, the failed read's is not; a read of the same children
        # again reuses the set
        assert list(writer._set_ids) == [("657", child_set_digest(["c1", "c2"]))]
        with writer.reading() as (conn, note):
            note(TEAMLEDER, ["c2", "c1"], "GET /deadlines", "followup")
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(audit_child_sets)).scalar_one() == 1
            assert [e["sub"] for e in read_audit(conn, "657", "c1")] == ["ida", "bo"]
    finally:
        engine.dispose()
