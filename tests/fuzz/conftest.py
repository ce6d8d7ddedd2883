"""Fixtures of the fuzz tests: intake on both stores (SQLite, PostgreSQL with outbox rows)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.intake.app import create_app
from services.intake.config import Settings
from shared.eventstore.schema import events, outbox
from tests.intake.conftest import clock, make_settings

SMALL_BODY = 64 * 1024
SMALL_LINE = 16 * 1024


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    limits = {"max_body_bytes": SMALL_BODY, "max_line_bytes": SMALL_LINE}
    if request.param == "sqlite":
        return make_settings(tmp_path, **limits)
    return make_settings(
        tmp_path,
        event_store_url=request.getfixturevalue("fresh_pg_url"),
        transport="kafka",
        run_relay=False,
        **limits,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # server exceptions become 500 responses, as a real client would see them
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as c:
        yield c


def stored(client: TestClient) -> tuple[int, int]:
    """(events, outbox rows) in the event store behind the client's app."""
    with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        n_events = conn.execute(select(func.count()).select_from(events)).scalar_one()
        n_outbox = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    return int(n_events), int(n_outbox)
