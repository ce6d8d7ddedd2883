"""GET /metrics of the three services after a known import, on the SQL log and on Kafka + PostgreSQL:
the records counter by type, status and reason; request counts and latencies per route template;
intake's outbox; per projection the lag (events and seconds), processed, retries, dead letters; the
overdue-deadlines gauge against the worklists."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from services.followup.app import create_app as followup_app
from services.followup.config import Settings as FollowupSettings
from services.followup.projection import FollowupProjection
from services.intake.app import create_app as intake_app
from services.intake.config import Settings as IntakeSettings
from shared.db import make_engine
from shared.eventstore.schema import metadata as store_metadata
from shared.messaging.runner import ProjectionWorker
from shared.messaging.schema import dead_letters
from shared.observability import serve_worker_metrics
from tests.e2e.stack import Stack, running_stack
from tests.infra.ports import free_port
from tests.ops.support import by_label, eventually, scrape, total, values

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples" / "records.ndjson"
MUNICIPALITY = "751"


@pytest.fixture(params=["sql", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.postgres])])
def stack(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("READY_CACHE_SECONDS", "0")  # every scrape asks again
    with running_stack(request.param, tmp_path, request) as s:
        yield s


def example_lines() -> list[str]:
    return EXAMPLES.read_text().splitlines()


def bulk(stack: Stack, lines: list[str]) -> dict[str, Any]:
    resp = stack.intake.post(
        "/records/bulk",
        content=("\n".join(lines) + "\n").encode(),
        headers={**stack.headers("system", MUNICIPALITY), "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def bad_lines() -> list[tuple[str, str, str]]:
    """(line, type label, reason label) of lines that each end rejected for a known reason."""
    first = json.loads(example_lines()[0])  # an UnderretningReceived
    bad_cpr = {**first, "record_id": "ops-bad-cpr", "data": {**first["data"], "child": {"cpr": "3202151234"}}}
    no_case = {
        "record_id": "ops-no-case",
        "type": "CaseworkerAssigned",
        "municipality": MUNICIPALITY,
        "occurred_at": "2026-10-05T14:05:00+02:00",
        "data": {"case_id": "S-NOPE", "caseworker_id": "sr-anna"},
    }
    conflicting = {**first, "data": {**first["data"], "severity": "akut"}}  # ex-01's id, other content
    other_municipality = {**no_case, "record_id": "ops-other", "municipality": "657"}
    unknown_type = {**no_case, "record_id": "ops-unknown", "type": "SomethingElse"}
    return [
        (json.dumps(bad_cpr), "UnderretningReceived", "data.child.cpr"),
        (json.dumps(no_case), "CaseworkerAssigned", "data.case_id"),  # deferred to the end, then refused
        (json.dumps(conflicting), "UnderretningReceived", "conflict"),
        ("{not json", "unknown", "line"),
        (json.dumps(other_municipality), "unknown", "line"),
        (json.dumps(unknown_type), "unknown", "type"),
    ]


def test_records_counters_follow_a_known_import(stack: Stack) -> None:
    lines = example_lines()
    types = Counter(json.loads(line)["type"] for line in lines)
    before = scrape(stack.intake)
    assert total(before, "intake_records_total") == 0

    first = bulk(stack, lines)
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (len(lines), 0, 0)
    after_first = scrape(stack.intake)
    assert by_label(after_first, "intake_records_total", "type", status="accepted") == {
        t: float(n) for t, n in types.items()
    }
    assert total(after_first, "intake_records_total", status="duplicate") == 0
    assert total(after_first, "intake_records_total", status="rejected") == 0

    bad = bad_lines()
    second = bulk(stack, lines + [line for line, _, _ in bad])
    assert (second["accepted"], second["duplicate"], second["rejected"]) == (0, len(lines), len(bad))
    samples = scrape(stack.intake)
    # nothing accepted twice; every re-sent line a duplicate of its type
    assert total(samples, "intake_records_total", status="accepted") == len(lines)
    assert by_label(samples, "intake_records_total", "type", status="duplicate") == {
        t: float(n) for t, n in types.items()
    }
    rejected = {
        (lab["type"], lab["reason"]): v
        for name, lab, v in samples
        if name == "intake_records_total" and lab["status"] == "rejected"
    }
    assert rejected == dict(Counter((t, reason) for _, t, reason in bad))
    # the counter and the import's own summary agree, status by status
    for status in ("accepted", "duplicate", "rejected"):
        assert total(samples, "intake_records_total", status=status) == first[status] + second[status]

    # request metrics: per route template and status, with a latency histogram
    assert total(samples, "http_requests_total", route="/records/bulk", status="200", method="POST") == 2
    assert total(samples, "http_request_duration_seconds_count", route="/records/bulk", status="200") == 2
    assert total(samples, "http_request_duration_seconds_sum", route="/records/bulk") > 0


def test_single_records_are_counted_by_type_and_reason(stack: Stack) -> None:
    record = json.loads(example_lines()[0])
    assert stack.post(record).status_code == 201
    assert stack.post(record).status_code == 200
    assert stack.post({**record, "data": {**record["data"], "severity": "akut"}}).status_code == 409
    missing = {**record, "record_id": "ops-missing-notifier", "data": {**record["data"]}}
    del missing["data"]["notifier"]
    assert stack.post(missing).status_code == 422
    samples = scrape(stack.intake)
    got = {
        (lab["type"], lab["status"], lab["reason"]): v
        for name, lab, v in samples
        if name == "intake_records_total"
    }
    assert got == {
        ("UnderretningReceived", "accepted", ""): 1,
        ("UnderretningReceived", "duplicate", ""): 1,
        ("UnderretningReceived", "rejected", "conflict"): 1,
        ("UnderretningReceived", "rejected", "data.notifier"): 1,
    }
    assert by_label(samples, "http_requests_total", "status", route="/records") == {
        "201": 1,
        "200": 1,
        "409": 1,
        "422": 1,
    }


def test_projection_lag_goes_to_zero_when_the_workers_have_drained(stack: Stack) -> None:
    lines = example_lines()
    bulk(stack, lines)
    n = len(lines)
    if stack.relay is not None:
        outbox = scrape(stack.intake)
        assert values(outbox, "outbox_size") == [n]
        assert values(outbox, "outbox_oldest_age_seconds")[0] >= 0
        stack.relay.drain()
        drained = scrape(stack.intake)
        assert values(drained, "outbox_size") == [0]
        assert values(drained, "outbox_oldest_age_seconds") == [0]

    # the workers run outside the apps (as in compose): the lag is read from outside
    for client, name in ((stack.followup, "followup"), (stack.ledelsesinfo, "ledelsesinfo")):
        # (Kafka: on a fresh broker the group coordinator appears on first demand; until then: no sample)
        samples = eventually(
            lambda c=client, p=name: scrape(c),  # type: ignore[misc]
            lambda s, p=name: values(s, "projection_lag_events", projection=p) == [n],  # type: ignore[misc]
            timeout=30,
        )
        assert values(samples, "projection_lag_events", projection=name) == [n], name
        assert values(samples, "projection_worker_in_process", projection=name) == [0]
        if stack.transport == "sql":  # the age of the oldest event not applied
            assert values(samples, "projection_lag_seconds", projection=name)[0] >= 0

    # the workers now belong to the apps (as with RUN_WORKER=true): their own counters
    stack.followup.app.state.worker = stack.workers[0]  # type: ignore[attr-defined]
    stack.ledelsesinfo.app.state.worker = stack.workers[1]  # type: ignore[attr-defined]
    for worker in stack.workers:
        worker.drain(timeout=120)
    for client, name in ((stack.followup, "followup"), (stack.ledelsesinfo, "ledelsesinfo")):
        samples = scrape(client)
        assert values(samples, "projection_worker_in_process", projection=name) == [1]
        assert values(samples, "projection_assigned", projection=name) == [1]
        assert values(samples, "projection_events_processed_total", projection=name) == [n]
        assert values(samples, "projection_lag_events", projection=name) == [0]
        assert values(samples, "projection_lag_seconds", projection=name) == [0]
        assert values(samples, "projection_retries_total", projection=name) == [0]
        assert values(samples, "projection_dead_lettered_total", projection=name) == [0]
        assert values(samples, "projection_source_reopened_total", projection=name) == [0]
        assert values(samples, "projection_dead_letters", projection=name) == [0]

    # more records: the in-process worker's lag shows them until it drains again
    bulk(stack, [json.dumps(_new_underretning(i)) for i in range(3)])
    stack.sync()
    samples = scrape(stack.followup)
    assert values(samples, "projection_events_processed_total", projection="followup") == [n + 3]
    assert values(samples, "projection_lag_events", projection="followup") == [0]
    # and from outside, once the app no longer has the worker
    stack.followup.app.state.worker = None  # type: ignore[attr-defined]
    assert values(scrape(stack.followup), "projection_lag_events", projection="followup") == [0]


def _new_underretning(i: int) -> dict[str, Any]:
    first = json.loads(example_lines()[0])
    cpr = f"0{i + 1}0615412{i}"
    data = {**first["data"], "underretning_id": f"UR-OPS-{i}", "child": {"cpr": cpr}}
    return {**first, "record_id": f"ops-ur-{i}", "data": data}


def test_overdue_gauge_matches_the_worklists(stack: Stack) -> None:
    bulk(stack, example_lines())
    stack.sync()
    samples = scrape(stack.followup)
    gauge = {
        lab["deadline"]: v
        for name, lab, v in samples
        if name == "followup_deadlines_overdue" and lab["municipality"] == MUNICIPALITY
    }
    resp = stack.followup.get(
        "/deadlines",
        params={"municipality": MUNICIPALITY, "state": "overdue"},
        headers=stack.headers("chef", MUNICIPALITY),
    )
    assert resp.status_code == 200, resp.text
    listed = Counter(d["deadline"] for d in resp.json()["deadlines"])
    assert sum(listed.values()) > 0  # the examples lie in 2026: some deadlines are overdue now
    assert {k: v for k, v in gauge.items() if v} == {k: float(v) for k, v in listed.items()}
    assert all(v == 0 for k, v in gauge.items() if k not in listed)  # every deadline id, zero included
    assert values(samples, "followup_deadlines_overdue", municipality="657") == []  # no deadlines there


def test_dead_letters_are_counted_from_the_table(tmp_path: Path) -> None:
    settings = FollowupSettings(
        database_url=f"sqlite:///{tmp_path / 'f.db'}",
        event_store_url=f"sqlite:///{tmp_path / 's.db'}",
        run_worker=False,
        auto_create_tables=True,
    )
    app = followup_app(settings)
    with TestClient(app) as client:
        assert values(scrape(client), "projection_dead_letters", projection="followup") == [0]
        with app.state.engine.begin() as conn:
            conn.execute(
                insert(dead_letters),
                [
                    {
                        "projection": p,
                        "origin": "events/1",
                        "error": "x",
                        "payload": b"{}",
                        "at": "2026-01-01",
                    }
                    for p in ("followup", "followup", "ledelsesinfo")
                ],
            )
        assert values(scrape(client), "projection_dead_letters", projection="followup") == [2]


def test_every_app_has_its_own_registry(tmp_path: Path) -> None:
    def make(i: int) -> TestClient:
        return TestClient(
            intake_app(
                IntakeSettings(event_store_url=f"sqlite:///{tmp_path / f'i{i}.db'}", auto_create_tables=True)
            )
        )

    with make(1) as one, make(2) as two:
        for _ in range(3):
            one.get("/health")
        two.get("/health")
        two.get("/no/such/path")
        assert total(scrape(one), "http_requests_total", route="/health") == 3
        samples = scrape(two)
        assert total(samples, "http_requests_total", route="/health") == 1
        # unknown paths share one label value: no unbounded cardinality
        assert total(samples, "http_requests_total", route="<unmatched>", status="404") == 1
        assert values(samples, "service_info", service="intake", transport="sql") == [1]


def test_a_worker_only_process_serves_its_metrics(tmp_path: Path) -> None:
    settings = FollowupSettings(
        database_url=f"sqlite:///{tmp_path / 'f.db'}",
        event_store_url=f"sqlite:///{tmp_path / 's.db'}",
        run_worker=False,
    )
    store_metadata.create_all(make_engine(settings.event_store_url))
    worker = ProjectionWorker(FollowupProjection(settings), settings)
    worker.ensure_schema()
    worker.drain(timeout=30)
    port = free_port()
    stop = serve_worker_metrics("followup", settings, worker, port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        stop()
        worker.stop()
    samples = {
        (s.name, s.labels.get("projection")): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("projection_worker_in_process", "followup")] == 1
    assert samples[("projection_assigned", "followup")] == 1
    assert samples[("projection_lag_events", "followup")] == 0
    assert samples[("projection_events_processed_total", "followup")] == 0
