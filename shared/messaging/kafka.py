"""Kafka adapters (kafka-python 3.0): topic creation, a safe producer, a manual-commit consumer."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

# Events are the system of record's copy on Kafka: keep them for good so a projection can replay.
_TOPIC_CONFIG = {"retention.ms": "-1", "min.insync.replicas": "1"}


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> None:
    """Create the topics if they do not exist yet (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="underretning-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name=t, num_partitions=partitions, replication_factor=1, topic_configs=_TOPIC_CONFIG)
            for t in topics
            if t not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()


def make_producer(bootstrap: str, client_id: str) -> KafkaProducer:
    """acks=all, idempotent, ordered per partition; sends are checked by the caller's futures."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        retries=2147483647,
        delivery_timeout_ms=30000,
        request_timeout_ms=10000,
        linger_ms=5,
        compression_type=None,
        max_block_ms=10000,
        allow_auto_create_topics=False,
    )


def make_consumer(bootstrap: str, group_id: str, topic: str | None = None) -> KafkaConsumer:
    """A consumer that never commits on its own: offsets are committed after the database commit."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        max_poll_interval_ms=300000,
        isolation_level="read_committed",
    )
    if topic:
        consumer.subscribe([topic])
    return consumer
