"""POST /records end to end on a temp-file SQLite event store (spec sections 3, 7, 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from services.intake.app import create_app
from services.intake.config import Settings
from services.intake.domain.records import Rejection, parse_record
from shared.events.catalogue import RECORD_TYPES
from shared.eventstore.schema import events
from shared.eventstore.store import row_to_envelope
from tests.intake.conftest import NOW, auth, clock, example, examples, make_settings


def event_rows(settings: Settings) -> list[Any]:
    engine = create_engine(settings.event_store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(events).order_by(events.c.position)).all()
    finally:
        engine.dispose()


def post(client: TestClient, record: Any, **who: Any) -> Any:
    headers = auth(**(who or {"role": "system"}))
    if isinstance(record, (bytes, str)):
        return client.post(
            "/records", content=record, headers={**headers, "Content-Type": "application/json"}
        )
    return client.post("/records", json=record, headers=headers)


def test_every_record_type_is_accepted(client: TestClient, settings: Settings) -> None:
    responses = {r["record_id"]: post(client, r) for r in examples()}
    for record_id, resp in responses.items():
        assert resp.status_code == 201, (record_id, resp.json())
        body = resp.json()
        assert body["status"] == "accepted" and body["record_id"] == record_id
        assert body["event_id"] and body["position"] >= 1
    assert responses["ex-05"].json()["change"] is False  # first assignment
    assert responses["ex-13"].json()["change"] is True  # sr-anna -> sr-bo
    assert "change" not in responses["ex-01"].json()

    rows = event_rows(settings)
    assert len(rows) == len(examples()) == 26
    assert {r.type for r in rows} == set(RECORD_TYPES)
    envelopes = [row_to_envelope(r) for r in rows]
    by_stream: dict[str, list[int]] = {}
    for env in envelopes:
        assert env.stream_id == f"child-751-{env.child_id}"
        by_stream.setdefault(env.stream_id, []).append(env.version)
    assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values())
    assert len(by_stream) == 3  # two born children and one unborn


def test_event_payloads_carry_resolved_facts(client: TestClient, settings: Settings) -> None:
    for r in examples():
        assert post(client, r).status_code == 201
    envs = {e.record_id: e for e in (row_to_envelope(r) for r in event_rows(settings))}
    received = envs["ex-01"].payload
    assert received.professional is True  # type: ignore[attr-defined]
    assert received.child.sex == "P" and str(received.child.birth_date) == "2019-04-24"  # type: ignore[attr-defined]
    placement = envs["ex-21"].payload
    assert (placement.step, placement.placement) == (5, True)  # type: ignore[attr-defined]
    assert envs["ex-04"].child_id == envs["ex-01"].child_id  # same child, same stream
    assert envs["ex-05"].stream_id == envs["ex-04"].stream_id  # case records follow the case's child
    assert str(envs["ex-01"].occurred_at) == "2026-10-05 08:40:00+02:00"
    assert envs["ex-01"].recorded_at == NOW


def test_unborn_child(client: TestClient, settings: Settings) -> None:
    resp = post(client, example("ex-14"))
    assert resp.status_code == 201
    [row] = event_rows(settings)
    data = json.loads(row.data)
    assert data["child"]["sex"] == "U" and data["child"]["unborn"] is True
    assert data["child"]["expected_birth"] == "2027-02-01" and data["child"]["birth_date"] is None
    assert "1208994321" not in row.data
    assert post(client, example("ex-15")).status_code == 201  # assessed, on the unborn child's stream
    rows = event_rows(settings)
    assert rows[1].stream_id == rows[0].stream_id


def test_duplicate_is_a_no_op(client: TestClient, settings: Settings) -> None:
    first = post(client, example("ex-01"))
    again = post(client, example("ex-01"))
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "record_id": "ex-01", "position": first.json()["position"]}
    assert len(event_rows(settings)) == 1


def test_same_content_written_differently_is_still_a_duplicate(client: TestClient) -> None:
    assert post(client, example("ex-01")).status_code == 201
    same = example("ex-01")
    same["data"]["child"]["cpr"] = "240419-4012"
    same["occurred_at"] = "2026-10-05T06:40:00Z"  # the same instant
    resp = post(client, json.dumps(same, indent=2, sort_keys=True))
    assert resp.status_code == 200 and resp.json()["status"] == "duplicate"


def test_same_record_id_other_content_is_a_conflict(client: TestClient, settings: Settings) -> None:
    assert post(client, example("ex-01")).status_code == 201
    other = example("ex-01")
    other["data"]["severity"] = "akut"
    resp = post(client, other)
    assert resp.status_code == 409
    body = resp.json()
    assert body["status"] == "conflict" and body["field"] == "record_id"
    assert "different content" in body["reason"]
    assert len(event_rows(settings)) == 1
    other_child = example("ex-01")
    other_child["data"]["child"]["cpr"] = "2404194013"
    resp = post(client, other_child)
    assert resp.status_code == 409
    assert "2404194013" not in resp.text and "2404194012" not in resp.text


def test_the_same_record_id_in_another_municipality_is_another_record(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), clock=clock)
    with TestClient(app) as client:
        assert post(client, example("ex-01")).status_code == 201
        elsewhere = example("ex-01")
        elsewhere["municipality"] = "657"
        assert post(client, elsewhere, role="system", municipality="657").status_code == 201


def test_malformed_json_is_a_readable_422(client: TestClient) -> None:
    resp = post(client, b'{"record_id": "x", ')
    assert resp.status_code == 422
    body = resp.json()
    assert body["status"] == "rejected" and body["field"] == "body"
    assert body["reason"].startswith("body: not valid JSON")
    resp = post(client, b"\xff\xfe{}")
    assert resp.status_code == 422 and resp.json()["field"] == "body"


def test_invalid_record_is_a_422_naming_the_field(client: TestClient, settings: Settings) -> None:
    bad = example("ex-01")
    bad["data"]["notifier"] = "42"
    resp = post(client, bad)
    assert resp.status_code == 422
    body = resp.json()
    assert body == {
        "status": "rejected",
        "record_id": "ex-01",
        "field": "data.notifier",
        "reason": body["reason"],
    }
    assert body["reason"].startswith("data.notifier: unknown notifier code '42'")
    assert event_rows(settings) == []


def test_missing_reference_is_a_422(client: TestClient) -> None:
    resp = post(client, example("ex-05"))
    assert resp.status_code == 422
    assert resp.json()["field"] == "data.case_id"
    assert "no case 'S-2001'" in resp.json()["reason"]


def test_more_than_24_hours_ahead_uses_the_injected_clock(client: TestClient) -> None:
    record = example("ex-03")
    record["occurred_at"] = "2026-11-24T12:00:01+00:00"  # NOW + 24 h + 1 s
    assert post(client, example("ex-01")).status_code == 201
    resp = post(client, record)
    assert resp.status_code == 422 and resp.json()["field"] == "occurred_at"
    record["occurred_at"] = "2026-11-24T12:00:00+00:00"
    assert post(client, record).status_code == 201


def test_records_cannot_tie_one_childs_case_to_another_childs_underretning(
    client: TestClient, settings: Settings
) -> None:
    """A case is about one child: child B's underretning naming child A's case, a case of A opened
    on B's underretning, and a conversation naming A's case and B's underretning are all refused,
    with the field and why, and nothing is appended."""
    for rid in ("ex-01", "ex-04", "ex-16"):  # A's underretning and case, B's underretning
        assert post(client, example(rid)).status_code == 201
    before = len(event_rows(settings))
    on_a_case = {**example("ex-16"), "record_id": "x-1"}
    on_a_case["data"] = {**on_a_case["data"], "underretning_id": "UR-0991", "case_id": "S-2001"}
    a_case_on_b = {**example("ex-04"), "record_id": "x-2"}
    a_case_on_b["data"] = {**a_case_on_b["data"], "case_id": "S-2002", "underretning_id": "UR-0990"}
    talk = {**example("ex-07"), "record_id": "x-3"}
    talk["data"] = {**talk["data"], "case_id": "S-2001", "underretning_id": "UR-0990"}
    expected = {
        "x-1": ("data.case_id", "case 'S-2001' is about another child"),
        "x-2": ("data.underretning_id", "underretning 'UR-0990' is about another child"),
        "x-3": ("data.underretning_id", "underretning 'UR-0990' is about another child than case 'S-2001'"),
    }
    for record in (on_a_case, a_case_on_b, talk):
        resp = post(client, record)
        assert resp.status_code == 422, resp.json()
        field, words = expected[record["record_id"]]
        assert resp.json()["field"] == field and words in resp.json()["reason"]
    assert len(event_rows(settings)) == before


# --- business rules -------------------------------------------------------------------------------


def _open_case(client: TestClient) -> None:
    for rid in ("ex-01", "ex-04", "ex-05"):
        assert post(client, example(rid)).status_code == 201


def test_one_open_case_per_child(client: TestClient) -> None:
    _open_case(client)
    second = example("ex-04")
    second.update(record_id="again-1")
    second["data"].update(case_id="S-2002")
    second["data"].pop("underretning_id")
    resp = post(client, second)
    assert resp.status_code == 422
    assert (
        resp.json()["field"] == "data.child" and "already has an open case 'S-2001'" in resp.json()["reason"]
    )
    close = {**example("ex-26"), "record_id": "close-1", "occurred_at": "2026-11-01T10:00:00+01:00"}
    close["data"] = {"case_id": "S-2001"}
    assert post(client, close).status_code == 201
    second["occurred_at"] = "2026-11-10T10:00:00+01:00"
    assert post(client, second).status_code == 201


def test_caseworker_assigned_again_is_accepted_without_change(client: TestClient, settings: Settings) -> None:
    _open_case(client)
    same = {**example("ex-05"), "record_id": "again-anna", "occurred_at": "2026-10-20T09:00:00+02:00"}
    resp = post(client, same)
    assert resp.status_code == 201 and resp.json()["change"] is False
    assert [r.type for r in event_rows(settings)].count("CaseworkerAssigned") == 2


def test_measures_cannot_start_on_closed_cases_or_end_twice(client: TestClient) -> None:
    _open_case(client)
    assert post(client, example("ex-11")).status_code == 201
    end = {**example("ex-25"), "record_id": "end-1"}
    end["data"] = {"case_id": "S-2001", "measure_id": "I-3001"}
    assert post(client, end).status_code == 201
    twice = {**end, "record_id": "end-2", "occurred_at": "2026-11-21T10:00:00+01:00"}
    resp = post(client, twice)
    assert resp.status_code == 422 and "already ended" in resp.json()["reason"]
    close = {**example("ex-26"), "record_id": "close-1", "data": {"case_id": "S-2001"}}
    assert post(client, close).status_code == 201
    start = {**example("ex-11"), "record_id": "start-2", "occurred_at": "2026-11-22T09:00:00+01:00"}
    start["data"] = {**start["data"], "measure_id": "I-3002"}
    resp = post(client, start)
    assert resp.status_code == 422 and "cannot start on a closed case" in resp.json()["reason"]
    again = {**close, "record_id": "close-2", "occurred_at": "2026-11-22T12:00:00+01:00"}
    resp = post(client, again)
    assert resp.status_code == 422 and "already closed" in resp.json()["reason"]


# --- limits, auth --------------------------------------------------------------------------------


def test_oversize_body_is_413(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, max_body_bytes=2048), clock=clock)
    with TestClient(app) as client:
        record = example("ex-01")
        record["data"]["team_id"] = "x" * 3000
        resp = post(client, record)
        assert resp.status_code == 413
        assert resp.json()["field"] == "body" and "larger than 2048 bytes" in resp.json()["reason"]

        def chunks() -> Any:  # no Content-Length: the limit holds on the stream too
            yield json.dumps(record)[:1500].encode()
            yield json.dumps(record)[1500:].encode()

        resp = client.post("/records", content=chunks(), headers=auth(role="system"))
        assert resp.status_code == 413
        assert post(client, example("ex-01")).status_code == 201


def test_authentication_is_required(client: TestClient) -> None:
    assert client.post("/records", json=example("ex-01")).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert client.post("/records", json=example("ex-01"), headers=bad).status_code == 401


def test_only_writers_of_the_records_municipality(client: TestClient, settings: Settings) -> None:
    assert post(client, example("ex-01"), role="udvalg").status_code == 403
    resp = post(client, example("ex-01"), role="system", municipality="657")
    assert resp.status_code == 403 and "outside your credentials" in resp.json()["detail"]
    assert event_rows(settings) == []
    assert post(client, example("ex-01"), role="chef").status_code == 201
    by_leader = {**example("ex-16")}
    assert post(client, by_leader, role="teamleder", teams=["nord"]).status_code == 201
    by_worker = {**example("ex-17")}
    assert (
        post(client, by_worker, role="sagsbehandler", teams=["nord"], caseworker_id="sr-carl").status_code
        == 201
    )
    assert len(event_rows(settings)) == 3


def test_health_and_ready_need_no_token(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    resp = client.get("/ready")
    assert resp.status_code == 200 and resp.json()["status"] == "ready"


def test_ready_is_503_without_tables(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, auto_create_tables=False), clock=clock)
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503


# --- OpenAPI ---------------------------------------------------------------------------------------


def test_openapi_documents_every_record_type_with_an_example(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/records"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Record"}
    union = doc["components"]["schemas"]["Record"]
    refs = [item["$ref"].rsplit("/", 1)[1] for item in union["oneOf"]]
    assert sorted(refs) == sorted(f"{t}Record" for t in RECORD_TYPES)
    assert union["discriminator"]["propertyName"] == "type"
    for name in refs:
        assert name in doc["components"]["schemas"]
        assert doc["components"]["schemas"][name]["additionalProperties"] is False
    assert set(body["examples"]) == set(RECORD_TYPES)
    for record_type, ex in body["examples"].items():
        assert ex["value"]["type"] == record_type
        assert not isinstance(parse_record(ex["value"], now=NOW), Rejection)
    bulk = doc["paths"]["/records/bulk"]["post"]["requestBody"]["content"]
    assert "application/x-ndjson" in bulk
    assert len(bulk["application/x-ndjson"]["example"].splitlines()) == 26
    responses = doc["paths"]["/records"]["post"]["responses"]
    assert {"200", "201", "409", "413", "422"} <= set(responses)
    assert "/children/{child_id}/forget" in doc["paths"] and "/children/{child_id}/cpr" in doc["paths"]
    unborn = doc["components"]["schemas"]["UnbornChild"]
    assert set(unborn["required"]) == {"unborn", "expected_birth", "mother_cpr"}
