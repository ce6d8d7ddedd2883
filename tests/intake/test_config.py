"""Intake settings: secrets refused in production, municipality measure types from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import create_engine, select

from services.intake.app import create_app
from services.intake.config import DEV_CPR_MASTER_KEY, Settings
from shared.eventstore.schema import events
from tests.intake.conftest import SECRET, auth, clock, example, make_settings

GOOD = {
    "environment": "production",
    "auth_jwt_secret": SECRET,
    "cpr_pseudonym_key": "p" * 40,
    "cpr_master_key": "m" * 40,
}


def test_defaults() -> None:
    s = Settings(environment="test")
    assert (s.port, s.max_body_bytes, s.max_line_bytes, s.run_relay) == (8001, 1024 * 1024, 256 * 1024, True)


def test_production_needs_real_cpr_keys() -> None:
    assert Settings(**GOOD).environment == "production"
    for field, value in (
        ("cpr_master_key", DEV_CPR_MASTER_KEY),
        ("cpr_pseudonym_key", "change-me"),
        ("cpr_master_key", "short"),
    ):
        with pytest.raises(ValidationError, match=field.upper()):
            Settings(**{**GOOD, field: value})
    with pytest.raises(ValidationError, match="must differ"):
        Settings(**{**GOOD, "cpr_master_key": "p" * 40})
    assert Settings(**{**GOOD, "environment": "development", "cpr_master_key": "x"}).cpr_master_key == "x"


def test_measure_types_extra_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEASURE_TYPES_EXTRA", '{"657": {"mst": {"step": 3, "placement": false}}}')
    s = Settings(environment="test")  # type: ignore[call-arg]
    assert s.measure_types("657")["mst"].step == 3
    assert "mst" not in s.measure_types("751")
    assert s.measure_types("751")["plejefamilie"].placement is True


@pytest.mark.parametrize(
    "extra",
    [
        {"65": {"x": {"step": 1, "placement": False}}},
        {"657": {"x": {"step": 9, "placement": False}}},
        {"657": {"x": {"step": 2, "placement": "no"}}},
    ],
)
def test_bad_measure_types_are_refused(extra: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(environment="test", measure_types_extra=extra)


def test_a_municipality_type_flows_into_the_event(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, measure_types_extra={"751": {"mst": {"step": 3, "placement": False}}})
    with TestClient(create_app(settings, clock=clock)) as client:
        for rid in ("ex-01", "ex-04"):
            assert client.post("/records", json=example(rid), headers=auth()).status_code == 201
        start = example("ex-11")
        start["data"]["measure_type"] = "mst"
        assert client.post("/records", json=start, headers=auth()).status_code == 201
    engine = create_engine(settings.event_store_url)
    with engine.connect() as conn:
        data = conn.execute(select(events.c.data).where(events.c.record_id == "ex-11")).scalar_one()
    engine.dispose()
    assert '"step":3' in data and '"placement":false' in data and '"measure_type":"mst"' in data
