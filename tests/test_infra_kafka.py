"""The real Kafka broker started by deploy/kafka/kafka.sh: a produce/consume round trip, and data and
committed offsets surviving a SIGKILL of the broker."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from tests.infra import KafkaBroker, port_is_open


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, retries=10
    )
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _consume(
    bootstrap: str, topic: str, count: int, *, group: str | None = None, commit: bool = False
) -> list[tuple[int, int, bytes, bytes]]:
    """Read `count` records (partition, offset, key, value); with a group, commit what was read."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=count,
    )
    got: list[tuple[int, int, bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            for _tp, records in consumer.poll(timeout_ms=500, max_records=count - len(got)).items():
                got.extend((r.partition, r.offset, r.key, r.value) for r in records)
        if commit and group:
            consumer.commit()
    finally:
        consumer.close()
    return got


def _messages(n: int, keys: int = 10, tag: str = "m") -> list[tuple[bytes, bytes]]:
    return [(f"key-{i % keys}".encode(), f"{tag}-{i}".encode()) for i in range(n)]


def test_round_trip_keeps_every_record_and_the_order_per_key(
    kafka_bootstrap: str, fresh_topic: Callable[..., str]
) -> None:
    topic = fresh_topic("roundtrip")
    sent = _messages(300)
    _produce(kafka_bootstrap, topic, sent)

    got = _consume(kafka_bootstrap, topic, len(sent), group=f"g-{topic}")

    assert sorted(v for _p, _o, _k, v in got) == sorted(v for _k, v in sent)
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for partition, _offset, key, value in sorted(got, key=lambda r: (r[0], r[1])):
        per_key[key].append(value)
        partition_of[key].add(partition)
    for key, values in per_key.items():
        assert values == [v for k, v in sent if k == key]
        assert len(partition_of[key]) == 1
    assert len({p for p, *_ in got}) > 1  # the 10 keys spread over the 6 partitions


def test_fresh_topic_has_six_partitions_and_auto_creation_is_off(
    kafka_bootstrap: str, fresh_topic: Callable[..., str]
) -> None:
    topic = fresh_topic()
    missing = f"{topic}-never-created"
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:  # asking for an unknown topic's metadata must not create it
        assert not consumer.partitions_for_topic(missing)
    finally:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        assert len(described["partitions"]) == 6
        assert all(len(p["replica_nodes"]) == 1 for p in described["partitions"])
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 6, "replication_factor": 1}})
        topics = admin.list_topics()
        assert topic in topics
        assert missing not in topics
    finally:
        admin.close()


def test_records_and_committed_offsets_survive_sigkill_of_the_broker(
    kafka_broker: KafkaBroker, fresh_topic: Callable[..., str]
) -> None:
    topic = fresh_topic("crash")
    group = f"g-{topic}"
    bootstrap = kafka_broker.bootstrap
    first = _messages(120, tag="before")
    _produce(bootstrap, topic, first)
    assert len(_consume(bootstrap, topic, 120, group=group, commit=True)) == 120

    old_pid = kafka_broker.pid
    kafka_broker.kill()
    assert not kafka_broker.is_running()
    assert not port_is_open(kafka_broker.port)

    kafka_broker.restart()
    assert kafka_broker.is_running()
    assert kafka_broker.pid != old_pid
    assert kafka_broker.bootstrap == bootstrap

    # every acknowledged record is still there
    everything = _consume(bootstrap, topic, 120)
    assert sorted(v for *_x, v in everything) == sorted(v for _k, v in first)
    # the group resumes after its committed offsets: only what is produced after the restart
    second = _messages(30, tag="after")
    _produce(bootstrap, topic, second)
    resumed = _consume(bootstrap, topic, 30, group=group)
    assert sorted(v for *_x, v in resumed) == sorted(v for _k, v in second)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(6)])
    finally:
        consumer.close()
    assert sum(ends.values()) == 150
