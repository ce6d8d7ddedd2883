"""The HTTP API with FastAPI's TestClient: events fed through the projection on a temp-file SQLite
database, HS256 tokens minted with PyJWT."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from services.ledelsesinfo import tables
from services.ledelsesinfo.app import create_app
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.projection import LedelsesinfoProjection
from tests.ledelsesinfo.factory import Child
from tests.ledelsesinfo.test_projection import rich_events

SECRET = "test-secret-ledelsesinfo"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        event_store_url=f"sqlite:///{tmp_path / 'api.db'}",
        auth_jwt_secret=SECRET,
        run_worker=False,
        environment="test",
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    tables.metadata.create_all(app.state.engine)
    app.state.clock = lambda: datetime(2027, 3, 1, tzinfo=UTC)
    with app.state.engine.begin() as conn:
        LedelsesinfoProjection().apply(conn, rich_events())
    with TestClient(app) as c:
        yield c


def token(
    role: str,
    municipality: str = "657",
    teams: list[str] | None = None,
    caseworker_id: str | None = None,
    secret: str = SECRET,
) -> dict[str, str]:
    claims: dict[str, Any] = {
        "sub": f"{role}-user",
        "role": role,
        "municipality": municipality,
        "exp": datetime.now(UTC) + timedelta(hours=24),  # minted at import: outlive a slow suite
    }
    if teams is not None:
        claims["teams"] = teams
    if caseworker_id is not None:
        claims["caseworker_id"] = caseworker_id
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


CHEF = token("chef")
UDVALG = token("udvalg")
LEADER_SYD = token("teamleder", teams=["syd"])


def test_health_and_ready_need_no_token(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").status_code == 200
    assert "/reports/weekly" in client.get("/openapi.json").json()["paths"]


def test_missing_or_bad_token_is_401(client: TestClient) -> None:
    assert (
        client.get("/reports/weekly", params={"municipality": "657", "week": "2026-W47"}).status_code == 401
    )
    bad = token("chef", secret="another-secret")
    r = client.get("/reports/weekly", params={"municipality": "657", "week": "2026-W47"}, headers=bad)
    assert r.status_code == 401


def test_weekly_json(client: TestClient) -> None:
    r = client.get("/reports/weekly", params={"municipality": "657", "week": "2026-W47"}, headers=CHEF)
    assert r.status_code == 200
    doc = r.json()
    assert doc["municipality"] == "657" and doc["period"] == "2026-W47"
    assert doc["generated_at"].startswith("2027-03-01")
    # W47 in rich_events: ua2 (Fri 20 Nov) and uc1 (Sun 22 Nov 23:30)
    assert doc["figures"]["underretninger_received"] == 2
    assert doc["figures"]["caseworkers_behind"] != []


def test_weekly_team_and_caseworker_scopes(client: TestClient) -> None:
    p = {"municipality": "657", "week": "2026-W47"}
    team = client.get("/reports/weekly", params={**p, "team_id": "syd"}, headers=LEADER_SYD)
    assert team.status_code == 200 and team.json()["scope"]["team_id"] == "syd"
    other = client.get("/reports/weekly", params={**p, "team_id": "nord"}, headers=LEADER_SYD)
    assert other.status_code == 403
    # a team leader asking for a caseworker without a team: resolved to the caseworker's team
    cw = client.get("/reports/weekly", params={**p, "caseworker_id": "bo"}, headers=LEADER_SYD)
    assert cw.status_code == 200
    assert cw.json()["scope"] == {"level": "caseworker", "team_id": "syd", "caseworker_id": "bo"}
    assert cw.json()["figures"]["open_cases"] == 1  # sa, held by bo since 17 Nov
    # a caseworker sees their own figures, and no one else's
    bo = token("sagsbehandler", teams=["syd"], caseworker_id="bo")
    own = client.get("/reports/weekly", params=p, headers=bo)
    assert own.status_code == 200 and own.json()["scope"]["caseworker_id"] == "bo"
    assert client.get("/reports/weekly", params={**p, "caseworker_id": "anna"}, headers=bo).status_code == 403


def test_other_municipality_and_system_are_403(client: TestClient) -> None:
    p = {"municipality": "101", "week": "2026-W45"}
    assert client.get("/reports/weekly", params=p, headers=CHEF).status_code == 403
    system = token("system")
    assert (
        client.get(
            "/reports/weekly", params={"municipality": "657", "week": "2026-W45"}, headers=system
        ).status_code
        == 403
    )


def test_bad_period_is_422(client: TestClient) -> None:
    assert (
        client.get(
            "/reports/weekly", params={"municipality": "657", "week": "2025-W53"}, headers=CHEF
        ).status_code
        == 422
    )
    assert (
        client.get(
            "/reports/monthly", params={"municipality": "657", "month": "2026-13"}, headers=CHEF
        ).status_code
        == 422
    )
    assert (
        client.get(
            "/reports/weekly",
            params={"municipality": "657", "week": "2026-W47", "format": "pdf"},
            headers=CHEF,
        ).status_code
        == 422
    )


def test_monthly_json_csv_xlsx(client: TestClient) -> None:
    p = {"municipality": "657", "month": "2026-11"}
    doc = client.get("/reports/monthly", params=p, headers=CHEF).json()
    assert doc["figures"]["placed_children_by_type"]["plejefamilie"] == 0  # mb ended 20 Nov
    csv_r = client.get("/reports/monthly", params={**p, "format": "csv"}, headers=CHEF)
    assert csv_r.status_code == 200 and csv_r.headers["content-type"].startswith("text/csv")
    assert "Helårspersoner pr. indsatstype" in csv_r.text
    assert "attachment" in csv_r.headers["content-disposition"]
    x = client.get("/reports/monthly", params={**p, "format": "xlsx"}, headers=CHEF)
    assert x.status_code == 200
    wb = load_workbook(io.BytesIO(x.content))
    assert "Oversigt" in wb.sheetnames and "Helårspersoner" in wb.sheetnames


def test_udvalg_sees_suppressed_municipality_figures_only(client: TestClient) -> None:
    p = {"municipality": "657", "week": "2026-W47"}
    r = client.get("/reports/weekly", params=p, headers=UDVALG)
    assert r.status_code == 200
    f = r.json()["figures"]
    assert f["underretninger_received"] == {"value": None, "suppressed": True}  # 2
    assert "caseworkers_behind" not in f
    assert client.get("/reports/weekly", params={**p, "team_id": "syd"}, headers=UDVALG).status_code == 403
    assert (
        client.get(
            "/reports/monthly",
            params={"municipality": "657", "month": "2026-11", "team_id": "syd"},
            headers=UDVALG,
        ).status_code
        == 403
    )
    # the chef sees the exact value
    assert (
        client.get("/reports/weekly", params=p, headers=CHEF).json()["figures"]["underretninger_received"]
        == 2
    )


def test_compare_and_population(client: TestClient) -> None:
    p = {"month": "2026-11", "figure": "underretninger_by_severity_12m"}
    assert client.get("/reports/compare", params=p, headers=LEADER_SYD).status_code == 403
    assert (
        client.put("/population/657", json={"year": 2026, "children": 20000}, headers=LEADER_SYD).status_code
        == 403
    )
    assert (
        client.put("/population/101", json={"year": 2026, "children": 100000}, headers=CHEF).status_code
        == 403
    )  # only one's own municipality
    r = client.put("/population/657", json={"year": 2026, "children": 20000}, headers=CHEF)
    assert r.status_code == 200
    doc = client.get("/reports/compare", params=p, headers=CHEF).json()
    rows = {row["municipality"]: row for row in doc["municipalities"]}
    assert set(rows) == {"101", "657"}
    # 657, own: exact. Dec 2025 .. Nov 2026: ua1, ua2, uc1 bekymring (3), ub1 akut (1)
    assert rows["657"]["value"]["bekymring"] == 3 and rows["657"]["value"]["akut"] == 1
    assert rows["657"]["per_1000_children"]["bekymring"] == pytest.approx(3 * 1000 / 20000)
    assert rows["657"]["children"] == 20000 and rows["657"]["population_year"] == 2026
    # 101: no population loaded -> no rate; another municipality's small counts are suppressed
    assert rows["101"]["per_1000_children"] is None
    assert rows["101"]["value"]["alvorlig"] == {"value": None, "suppressed": True}
    assert (
        client.get(
            "/reports/compare", params={"month": "2026-11", "figure": "open_cases"}, headers=CHEF
        ).status_code
        == 422
    )
    assert client.get("/population", headers=CHEF).json()["population"] == [
        {"municipality": "657", "year": 2026, "children": 20000}
    ]


def test_late_record_via_api(client: TestClient) -> None:
    """A backfill reaching the projection changes the past week's report."""
    p = {"municipality": "657", "week": "2026-W47"}
    before = client.get("/reports/weekly", params=p, headers=CHEF).json()["figures"][
        "underretninger_received"
    ]
    late = Child("late")
    late.received("ul", "2026-11-18 09:00")
    app: Any = client.app
    with app.state.engine.begin() as conn:
        LedelsesinfoProjection().apply(conn, late.events)
    after = client.get("/reports/weekly", params=p, headers=CHEF).json()["figures"]["underretninger_received"]
    assert after == before + 1
