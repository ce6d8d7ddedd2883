"""Records in through intake, out through follow-up and ledelsesinfo, on both transports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from sqlalchemy import select

from shared.db import make_engine
from shared.eventstore.schema import events
from tests.e2e.stack import Stack, running_stack

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples" / "records.ndjson"
CPR_CHILD_A, CPR_CHILD_B, CPR_CHILD_C = "0101154123", "0202164124", "0303174125"


@pytest.fixture(params=["sql", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.postgres])])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(request.param, tmp_path, request) as s:
        yield s


def rec(rid: str, type_: str, at: str, **data: Any) -> dict[str, Any]:
    return {"record_id": rid, "type": type_, "municipality": "657", "occurred_at": at, "data": data}


def _kafka_payloads(stack: Stack) -> list[bytes]:
    consumer = KafkaConsumer(
        stack.topic,
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=3000,
    )
    values = [r.value for r in consumer]
    consumer.close()
    return values


def test_the_spec_examples_flow_through_every_service(stack: Stack) -> None:
    lines = EXAMPLES.read_text().splitlines()
    cprs = {json.loads(line)["data"].get("child", {}).get("cpr") for line in lines} - {None}
    cprs |= {"1208994321"}  # the unborn child's mother
    body = "\n".join(lines) + "\n"
    headers = {**stack.headers("system", "751"), "Content-Type": "application/x-ndjson"}
    first = stack.intake.post("/records/bulk", content=body.encode(), headers=headers).json()
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (26, 0, 0), first
    again = stack.intake.post("/records/bulk", content=body.encode(), headers=headers).json()
    assert (again["accepted"], again["duplicate"], again["rejected"]) == (0, 26, 0)
    stack.sync()

    chef = stack.headers("chef", "751")
    case = stack.followup.get("/cases/S-2001", params={"municipality": "751"}, headers=chef)
    assert case.status_code == 200, case.text
    body_case = case.json()
    assert body_case["caseworker_id"] == "sr-bo"
    assert body_case["team_id"] == "syd"
    assert [m["measure_id"] for m in body_case["running_measures"]] == ["I-3001"]
    closed = stack.followup.get("/cases/S-1990", params={"municipality": "751"}, headers=chef).json()
    assert closed["status"] == "closed"

    report = stack.ledelsesinfo.get(
        "/reports/monthly", params={"municipality": "751", "month": "2026-11"}, headers=chef
    )
    assert report.status_code == 200, report.text
    figures = report.json()["figures"]
    # Received in the 12 months to November 2026: UR-0990 (notifier 6), UR-1001 (3), UR-1002 (4).
    by_notifier = {k: v for k, v in figures["underretninger_by_notifier_12m"].items() if v}
    assert by_notifier == {"3": 1, "4": 1, "6": 1}

    # No CPR number in the event log, nor on Kafka.
    with make_engine(stack.intake.app.state.settings.event_store_url).connect() as conn:
        stored = " ".join(r.data for r in conn.execute(select(events.c.data)).all())
    assert stored and not any(c in stored or f"{c[:6]}-{c[6:]}" in stored for c in cprs)
    if stack.transport == "kafka":
        payloads = _kafka_payloads(stack)
        assert len(payloads) >= 26
        blob = b" ".join(payloads).decode()
        assert not any(c in blob or f"{c[:6]}-{c[6:]}" in blob for c in cprs)


def _scenario() -> list[dict[str, Any]]:
    return [
        # Child A: an underretning from a school on Thursday 1 October, a case for caseworker sr-a.
        rec(
            "r1",
            "UnderretningReceived",
            "2026-10-01T10:00:00+02:00",
            underretning_id="U1",
            child={"cpr": CPR_CHILD_A},
            notifier="2",
            reasons=["barn_skole"],
            severity="bekymring",
            team_id="syd",
        ),
        rec(
            "r2",
            "CaseOpened",
            "2026-10-01T11:00:00+02:00",
            case_id="S1",
            child={"cpr": CPR_CHILD_A},
            team_id="syd",
            underretning_id="U1",
        ),
        rec("r3", "CaseworkerAssigned", "2026-10-01T11:05:00+02:00", case_id="S1", caseworker_id="sr-a"),
        rec(
            "r4",
            "InvestigationStarted",
            "2026-10-01T12:00:00+02:00",
            case_id="S1",
            kind="boernefaglig_undersoegelse",
        ),
        # Child B: an older case of sr-a, everything met.
        rec(
            "r5",
            "CaseOpened",
            "2026-09-01T09:00:00+02:00",
            case_id="S2",
            child={"cpr": CPR_CHILD_B},
            team_id="syd",
        ),
        rec("r6", "CaseworkerAssigned", "2026-09-01T09:05:00+02:00", case_id="S2", caseworker_id="sr-a"),
        # Child C: a case of sr-b that was closed before the moment we look at.
        rec(
            "r7",
            "CaseOpened",
            "2026-09-01T09:00:00+02:00",
            case_id="S3",
            child={"cpr": CPR_CHILD_C},
            team_id="syd",
        ),
        rec("r8", "CaseworkerAssigned", "2026-09-01T09:05:00+02:00", case_id="S3", caseworker_id="sr-b"),
        rec("r9", "CaseClosed", "2026-09-20T09:00:00+02:00", case_id="S3"),
    ]


def test_worklist_shows_exactly_the_overdue_and_due_soon_items_and_caseload_matches(stack: Stack) -> None:
    records = _scenario()
    # Arrival order must not matter: send the file backwards (references resolve within the bulk).
    result = stack.bulk(list(reversed(records))).json()
    assert result["accepted"] == len(records), result
    stack.sync()

    at = "2026-10-05T12:00:00+02:00"
    worker = stack.headers("sagsbehandler", teams=("syd",), caseworker_id="sr-a")
    worklist = stack.followup.get(
        "/deadlines",
        params={"municipality": "657", "caseworker_id": "sr-a", "state": "overdue,due_soon", "at": at},
        headers=worker,
    )
    assert worklist.status_code == 200, worklist.text
    items = {(d["deadline"], d["state"], d["case_id"]) for d in worklist.json()["deadlines"]}
    # acute_assessment: due 2 Oct 10:00, never assessed -> overdue.
    # receipt: the 6th working day after Thu 1 Oct is Fri 9 Oct -> due within 7 days -> due_soon.
    # investigation: due 1 Feb 2027 -> upcoming, so not listed.
    assert items == {("acute_assessment", "overdue", "S1"), ("receipt", "due_soon", "S1")}

    caseload = stack.followup.get(
        "/caseload",
        params={"municipality": "657", "team_id": "syd", "at": at},
        headers=stack.headers("teamleder", teams=("syd",)),
    )
    assert caseload.status_code == 200, caseload.text
    by_worker = {c["caseworker_id"]: c for c in caseload.json()["caseworkers"]}
    assert by_worker["sr-a"]["open_cases"] == 2
    assert by_worker["sr-a"]["target"] == 25 and by_worker["sr-a"]["over_target"] is False
    assert by_worker.get("sr-b", {"open_cases": 0})["open_cases"] == 0

    weekly = stack.ledelsesinfo.get(
        "/reports/weekly", params={"municipality": "657", "week": "2026-W40"}, headers=stack.headers("chef")
    ).json()["figures"]
    # Week 40 is 28 Sep - 4 Oct: U1 received; open at the end: S1 and S2 (S3 closed 20 Sep).
    assert weekly["underretninger_received"] == 1
    assert weekly["open_cases"] == 2
    assert weekly["underretninger_unassessed"] == 1


def test_single_records_duplicates_and_conflicts(stack: Stack) -> None:
    first = _scenario()[0]
    assert stack.post(first).status_code == 201
    assert stack.post(first).status_code == 200
    changed = {**first, "data": {**first["data"], "severity": "akut"}}
    assert stack.post(changed).status_code == 409
    bad = {**first, "record_id": "other", "data": {**first["data"], "notifier": "42"}}
    response = stack.post(bad)
    assert response.status_code == 422 and "notifier" in response.text
    stack.sync()
    weekly = stack.ledelsesinfo.get(
        "/reports/weekly", params={"municipality": "657", "week": "2026-W40"}, headers=stack.headers("chef")
    ).json()["figures"]
    assert weekly["underretninger_received"] == 1
