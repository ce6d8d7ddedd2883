"""Outbox relay and consumer runner against the real Kafka broker and PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import Engine, func, select

from shared.config import ServiceSettings
from shared.db import make_engine
from shared.eventstore.schema import outbox
from shared.eventstore.store import EventStore
from shared.messaging.kafka import ensure_topics
from shared.messaging.relay import OutboxRelay
from shared.messaging.runner import ProjectionWorker, replay
from tests.backbone.support import CountingProjection, append_streams, assignment, create_store


@pytest.fixture
def topics(kafka_bootstrap: str) -> tuple[str, str]:
    name = f"events-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, (name, f"{name}.dlq"), partitions=6)
    return name, f"{name}.dlq"


@pytest.fixture
def pg_store(fresh_pg_url: str) -> Engine:
    engine = make_engine(fresh_pg_url)
    create_store(engine)
    return engine


def _settings(pg_url: str, bootstrap: str, topics: tuple[str, str]) -> ServiceSettings:
    return ServiceSettings(
        transport="kafka",
        event_store_url=pg_url,
        database_url=pg_url,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=topics[0],
        kafka_dlq_topic=topics[1],
    )


def _read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[tuple[str, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        for rec in consumer:
            out.append((rec.key.decode(), rec.value))
    consumer.close()
    return out


def _worker(settings: ServiceSettings, name: str) -> tuple[ProjectionWorker, CountingProjection]:
    projection = CountingProjection(name)
    worker = ProjectionWorker(projection, settings, retry_backoff=0.0)
    worker.ensure_schema()
    return worker, projection


def test_events_of_one_stream_come_out_of_kafka_in_version_order(
    pg_store: Engine, kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    store = EventStore(outbox_topic=topics[0])
    append_streams(pg_store, store, streams=30, per_stream=10)
    relay = OutboxRelay(pg_store, kafka_bootstrap, batch_size=37)
    assert relay.drain() == 300
    from shared.events.envelope import EventEnvelope

    by_stream: dict[str, list[int]] = defaultdict(list)
    for key, value in _read_topic(kafka_bootstrap, topics[0], 300):
        env = EventEnvelope.from_bytes(value)
        assert key == env.stream_id
        by_stream[key].append(env.version)
    assert len(by_stream) == 30
    assert all(v == list(range(1, 11)) for v in by_stream.values())


def test_killing_the_relay_mid_batch_loses_and_duplicates_nothing_downstream(
    pg_store: Engine, fresh_pg_url: str, kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    store = EventStore(outbox_topic=topics[0])
    append_streams(pg_store, store, streams=100, per_stream=30)  # 3,000 events
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "tests.backbone.relay_process", fresh_pg_url, kafka_bootstrap, "50"]
    for kills in range(3):
        proc = subprocess.Popen(cmd, env=env)
        # Let it publish part of the outbox, then kill it without warning.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with pg_store.connect() as conn:
                left = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
            if left < 3000 - 600 * (kills + 1) or left == 0:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # A last relay finishes the job.
    assert OutboxRelay(pg_store, kafka_bootstrap).drain() >= 0
    settings = _settings(fresh_pg_url, kafka_bootstrap, topics)
    worker, projection = _worker(settings, f"kill-{topics[0]}")
    worker.drain()
    worker.stop()
    state = projection.state(worker.engine)
    assert len(state) == 100
    assert all(n == 30 and versions == list(range(1, 31)) for n, versions in state.values())


def test_poison_goes_to_the_dead_letter_topic_and_later_messages_are_processed(
    pg_store: Engine, fresh_pg_url: str, kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    store = EventStore(outbox_topic=topics[0])
    with pg_store.begin() as conn:
        store.append(conn, [assignment(1, 1)], expected_version=0, content_hash="1")
        store.append(conn, [assignment(1, 2, caseworker="poison-pill")], expected_version=1, content_hash="2")
    OutboxRelay(pg_store, kafka_bootstrap).drain()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topics[0], key=b"garbage", value=b"\x00not json at all").get(timeout=30)
    producer.close()
    with pg_store.begin() as conn:
        store.append(conn, [assignment(1, 3)], expected_version=2, content_hash="3")
        store.append(conn, [assignment(2, 1)], expected_version=0, content_hash="4")
    OutboxRelay(pg_store, kafka_bootstrap).drain()

    worker, projection = _worker(_settings(fresh_pg_url, kafka_bootstrap, topics), f"dlq-{topics[0]}")
    worker.drain()
    worker.stop()
    state = projection.state(worker.engine)
    assert state[assignment(1, 1).stream_id] == (2, [1, 3])
    assert state[assignment(2, 1).stream_id] == (1, [1])
    dead = _read_topic(kafka_bootstrap, topics[1], 2)
    assert sorted(k for k, _ in dead) == sorted(["garbage", assignment(1, 2).stream_id])


def test_replay_from_the_beginning_of_the_topic_rebuilds_the_same_state(
    pg_store: Engine, fresh_pg_url: str, kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    store = EventStore(outbox_topic=topics[0])
    append_streams(pg_store, store, streams=10, per_stream=6)
    OutboxRelay(pg_store, kafka_bootstrap).drain()
    settings = _settings(fresh_pg_url, kafka_bootstrap, topics)
    name = f"replay-{topics[0]}"
    worker, projection = _worker(settings, name)
    assert worker.drain() == 60
    worker.stop()
    before = projection.state(worker.engine)
    assert replay(CountingProjection(name), settings, timeout=120) == 60
    assert projection.state(worker.engine) == before


def test_relay_survives_a_broker_restart_without_losing_or_reordering(
    pg_store: Engine, fresh_pg_url: str, kafka_broker: object, kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    from shared.events.envelope import EventEnvelope

    broker = kafka_broker
    store = EventStore(outbox_topic=topics[0])
    relay = OutboxRelay(pg_store, kafka_bootstrap, batch_size=50)
    relay.start()
    try:
        append_streams(pg_store, store, streams=40, per_stream=5)
        broker.kill()  # type: ignore[attr-defined]
        # Records keep being acknowledged while the broker is down: they wait in the outbox.
        with pg_store.begin() as conn:
            for s in range(40):
                store.append(conn, [assignment(s, 6)], expected_version=5, content_hash=f"x{s}")
        broker.up()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with pg_store.connect() as conn:
                if conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 0:
                    break
            time.sleep(0.2)
    finally:
        relay.stop()
    with pg_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 0
    first_seen: dict[str, list[int]] = defaultdict(list)
    ids: set[str] = set()
    for key, value in _read_topic(kafka_bootstrap, topics[0], 240):
        env = EventEnvelope.from_bytes(value)
        if env.event_id not in ids:  # a re-send after the restart is a harmless duplicate
            ids.add(env.event_id)
            first_seen[key].append(env.version)
    assert len(ids) == 240
    assert all(v == [1, 2, 3, 4, 5, 6] for v in first_seen.values())
