"""A CPR number must not ride along in an id or a text field, and ids may not hold NUL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.intake.conftest import auth, example


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("record_id",), "dubu-0101154123"),
        (("record_id",), "x 010115-4123 y"),
        (("data", "underretning_id"), "UR-2404194012"),
        (("data", "team_id"), "team 3112994321"),
    ],
)
def test_cpr_shaped_values_are_refused_without_echo(
    client: TestClient, path: tuple[str, ...], value: str
) -> None:
    record = example("ex-01")
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    response = client.post("/records", json=record, headers=auth(role="system"))
    assert response.status_code == 422
    assert "CPR" in response.text
    digits = value.replace("-", "")
    assert value not in response.text and digits[-10:] not in response.text


@pytest.mark.parametrize("value", ["dubu-2026-000123", "S-9999999999", "1234567890", "ref-3213991234"])
def test_ids_that_cannot_be_a_cpr_number_are_fine(client: TestClient, value: str) -> None:
    record = example("ex-01")
    record["record_id"] = value
    response = client.post("/records", json=record, headers=auth(role="system"))
    assert response.status_code == 201, response.text


def test_a_timestamp_before_1900_is_refused(client: TestClient) -> None:
    record = example("ex-01")
    record["occurred_at"] = "0001-01-01T00:30:00+01:00"
    response = client.post("/records", json=record, headers=auth(role="system"))
    assert response.status_code == 422 and "1900" in response.text
