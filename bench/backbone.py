"""Backbone benchmark: append, relay and consume rates, each beside the raw rate of the same machine.

    python -m bench.backbone [--events 50000] [--pg-url URL --bootstrap HOST:PORT] [--out DIR]

Without URLs it starts a throwaway PostgreSQL and Kafka broker on 127.0.0.1 with the project's
own scripts (deploy/postgres/pg.sh, deploy/kafka/kafka.sh) and stops them afterwards.
Raw baselines, same volume, same run: a bare PostgreSQL COPY of the same rows, a bare kafka-python
produce (acks=all, idempotent) and a bare kafka-python consume. Timing is noisy on a shared
2-core machine: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from kafka import KafkaConsumer
from sqlalchemy import Column, Connection, MetaData, String, Table, delete, insert, text

from bench.infra import local_servers
from shared.config import ServiceSettings
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import EventStore
from shared.messaging.kafka import ensure_topics, make_producer
from shared.messaging.relay import OutboxRelay
from shared.messaging.runner import ProjectionWorker
from tests.backbone.support import assignment


class TrivialProjection:
    """One row per event: the cheapest projection that still writes in the runner's transaction."""

    name = "bench-trivial"

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.table = Table("bench_seen", self.metadata, Column("event_id", String(36), primary_key=True))

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        conn.execute(insert(self.table), [{"event_id": e.event_id} for e in events])

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(self.table))


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def run(events: int, pg_url: str, bootstrap: str) -> list[dict[str, object]]:
    db = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {db}"))
    url = pg_url.rsplit("/", 1)[0] + "/" + db
    engine = make_engine(url)
    store_metadata.create_all(engine)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, (topic, topic + ".dlq", topic + ".raw"), partitions=6)
    store = EventStore(outbox_topic=topic)
    streams = max(1, events // 10)
    envs = [assignment(s, v, record=f"b-{s}-{v}") for v in range(1, 11) for s in range(streams)][:events]
    rows: list[dict[str, object]] = []

    # 1. append (events + outbox rows in one transaction per 500) vs bare COPY of the same rows
    t0 = time.perf_counter()
    for i in range(0, len(envs), 500):
        with engine.begin() as conn:
            for env in envs[i : i + 500]:
                store.append(conn, [env], expected_version=env.version - 1, content_hash="h")
    append_s = time.perf_counter() - t0
    raw_conn = engine.raw_connection()
    try:
        cur = raw_conn.cursor()
        cur.execute("CREATE TABLE raw_copy (LIKE events INCLUDING DEFAULTS)")
        t0 = time.perf_counter()
        with cur.copy(  # type: ignore[attr-defined]
            "COPY raw_copy (position, event_id, stream_id, version, type, schema_version, municipality,"
            " record_id, occurred_at, recorded_at, correlation_id, content_hash, data) FROM STDIN"
        ) as copy:
            for n, env in enumerate(envs, 1):
                copy.write_row(
                    (
                        n,
                        env.event_id,
                        env.stream_id,
                        env.version,
                        env.type,
                        1,
                        env.municipality,
                        env.record_id,
                        env.occurred_at.isoformat(),
                        env.recorded_at.isoformat(),
                        env.correlation_id,
                        "h",
                        env.data_json(),
                    )
                )
        raw_conn.commit()
        copy_s = time.perf_counter() - t0
    finally:
        raw_conn.close()
    rows.append(_row("append to event store (+outbox)", events, append_s, "PostgreSQL COPY", copy_s))

    # 2. relay outbox -> Kafka vs bare produce of the same payloads
    relay = OutboxRelay(engine, bootstrap, batch_size=2000)
    t0 = time.perf_counter()
    relay.drain(timeout=600)
    relay_s = time.perf_counter() - t0
    relay._close_producer()
    producer = make_producer(bootstrap, "bench-raw")
    payloads = [(e.stream_id.encode(), e.to_bytes()) for e in envs]
    t0 = time.perf_counter()
    futures = [producer.send(topic + ".raw", key=k, value=v) for k, v in payloads]
    producer.flush()
    for f in futures:
        f.get(timeout=60)
    produce_s = time.perf_counter() - t0
    producer.close()
    rows.append(_row("relay outbox to Kafka", events, relay_s, "kafka-python produce", produce_s))

    # 3. consume into a trivial projection vs bare consume
    settings = ServiceSettings(
        transport="kafka",
        event_store_url=url,
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=topic,
        kafka_dlq_topic=topic + ".dlq",
    )
    worker = ProjectionWorker(TrivialProjection(), settings)
    worker.ensure_schema()
    t0 = time.perf_counter()
    worker.drain(timeout=600)
    consume_s = time.perf_counter() - t0
    worker.stop()
    consumer = KafkaConsumer(
        topic + ".raw",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=1000,
    )
    seen = 0
    t0 = time.perf_counter()
    while seen < events and time.perf_counter() - t0 < 600:
        for records in consumer.poll(timeout_ms=500).values():
            seen += len(records)
    raw_consume_s = time.perf_counter() - t0
    consumer.close()
    rows.append(
        _row("consume into trivial projection", events, consume_s, "kafka-python consume", raw_consume_s)
    )
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {db} WITH (FORCE)"))
    admin.dispose()
    return rows


def _row(what: str, n: int, seconds: float, baseline: str, baseline_s: float) -> dict[str, object]:
    measured, raw = _rate(n, seconds), _rate(n, baseline_s)
    return {
        "benchmark": what,
        "events": n,
        "events_per_s": measured,
        "baseline": baseline,
        "baseline_events_per_s": raw,
        "ratio": round(measured / raw, 3) if raw else None,
    }


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| benchmark | events | events/s | raw baseline | raw events/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['events']} | {r['events_per_s']} | {r['baseline']} |"
            f" {r['baseline_events_per_s']} | {r['ratio']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--pg-url")
    ap.add_argument("--bootstrap")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    if args.pg_url and args.bootstrap:
        rows = run(args.events, args.pg_url, args.bootstrap)
    else:
        with local_servers() as (pg_url, bootstrap):
            rows = run(args.events, pg_url, bootstrap)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backbone.json").write_text(json.dumps(rows, indent=2))
    table = markdown(rows)
    (out / "backbone.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
