"""A request's correlation id followed through the JSON logs of the three services: intake (the
request and the import), the event log and Kafka (a record header set by the outbox relay), the
follow-up and ledelsesinfo projectors applying those events. No CPR and no token in any line."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from shared.config import ServiceSettings
from shared.db import make_engine
from shared.eventstore.schema import events
from shared.eventstore.store import EventStore
from shared.messaging.kafka import make_producer
from shared.messaging.runner import ProjectionWorker
from shared.observability import FunctionCollector, ProjectionMonitor
from tests.backbone.support import CountingProjection, assignment, create_store
from tests.e2e.stack import Stack, running_stack
from tests.ops.support import json_logs

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples" / "records.ndjson"


@pytest.fixture(params=["sql", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.postgres])])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(request.param, tmp_path, request) as s:
        yield s


def _cprs(lines: list[str]) -> set[str]:
    found: set[str] = {"1208994321"}  # the unborn child's mother in the examples
    for line in lines:
        child = json.loads(line)["data"].get("child") or {}
        found |= {v for k, v in child.items() if k.endswith("cpr") and isinstance(v, str)}
    return found | {f"{c[:6]}-{c[6:]}" for c in found}


def test_a_correlation_id_is_followed_from_intake_to_both_projectors(stack: Stack) -> None:
    lines = EXAMPLES.read_text().splitlines()
    # letters only: a random hex id can hold ten digits in a row, which the logs redact as a CPR
    # number, and then the service rightly refuses it as a correlation id
    cid = "ops-trace-" + uuid.uuid4().hex[:12].translate(str.maketrans("0123456789", "ghijklmnop"))
    headers = {
        **stack.headers("system", "751"),
        "Content-Type": "application/x-ndjson",
        "X-Correlation-ID": cid,
    }
    with json_logs() as logs:
        resp = stack.intake.post("/records/bulk", content=("\n".join(lines) + "\n").encode(), headers=headers)
        assert resp.status_code == 200 and resp.json()["accepted"] == len(lines)
        assert resp.headers["x-correlation-id"] == cid
        request_id = resp.headers["x-request-id"]
        stack.sync()
        read = stack.followup.get(
            "/cases/S-2001", params={"municipality": "751"}, headers={**stack.headers("chef", "751")}
        )
        assert read.status_code == 200
    docs = logs.docs()
    traced = [d for d in docs if d.get("correlation_id") == cid]

    # intake: the access line and the import line, both with the request id too
    access = [d for d in traced if d["logger"] == "http.access" and d.get("route") == "/records/bulk"]
    assert len(access) == 1 and access[0]["status"] == 200 and access[0]["request_id"] == request_id
    assert any(d["logger"] == "services.intake.api" and d.get("request_id") == request_id for d in traced)

    # the event log carries it; on Kafka every record has it as a header
    with make_engine(stack.intake.app.state.settings.event_store_url).connect() as conn:  # type: ignore[attr-defined]
        stored = set(conn.execute(select(events.c.correlation_id)).scalars())
    assert stored == {cid}
    if stack.transport == "kafka":
        consumer = KafkaConsumer(
            stack.topic,
            bootstrap_servers=stack.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=3000,
        )
        records = list(consumer)
        consumer.close()
        assert len(records) == len(lines)
        assert all(("correlation_id", cid.encode()) in list(r.headers) for r in records)

    # both projectors logged applying the events of that request, under its correlation id
    for projection in ("followup", "ledelsesinfo"):
        applied = [
            d for d in traced if d["logger"] == "shared.messaging.runner" and d["projection"] == projection
        ]
        assert applied, projection
        assert sum(d["events"] for d in applied) == len(lines), projection

    # a later request of another caller has its own ids
    other = [d for d in docs if d["logger"] == "http.access" and d.get("route") == "/cases/{case_id}"]
    assert len(other) == 1 and other[0]["correlation_id"] not in (cid, None)
    assert other[0]["correlation_id"] == read.headers["x-correlation-id"] == read.headers["x-request-id"]

    # no CPR number and no token anywhere in the logs
    text = "\n".join(logs.lines)
    assert not any(c in text for c in _cprs(lines))
    token = headers["Authorization"].split()[1]
    assert token not in text and token.split(".")[1] not in text


def test_an_unsafe_correlation_id_is_replaced(stack: Stack) -> None:
    record = json.loads(EXAMPLES.read_text().splitlines()[0])
    for i, unsafe in enumerate(("0101154123", "has space", "x" * 65, "Bearer abc.def.ghi")):
        data = {**record["data"], "underretning_id": f"UR-OPS-{i}"}
        resp = stack.intake.post(
            "/records",
            json={**record, "record_id": f"ops-{i}", "data": data},
            headers={**stack.headers("system", "751"), "X-Correlation-ID": unsafe},
        )
        assert resp.status_code == 201, resp.text
        assert resp.headers["x-correlation-id"] not in ("", unsafe)
        assert resp.headers["x-correlation-id"] == resp.headers["x-request-id"]
    with make_engine(stack.intake.app.state.settings.event_store_url).connect() as conn:  # type: ignore[attr-defined]
        stored = set(conn.execute(select(events.c.correlation_id)).scalars())
    assert len(stored) == 4 and not stored & {"0101154123", "has space"}
    given = stack.followup.get("/health", headers={"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"})
    assert (given.headers["x-request-id"], given.headers["x-correlation-id"]) == ("req-1", "corr-1")


@pytest.mark.kafka
def test_the_projector_takes_the_correlation_id_from_the_kafka_header(
    kafka_bootstrap: str, fresh_topic: Any, tmp_path: Path
) -> None:
    topic = fresh_topic(prefix="ops-header", partitions=2)
    envelope = assignment(1, 1)  # its own correlation id is a random uuid
    producer = make_producer(kafka_bootstrap, "ops-test")
    producer.send(
        topic,
        key=envelope.stream_id.encode(),
        value=envelope.to_bytes(),
        headers=[("correlation_id", b"from-the-header")],
    ).get(timeout=30)
    producer.close()
    settings = ServiceSettings(  # type: ignore[call-arg]
        transport="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=topic,
        kafka_dlq_topic=topic + ".dlq",
        database_url=f"sqlite:///{tmp_path / 'p.db'}",
    )
    worker = ProjectionWorker(CountingProjection(f"ops-{uuid.uuid4().hex[:6]}"), settings)
    worker.ensure_schema()
    try:
        with json_logs() as logs:
            assert worker.drain(timeout=120) == 1
        applied = [d for d in logs.docs() if d["logger"] == "shared.messaging.runner"]
        assert [(d["correlation_id"], d["events"]) for d in applied] == [("from-the-header", 1)]
        assert envelope.correlation_id != "from-the-header"
    finally:
        worker.stop()


def test_retries_and_dead_letters_are_counted_and_logged_with_the_correlation_id(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store_engine = make_engine(store_url)
    create_store(store_engine)
    store = EventStore()
    with store_engine.begin() as conn:
        good = store.append(conn, [assignment(1, 1)], expected_version=0, content_hash="h1")
        poison = store.append(
            conn, [assignment(2, 1, caseworker="poison-1")], expected_version=0, content_hash="h2"
        )
    settings = ServiceSettings(  # type: ignore[call-arg]
        transport="sql", event_store_url=store_url, database_url=f"sqlite:///{tmp_path / 'p.db'}"
    )
    worker = ProjectionWorker(CountingProjection(), settings, retry_backoff=0.0, max_retries=3)
    worker.ensure_schema()
    monitor = ProjectionMonitor(
        "counting", settings, worker.engine, worker=lambda: worker, broker=None, max_lag=0
    )
    registry = CollectorRegistry()
    registry.register(FunctionCollector("projection", monitor.collect))
    with json_logs() as logs:
        assert worker.drain(timeout=60) == 2
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples["projection_events_processed_total"] == 1
    assert samples["projection_retries_total"] == 3
    assert samples["projection_dead_lettered_total"] == 1
    assert samples["projection_dead_letters"] == 1
    assert samples["projection_lag_events"] == 0 and samples["projection_lag_seconds"] == 0
    docs = logs.docs()
    dead = [d for d in docs if d["level"] == "ERROR" and "dead-lettering" in d["msg"]]
    assert [d["correlation_id"] for d in dead] == [poison[0].correlation_id]
    applied = [d for d in docs if d.get("projection") == "counting" and d.get("events")]
    assert [d["correlation_id"] for d in applied] == [good[0].correlation_id]
    worker.stop()
    store_engine.dispose()
