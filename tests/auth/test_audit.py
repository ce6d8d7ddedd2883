"""Audit log: written in the caller's transaction, read back by the chef only (domain.md §8)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from shared.audit import audit_log, audit_metadata, audit_router, write_audit
from shared.auth import Principal
from shared.db import make_engine

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
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit_log)).scalar_one()


def test_one_row_per_distinct_child(engine: Engine) -> None:
    with engine.begin() as conn:
        write_audit(conn, CASEWORKER, ["c1", "c2", "c1", "c2", "c3"], "GET /deadlines", "followup")
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.child_id).order_by(audit_log.c.id)).scalars().all()
    assert rows == ["c1", "c2", "c3"]


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
