"""Fixtures of the intake tests: a temp-file SQLite event store, the app, tokens, example records."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from services.intake.adapters.schema import create_tables
from services.intake.app import create_app
from services.intake.config import Settings
from services.intake.examples import EXAMPLE_RECORDS
from services.intake.service import IntakeService
from shared.db import make_engine

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "intake-test-secret-long-enough-for-hs256-0123456789"
MUNICIPALITY = "751"  # the spec's example records are Horsens'


def clock() -> datetime:
    return NOW


def examples() -> list[dict[str, Any]]:
    """Fresh copies of the spec's 26 example records (all 16 types, municipality 751)."""
    return copy.deepcopy(list(EXAMPLE_RECORDS))


def example(record_id: str) -> dict[str, Any]:
    return next(r for r in examples() if r["record_id"] == record_id)


def ndjson(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "event_store_url": f"sqlite:///{tmp_path / 'intake.db'}",
        "transport": "sql",
        "auth_jwt_secret": SECRET,
        "cpr_pseudonym_key": "test-pseudonym-key-0123456789abcdef",
        "cpr_master_key": "test-master-key-0123456789abcdef",
        "auto_create_tables": True,
    }
    values.update(overrides)
    return Settings(**values)


def token(
    role: str = "system",
    municipality: str = MUNICIPALITY,
    teams: list[str] | None = None,
    caseworker_id: str | None = None,
    sub: str | None = None,
) -> str:
    claims: dict[str, Any] = {
        "sub": sub or f"{role}-user",
        "role": role,
        "municipality": municipality,
        "exp": datetime.now(UTC) + timedelta(hours=24),
    }
    if teams is not None:
        claims["teams"] = teams
    if caseworker_id is not None:
        claims["caseworker_id"] = caseworker_id
    return jwt.encode(claims, SECRET, algorithm="HS256")


def auth(**kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**kwargs)}"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The embedded default (SQLite, SQL log) and production's store (PostgreSQL, with outbox rows)."""
    if request.param == "sqlite":
        return make_settings(tmp_path)
    return make_settings(
        tmp_path, event_store_url=request.getfixturevalue("fresh_pg_url"), transport="kafka", run_relay=False
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.event_store_url)
    create_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def service(engine: Engine, settings: Settings) -> IntakeService:
    return IntakeService(engine, settings, clock=clock)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def system_headers() -> dict[str, str]:
    return auth(role="system")


ClientFactory = Callable[..., TestClient]
