"""Every generated record is accepted by the real intake service (POST /records/bulk, the same
service layer as `python -m services.intake import`), also when many lines arrive late and out of
order; and the follow-up and ledelsesinfo projections take every event without dead letters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.intake.app import create_app
from services.intake.config import Settings
from shared.mint_token import mint_token
from synth.clock import add_years
from synth.generator import Config, municipality_lines
from tests.e2e.stack import running_stack

SECRET = "synth-test-secret-long-enough-for-hs256-0123456789"


def bulk(client: TestClient, municipality: str, lines: list[str]) -> dict[str, Any]:
    token = mint_token(role="system", municipality=municipality, secret=SECRET)
    resp = client.post(
        "/records/bulk",
        content=("\n".join(lines) + "\n").encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


@pytest.mark.parametrize("late_share", [0.03, 0.25])
def test_intake_accepts_every_generated_record(tmp_path: Path, late_share: float) -> None:
    # a few hundred children in one municipality, the year up to now (an export taken now, as in the
    # demo), with its warm-up history
    now = datetime.now(UTC).replace(microsecond=0)
    start = add_years(now.date(), -1)
    cfg = Config(seed=31, start=start, municipalities=("657",), scale=0.12, late_share=late_share, until=now)
    lines = list(municipality_lines("657", cfg)[0])
    assert max(datetime.fromisoformat(line.split('"occurred_at": "')[1][:25]) for line in lines) < now
    children = {line.split('"child": ', 1)[1][:40] for line in lines if '"UnderretningReceived"' in line}
    assert len(children) > 200
    settings = Settings(
        environment="test",
        event_store_url=f"sqlite:///{tmp_path}/i.db",
        transport="sql",
        auto_create_tables=True,
        auth_jwt_secret=SECRET,
    )
    with TestClient(create_app(settings)) as client:
        doc = bulk(client, "657", lines)
        rejected = [r for r in doc["results"] if r["status"] != "accepted"]
        assert rejected == [], rejected[:5]
        assert doc["accepted"] == len(lines) and doc["rejected"] == 0
        again = bulk(client, "657", lines)  # stable record ids: the same file again is all duplicates
        assert again["duplicate"] == len(lines) and again["accepted"] == 0


def test_the_projections_take_every_event(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    start = date.today() - timedelta(days=380)
    cfg = Config(seed=32, start=start, municipalities=("167",), scale=0.08, warmup_years=1, late_share=0.1)
    lines = list(municipality_lines("167", cfg)[0])
    with running_stack("sql", tmp_path, request) as stack:
        resp = stack.intake.post(
            "/records/bulk",
            content=("\n".join(lines) + "\n").encode(),
            headers={**stack.headers("system", "167"), "Content-Type": "application/x-ndjson"},
        )
        assert resp.status_code == 200 and resp.json()["rejected"] == 0
        stack.sync()
        assert [w.dead_lettered for w in stack.workers] == [0, 0]
        assert all(w.processed >= len(lines) for w in stack.workers)
        week = (cfg.end - timedelta(days=14)).isocalendar()
        report = stack.ledelsesinfo.get(
            "/reports/weekly",
            params={"municipality": "167", "week": f"{week.year}-W{week.week:02d}"},
            headers=stack.headers("chef", "167"),
        )
        assert report.status_code == 200, report.text
        figures = report.json()["figures"]
        assert figures["open_cases"] > 0
        caseload = stack.followup.get(
            "/caseload", params={"municipality": "167"}, headers=stack.headers("chef", "167")
        )
        assert caseload.status_code == 200
        assert len(caseload.json()["caseworkers"]) > 0
