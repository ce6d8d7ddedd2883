"""The follow-up HTTP API (spec sections 7 and 8): cases, worklists, caseload, profiles, auth, audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.followup.app import create_app, create_tables
from services.followup.config import Settings
from shared.audit import audit_log
from shared.eventstore.schema import metadata as store_metadata
from tests.followup.scenarios import all_streams

SECRET = "followup-test-secret"


def scenario_client(tmp_path: Path, **settings: Any) -> TestClient:
    """A client of the follow-up app on temp SQLite files, every scenario stream applied."""
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'followup.db'}",
            event_store_url=f"sqlite:///{tmp_path / 'store.db'}",
            run_worker=False,
            auth_jwt_secret=SECRET,
            **settings,
        )
    )
    create_tables(app.state.engine)
    store_metadata.create_all(app.state.store_engine)  # the shared log (intake migrates it)
    with app.state.engine.begin() as conn:
        app.state.projection.apply(conn, [env for s in all_streams() for env in s.events])
    return TestClient(app)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with scenario_client(tmp_path) as c:
        yield c


def token(role: str, municipality: str = "657", **claims: Any) -> dict[str, str]:
    body: dict[str, Any] = {
        "sub": claims.pop("sub", f"{role}-user"),
        "role": role,
        "municipality": municipality,
        "exp": datetime.now(UTC) + timedelta(hours=24),  # minted at import: outlive a slow suite
        **claims,
    }
    if role in ("sagsbehandler", "teamleder"):
        body.setdefault("teams", ["syd"])
    if role == "sagsbehandler":
        body.setdefault("caseworker_id", "sr-anna")
    return {"Authorization": "Bearer " + jwt.encode(body, SECRET, algorithm="HS256")}


CHEF = token("chef")


def audit_rows(client: TestClient) -> list[Any]:
    with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(audit_log).order_by(audit_log.c.id)).all()


# --------------------------------------------------------------------------- health, auth


def test_health_and_ready_need_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_ready_reports_missing_tables(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", run_worker=False)
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 503


@pytest.mark.parametrize(
    "path",
    [
        "/cases/S-2001?municipality=657",
        "/deadlines?municipality=657",
        "/caseload?municipality=657",
        "/profiles/657",
    ],
)
def test_endpoints_need_a_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 401
    expired = jwt.encode(
        {"sub": "x", "role": "chef", "municipality": "657", "exp": datetime.now(UTC) - timedelta(hours=1)},
        SECRET,
        algorithm="HS256",
    )
    assert client.get(path, headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/cases/{case_id}", "/deadlines", "/caseload", "/profiles/{municipality}", "/health", "/ready"):
        assert p in paths


# --------------------------------------------------------------------------- GET /cases


def test_case_as_of_now(client: TestClient) -> None:
    r = client.get(
        "/cases/S-2001", params={"municipality": "657", "at": "2026-11-20T12:00:00+01:00"}, headers=CHEF
    )
    assert r.status_code == 200, r.text
    case = r.json()
    assert (case["phase"], case["team_id"], case["caseworker_id"], case["status"]) == (
        "indsats",
        "syd",
        "sr-bo",
        "open",
    )
    assert case["caseworker_changes"] == 1
    assert [m["measure_id"] for m in case["running_measures"]] == ["I-3001"]
    assert case["ended_measures"] == []
    assert case["investigations"][0]["kind"] == "boernefaglig_undersoegelse"
    assert [u["underretning_id"] for u in case["underretninger"]] == ["UR-1001"]
    assert case["open_underretninger"] == []
    states = {d["deadline"]: d["state"] for d in case["deadlines"]}
    assert states["follow_up"] == "upcoming"  # due end of 14 Dec (next_due)
    assert states["first_follow_up"] == "met_on_time"
    assert states["acute_assessment"] == "met_on_time"
    assert states["investigation"] == "met_on_time"


def test_case_at_a_past_moment(client: TestClient) -> None:
    r = client.get(
        "/cases/S-2001", params={"municipality": "657", "at": "2026-10-07T12:00:00+02:00"}, headers=CHEF
    )
    case = r.json()
    assert case["phase"] == "undersoegelse"
    assert case["caseworker_id"] == "sr-anna"
    assert case["caseworker_changes"] == 0
    assert case["running_measures"] == []
    assert {d["deadline"] for d in case["deadlines"]} == {"acute_assessment", "receipt", "investigation"}


def test_closed_case_shows_ended_measures_and_ended_deadlines(client: TestClient) -> None:
    r = client.get(
        "/cases/S-1990", params={"municipality": "657", "at": "2026-12-01T12:00:00+01:00"}, headers=CHEF
    )
    case = r.json()
    assert case["status"] == "closed" and case["phase"] is None
    assert [m["measure_id"] for m in case["ended_measures"]] == ["I-2990"]
    assert case["ended_measures"][0]["stable_placement_exempt_since"] is not None
    assert {d["deadline"] for d in case["ended_deadlines"]} >= {"follow_up", "supervision_visit"}
    assert all(d["state"] in ("met_on_time", "met_late") for d in case["deadlines"])


def test_case_read_is_audited(client: TestClient) -> None:
    client.get("/cases/S-2001", params={"municipality": "657"}, headers=token("chef", sub="boss"))
    rows = audit_rows(client)
    assert [(r.sub, r.role, r.child_id, r.endpoint, r.service) for r in rows] == [
        ("boss", "chef", "c-anna", "GET /cases/{case_id}", "followup")
    ]
    audit = client.get("/audit", params={"child_id": "c-anna"}, headers=CHEF).json()
    assert len(audit["entries"]) == 1


@pytest.mark.parametrize(
    ("headers", "case_id", "expected"),
    [
        (token("chef"), "S-2001", 200),
        (token("chef", municipality="167"), "S-2001", 403),  # another municipality's credentials
        (token("teamleder", teams=["syd"]), "S-2001", 200),
        (token("teamleder", teams=["nord"]), "S-2001", 403),
        (token("sagsbehandler", caseworker_id="sr-bo"), "S-2001", 200),  # holds it now
        (token("sagsbehandler", caseworker_id="sr-anna"), "S-2001", 403),  # held it before
        (token("udvalg"), "S-2001", 403),
        (token("system"), "S-2001", 403),
        (token("chef"), "S-9999", 404),
    ],
)
def test_case_scope(client: TestClient, headers: dict[str, str], case_id: str, expected: int) -> None:
    r = client.get(f"/cases/{case_id}", params={"municipality": "657"}, headers=headers)
    assert r.status_code == expected, r.text
    if expected != 200:
        assert audit_rows(client) == []


def test_case_in_another_municipality_with_the_same_id(client: TestClient) -> None:
    r = client.get("/cases/S-3001", params={"municipality": "167"}, headers=token("chef", municipality="167"))
    assert r.status_code == 200 and r.json()["child_id"] == "c-hvid"


@pytest.mark.parametrize(
    "params",
    [
        {"municipality": "65"},
        {"municipality": "abc"},
        {},
        {"municipality": "657", "at": "yesterday"},
        {"municipality": "657", "at": "2026-13-40T00:00:00+01:00"},
        {"municipality": "657", "at": "0001-01-01T00:00:00+00:00"},
    ],
)
def test_case_bad_parameters_are_422(client: TestClient, params: dict[str, str]) -> None:
    assert client.get("/cases/S-2001", params=params, headers=CHEF).status_code == 422


# --------------------------------------------------------------------------- GET /deadlines


def deadlines(client: TestClient, headers: dict[str, str] = CHEF, **params: str) -> list[dict[str, Any]]:
    r = client.get("/deadlines", params={"municipality": "657", **params}, headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["deadlines"]
    return items


def test_worklist_fields_and_order(client: TestClient) -> None:
    items = deadlines(client, at="2026-11-20T12:00:00+01:00")
    assert items
    for item in items:
        for field in (
            "deadline",
            "case_id",
            "underretning_id",
            "measure_id",
            "child_id",
            "due",
            "state",
            "caseworker_id",
            "team_id",
        ):
            assert field in item
        assert item["state"] in ("upcoming", "due_soon", "overdue", "met_on_time", "met_late")
    dues = [datetime.fromisoformat(i["due"]) for i in items]
    assert dues == sorted(dues)


def test_worklist_state_filter(client: TestClient) -> None:
    at = "2026-11-20T12:00:00+01:00"
    overdue = deadlines(client, at=at, state="overdue")
    assert overdue and {i["state"] for i in overdue} == {"overdue"}
    # dora's placement: no first follow-up, no child plan, nothing done
    assert {(i["case_id"], i["deadline"]) for i in overdue} >= {
        ("S-3001", "first_follow_up"),
        ("S-3001", "child_plan"),
    }
    both = deadlines(client, at=at, state="overdue,due_soon")
    assert {i["state"] for i in both} <= {"overdue", "due_soon"}
    repeated = client.get(
        "/deadlines",
        params=[("municipality", "657"), ("at", at), ("state", "overdue"), ("state", "due_soon")],
        headers=CHEF,
    ).json()["deadlines"]
    assert repeated == both
    everything = deadlines(client, at=at)
    assert len(everything) > len(both)


def test_worklist_at_moves_states(client: TestClient) -> None:
    def state_of(at: str) -> str | None:
        found = [
            i["state"]
            for i in deadlines(client, at=at)
            if i["case_id"] == "S-2001" and i["deadline"] == "follow_up"
        ]
        return found[0] if found else None

    assert state_of("2026-11-16T09:00:00+01:00") is None  # before the follow-up that starts it
    assert state_of("2026-11-20T12:00:00+01:00") == "upcoming"
    assert state_of("2026-12-10T12:00:00+01:00") == "due_soon"
    assert state_of("2026-12-14T23:59:59+01:00") == "due_soon"
    assert state_of("2026-12-15T00:00:01+01:00") == "overdue"


def test_worklist_unencoded_plus_in_at(client: TestClient) -> None:
    r = client.get("/deadlines?municipality=657&at=2026-11-20T12:00:00+01:00", headers=CHEF)
    assert r.status_code == 200
    assert r.json()["at"] == "2026-11-20T12:00:00+01:00"


def test_worklist_by_caseworker_follows_the_holder_at_the_moment(client: TestClient) -> None:
    before = deadlines(client, caseworker_id="sr-anna", at="2026-11-16T12:00:00+01:00")
    after = deadlines(client, caseworker_id="sr-anna", at="2026-11-20T12:00:00+01:00")
    assert "S-2001" in {i["case_id"] for i in before}
    assert "S-2001" not in {i["case_id"] for i in after}  # sr-bo took it over on 17 Nov
    bo = deadlines(client, caseworker_id="sr-bo", at="2026-11-20T12:00:00+01:00")
    assert {i["case_id"] for i in bo} == {"S-2001"}
    assert {i["caseworker_id"] for i in bo} == {"sr-bo"}


def test_worklist_by_team(client: TestClient) -> None:
    at = "2026-12-11T12:00:00+01:00"
    syd = deadlines(client, team_id="syd", at=at)
    assert syd and {i["team_id"] for i in syd} == {"syd"}
    modtag = deadlines(client, team_id="modtag", at=at)
    # dora's later underretning is on no case: its own team's, nobody's caseworker
    assert {(i["underretning_id"], i["case_id"], i["caseworker_id"]) for i in modtag} == {
        ("UR-2001", None, None)
    }
    assert {i["deadline"] for i in modtag} == {"acute_assessment", "child_conversation"}


def test_worklist_scope_by_role(client: TestClient) -> None:
    at = "2026-11-20T12:00:00+01:00"
    own = deadlines(client, token("sagsbehandler", caseworker_id="sr-bo"), at=at)
    assert own and {i["caseworker_id"] for i in own} == {"sr-bo"}
    r = client.get(
        "/deadlines",
        params={"municipality": "657", "caseworker_id": "sr-bo"},
        headers=token("sagsbehandler", caseworker_id="sr-anna"),
    )
    assert r.status_code == 403
    leader = deadlines(client, token("teamleder", teams=["nord"]), at=at)
    assert leader and {i["team_id"] for i in leader} == {"nord"}
    r = client.get(
        "/deadlines",
        params={"municipality": "657", "team_id": "syd"},
        headers=token("teamleder", teams=["nord"]),
    )
    assert r.status_code == 403
    for role in ("udvalg", "system"):
        assert (
            client.get("/deadlines", params={"municipality": "657"}, headers=token(role)).status_code == 403
        )
    assert client.get("/deadlines", params={"municipality": "101"}, headers=CHEF).status_code == 403


def test_worklist_audits_each_child_once(client: TestClient) -> None:
    items = deadlines(client, at="2026-11-20T12:00:00+01:00")
    rows = audit_rows(client)
    assert sorted(r.child_id for r in rows) == sorted({i["child_id"] for i in items})
    assert {r.endpoint for r in rows} == {"GET /deadlines"}


@pytest.mark.parametrize(
    "params",
    [
        {"state": "late"},
        {"state": "overdue,nope"},
        {"at": "2026-11-20T25:00:00+01:00"},
        {"limit": "0"},
        {"limit": "x"},
        {"municipality": "6570"},
    ],
)
def test_worklist_bad_parameters_are_422(client: TestClient, params: dict[str, str]) -> None:
    r = client.get("/deadlines", params={"municipality": "657", **params}, headers=CHEF)
    assert r.status_code == 422, r.text


# --------------------------------------------------------------------------- GET /caseload


def caseload(client: TestClient, headers: dict[str, str] = CHEF, **params: str) -> dict[str, Any]:
    r = client.get("/caseload", params={"municipality": "657", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_caseload_now_and_in_the_past(client: TestClient) -> None:
    def counts(at: str, **params: str) -> dict[str, int]:
        return {c["caseworker_id"]: c["open_cases"] for c in caseload(client, at=at, **params)["caseworkers"]}

    assert counts("2026-08-01T12:00:00+02:00") == {}
    assert counts("2026-10-06T12:00:00+02:00") == {"sr-anna": 2, "sr-carl": 1}
    assert counts("2026-11-18T12:00:00+01:00") == {"sr-anna": 1, "sr-bo": 1, "sr-carl": 1}
    assert counts("2026-12-02T12:00:00+01:00") == {"sr-bo": 1}  # dora's and carl's cases closed
    assert counts("2026-10-06T12:00:00+02:00", team_id="nord") == {"sr-carl": 1}
    doc = caseload(client, at="2026-10-06T12:00:00+02:00")
    assert doc["target"] == 25
    assert all(c["target"] == 25 and c["over_target"] is False for c in doc["caseworkers"])


def test_a_configured_municipality_target_applies_until_the_municipality_sets_its_own(tmp_path: Path) -> None:
    """`CASELOAD_TARGETS` (as ledelsesinfo reads it) gives 657 a target of 1 until a chef changes it."""
    with scenario_client(tmp_path, caseload_targets={"657": 1}) as c:
        doc = caseload(c, at="2026-10-06T12:00:00+02:00")
        assert doc["target"] == 1
        over = {w["caseworker_id"]: (w["target"], w["over_target"]) for w in doc["caseworkers"]}
        assert over == {"sr-anna": (1, True), "sr-carl": (1, False)}
        assert c.get("/profiles/657", headers=CHEF).json()["caseload_target"] == 1
        other = c.get("/caseload", params={"municipality": "101"}, headers=token("chef", municipality="101"))
        assert other.json()["target"] == 25  # the default elsewhere


def test_caseload_scope(client: TestClient) -> None:
    at = "2026-10-06T12:00:00+02:00"
    own = caseload(client, token("sagsbehandler", caseworker_id="sr-anna"), at=at)
    assert [(c["caseworker_id"], c["open_cases"]) for c in own["caseworkers"]] == [("sr-anna", 2)]
    leader = caseload(client, token("teamleder", teams=["nord"]), at=at)
    assert [c["caseworker_id"] for c in leader["caseworkers"]] == ["sr-carl"]
    assert (
        client.get(
            "/caseload",
            params={"municipality": "657", "team_id": "syd"},
            headers=token("teamleder", teams=["nord"]),
        ).status_code
        == 403
    )
    assert client.get("/caseload", params={"municipality": "657"}, headers=token("udvalg")).status_code == 403
    assert client.get("/caseload", params={"municipality": "657", "at": "x"}, headers=CHEF).status_code == 422


# --------------------------------------------------------------------------- profiles


def test_profile_defaults_to_herning(client: TestClient) -> None:
    doc = client.get("/profiles/657", headers=CHEF).json()
    assert doc["default"] is True
    assert doc["caseload_target"] == 25
    assert doc["profile"]["placement_first"] == {"amount": 2, "unit": "weeks"}
    assert doc["profile"]["foster_family_after_first_year"] == {"amount": 3, "unit": "months"}
    assert doc["history"] == []


def test_profile_change_is_kept_with_who_and_when_and_applies(client: TestClient) -> None:
    boss = token("chef", sub="chef-hansen")
    r = client.put("/profiles/657", json={"caseload_target": 1}, headers=boss)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["caseload_target"] == 1 and doc["changed_by"] == "chef-hansen" and doc["default"] is False
    r = client.put(
        "/profiles/657",
        json={"profile": {"non_placement_then": {"amount": 2, "unit": "months"}}},
        headers=boss,
    )
    doc = r.json()
    assert doc["profile"]["non_placement_then"] == {"amount": 2, "unit": "months"}
    assert doc["profile"]["placement_first"] == {"amount": 2, "unit": "weeks"}  # untouched fields kept
    assert doc["caseload_target"] == 1  # kept from the previous change
    assert [h["caseload_target"] for h in doc["history"]] == [1, 1]
    assert all(h["changed_by"] == "chef-hansen" for h in doc["history"])
    # the target applies from the moment of the change: now over target, not in the past
    now = caseload(client)
    assert now["target"] == 1
    past = caseload(client, at="2026-11-18T12:00:00+01:00")
    assert past["target"] == 25
    assert client.get("/profiles/167", headers=token("chef", municipality="167")).json()["default"] is True


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"caseload_target": 0},
        {"caseload_target": "many"},
        {"profile": {"no_such_field": 1}},
        {"profile": {"placement_first": {"amount": 2, "unit": "fortnights"}}},
        {"profile": {"placement_first": {"amount": -1, "unit": "weeks"}}},
        {"profile": {"child_conversation_days": "x"}},
        {"profile": "weekly"},
        {"other": 1},
    ],
)
def test_profile_bad_bodies_are_422(client: TestClient, body: Any) -> None:
    assert client.put("/profiles/657", json=body, headers=CHEF).status_code == 422


@pytest.mark.parametrize(
    "headers",
    [
        token("teamleder"),
        token("sagsbehandler"),
        token("udvalg"),
        token("system"),
        token("chef", municipality="167"),
    ],
)
def test_profile_only_for_the_municipalitys_chef(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get("/profiles/657", headers=headers).status_code == 403
    assert client.put("/profiles/657", json={"caseload_target": 5}, headers=headers).status_code == 403
