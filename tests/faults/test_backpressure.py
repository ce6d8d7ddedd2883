"""Back-pressure: with the database down intake answers 503 + Retry-After (never 500) and recovers by
itself; with the broker down intake still accepts (the outbox absorbs it) and the relay catches up."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from services.intake.app import create_app
from shared.messaging.relay import outbox_size
from tests.infra import KafkaBroker, PostgresServer
from tests.intake.conftest import auth, clock, example, make_settings

HEADERS = auth(role="system")


def record(i: int) -> dict[str, Any]:
    rec = example("ex-01")
    rec["record_id"] = f"bp-{i}"
    rec["data"]["underretning_id"] = f"UR-bp-{i}"
    return rec


def post_until(client: TestClient, rec: dict[str, Any], timeout: float) -> Any:
    """POST until the answer is not 503 (a client honouring Retry-After, but quicker)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.post("/records", json=rec, headers=HEADERS)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert r.headers.get("retry-after", "").isdigit()
        time.sleep(0.5)


def test_database_down_gives_503_with_retry_after_then_recovers(
    postgres_server: PostgresServer, fresh_pg_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, event_store_url=fresh_pg_url, transport="kafka", run_relay=False)
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as client:
        assert client.post("/records", json=record(0), headers=HEADERS).status_code == 201
        postgres_server.kill()
        for i in (1, 2):
            r = client.post("/records", json=record(i), headers=HEADERS)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"].isdigit()
            assert r.json()["reason"]
        body = "".join(json.dumps(record(i)) + "\n" for i in (3, 4)).encode()
        r = client.post(
            "/records/bulk", content=body, headers={**HEADERS, "Content-Type": "application/x-ndjson"}
        )
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"].isdigit()
        assert client.get("/ready").status_code == 503
        postgres_server.restart()
        for i in (1, 2):  # nothing was stored while down: now accepted, once
            assert post_until(client, record(i), timeout=60).status_code == 201
        assert client.post("/records", json=record(1), headers=HEADERS).status_code == 200
        assert client.get("/ready").status_code == 200


def _read_topic(bootstrap: str, topic: str, want: int, timeout: float) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(json.loads(m.value) for m in batch)
        return got
    finally:
        consumer.close()


def test_broker_down_records_still_accepted_and_relayed_after_it_returns(
    kafka_broker: KafkaBroker, fresh_topic: Any, fresh_pg_url: str, tmp_path: Path
) -> None:
    topic = fresh_topic(prefix="bp")
    settings = make_settings(
        tmp_path,
        event_store_url=fresh_pg_url,
        transport="kafka",
        run_relay=True,
        kafka_bootstrap_servers=kafka_broker.bootstrap,
        kafka_topic=topic,
        kafka_dlq_topic=topic + ".dlq",
    )
    app = create_app(settings, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        kafka_broker.kill()
        ids = []
        for i in range(20):
            r = client.post("/records", json=record(i), headers=HEADERS)
            assert r.status_code == 201, r.text
            ids.append(r.json()["event_id"])
        assert outbox_size(app.state.engine)[0] > 0  # held back while the broker is away
        kafka_broker.restart()
        deadline = time.monotonic() + 90
        while outbox_size(app.state.engine)[0] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert outbox_size(app.state.engine)[0] == 0, "the relay did not catch up after the broker returned"
    got = _read_topic(kafka_broker.bootstrap, topic, len(ids), timeout=30)
    assert sorted(e["event_id"] for e in got) == sorted(ids)  # each exactly once
