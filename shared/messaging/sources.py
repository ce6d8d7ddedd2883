"""Where a projection's events come from: the SQL event log (by global position) or Kafka.

Both hand the runner batches of `Item`s. An item whose bytes do not decode to a known event is a
poison message: it carries the error instead of an envelope and goes to the dead-letter sink.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from sqlalchemy import Connection, Engine, bindparam, select, update

from shared.db import read_only
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events
from shared.eventstore.store import row_to_envelope
from shared.messaging.kafka import make_consumer, make_producer
from shared.messaging.schema import checkpoints

log = logging.getLogger(__name__)

CORRELATION_HEADER = "correlation_id"


def header_value(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """A Kafka record header as text (None when absent or not UTF-8)."""
    for key, value in headers or ():
        if key == name and value:
            try:
                return bytes(value).decode()
            except UnicodeDecodeError:
                return None
    return None


@dataclass(slots=True)
class Item:
    envelope: EventEnvelope | None
    raw: bytes
    key: str
    error: str | None = None
    position: int | None = None  # SQL log position, when known
    origin: str = ""  # "topic/partition/offset" for Kafka
    correlation_id: str | None = None  # the Kafka header, when the relay set one


@dataclass(slots=True)
class Batch:
    items: list[Item] = field(default_factory=list)
    last_position: int | None = None

    def __len__(self) -> int:
        return len(self.items)


class Source(Protocol):
    def load(self, conn: Connection) -> None:
        """Read where this projection stopped (called in a projection-DB transaction)."""

    def poll(self, timeout: float) -> Batch: ...

    def record_progress(self, conn: Connection, batch: Batch) -> None:
        """Write the checkpoint in the projection's transaction (before commit)."""

    def acknowledge(self) -> None:
        """After the projection's transaction committed (Kafka: commit offsets)."""

    def dead_letter(self, item: Item, error: str, projection: str) -> None: ...

    def lag(self) -> int: ...

    def close(self) -> None: ...


# --- SQL event log ----------------------------------------------------------------------------


# built once: each poll and each batch runs them (building one costs more than running it)
_EVENTS_AFTER = (
    select(events)
    .where(events.c.position > bindparam("after"))
    .order_by(events.c.position)
    .limit(bindparam("n"))
)
_MOVE_CHECKPOINT = (
    update(checkpoints).where(checkpoints.c.projection == bindparam("name")).values(position=bindparam("to"))
)


class SqlLogSource:
    """Tails the `events` table by global position; the checkpoint lives in the projection DB."""

    def __init__(self, store_engine: Engine, projection: str, batch_size: int = 1000) -> None:
        self.store_engine = store_engine
        self.reader = read_only(store_engine)  # a snapshot: polling never holds up intake's writers
        self.projection = projection
        self.batch_size = batch_size
        self.position = 0

    def load(self, conn: Connection) -> None:
        pos = conn.execute(
            select(checkpoints.c.position).where(checkpoints.c.projection == self.projection)
        ).scalar()
        self.position = int(pos or 0)

    def poll(self, timeout: float) -> Batch:
        with self.reader.connect() as conn:
            rows = conn.execute(_EVENTS_AFTER, {"after": self.position, "n": self.batch_size}).all()
        batch = Batch()
        for row in rows:
            try:
                env: EventEnvelope | None = row_to_envelope(row)
                error = None
            except Exception as exc:  # a row this code cannot read: dead-letter it, go on
                env, error = None, f"undecodable event: {exc!r}"
            batch.items.append(
                Item(env, row.data.encode(), row.stream_id, error=error, position=row.position)
            )
        if rows:
            batch.last_position = rows[-1].position
        return batch

    def record_progress(self, conn: Connection, batch: Batch) -> None:
        if batch.last_position is None:
            return
        progress = {"name": self.projection, "to": batch.last_position}
        updated = conn.execute(_MOVE_CHECKPOINT, progress).rowcount
        if not updated:
            conn.execute(
                checkpoints.insert().values(projection=self.projection, position=batch.last_position)
            )

    def acknowledge(self) -> None:
        pass

    def advance(self, batch: Batch) -> None:
        if batch.last_position is not None:
            self.position = batch.last_position

    def dead_letter(self, item: Item, error: str, projection: str) -> None:
        pass  # the runner's dead_letters table is the SQL transport's dead-letter sink

    def lag(self) -> int:
        with self.reader.connect() as conn:
            head = conn.execute(
                select(events.c.position).order_by(events.c.position.desc()).limit(1)
            ).scalar()
        return max(0, int(head or 0) - self.position)

    def oldest_unprocessed_at(self) -> str | None:
        """`recorded_at` of the first event not yet applied (None when caught up), for lag in seconds."""
        with self.reader.connect() as conn:
            at: str | None = conn.execute(
                select(events.c.recorded_at)
                .where(events.c.position > self.position)
                .order_by(events.c.position)
                .limit(1)
            ).scalar()
        return at

    def close(self) -> None:
        pass


# --- Kafka ------------------------------------------------------------------------------------


class _SeekToBeginning(ConsumerRebalanceListener):
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.done: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        fresh = [tp for tp in assigned if tp not in self.done]
        if fresh:
            self.consumer.seek_to_beginning(*fresh)
            self.done.update(fresh)


def consumer_group(projection: str, configured: str = "") -> str:
    """The Kafka consumer group of a projection: the configured one, else `projection-<name>`."""
    return configured or f"projection-{projection}"


GROUP_TIMEOUT_MS = 5000  # `group_committed`'s broker calls


class KafkaSource:
    """Consumes the events topic in a consumer group named after the projection.

    Offsets are committed only in `acknowledge`, after the projection's DB commit. Exactly-once
    in effect comes from the runner's processed-event rows, written in that same DB commit.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        dlq_topic: str,
        projection: str,
        *,
        from_beginning: bool = False,
        group_id: str = "",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.consumer = make_consumer(bootstrap, group_id=group_id or consumer_group(projection))
        if from_beginning:
            self.consumer.subscribe([topic], listener=_SeekToBeginning(self.consumer))
        else:
            self.consumer.subscribe([topic])
        self._dlq: KafkaProducer | None = None

    def load(self, conn: Connection) -> None:
        pass

    def poll(self, timeout: float) -> Batch:
        polled = self.consumer.poll(timeout_ms=int(timeout * 1000), max_records=1000)
        batch = Batch()
        for tp, records in polled.items():
            for rec in records:
                origin = f"{tp.topic}/{tp.partition}/{rec.offset}"
                key = rec.key.decode() if rec.key else ""
                try:
                    env: EventEnvelope | None = EventEnvelope.from_bytes(rec.value)
                    error = None
                except Exception as exc:
                    env, error = None, f"undecodable message: {exc!r}"
                cid = header_value(rec.headers, CORRELATION_HEADER)
                batch.items.append(Item(env, rec.value, key, error=error, origin=origin, correlation_id=cid))
        return batch

    def record_progress(self, conn: Connection, batch: Batch) -> None:
        pass

    def acknowledge(self) -> None:
        self.consumer.commit()

    def advance(self, batch: Batch) -> None:
        pass

    def dead_letter(self, item: Item, error: str, projection: str) -> None:
        if self._dlq is None:
            self._dlq = make_producer(self.bootstrap, f"dlq-{projection}")
        headers = [
            ("error", error[:2000].encode()),
            ("projection", projection.encode()),
            ("origin", item.origin.encode()),
        ]
        self._dlq.send(self.dlq_topic, key=item.key.encode(), value=item.raw, headers=headers).get(timeout=30)

    def assigned_end_lag(self) -> int | None:
        """Messages between our position and the end; None before partitions are assigned."""
        assigned = self.consumer.assignment()
        if not assigned:
            return None
        ends = self.consumer.end_offsets(list(assigned))
        return sum(max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned)

    def group_committed(self) -> tuple[int, int] | None:
        """(committed, end): the sums over every partition of the topic of the offsets the group
        has committed (an uncommitted partition counts 0), whoever holds the partitions, and of the
        partitions' end offsets; None when the topic's partitions are not known yet. `committed`
        grows while any member of the group consumes; it equals `end` when nothing waits."""
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            return None
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        committed = sum(self.consumer.committed(tp, timeout_ms=GROUP_TIMEOUT_MS) or 0 for tp in tps)
        return committed, sum(self.consumer.end_offsets(tps, timeout_ms=GROUP_TIMEOUT_MS).values())

    def topic_has_partitions(self) -> bool:
        """The topic's partitions are in this client's metadata (so an empty assignment is not for
        want of partitions)."""
        return bool(self.consumer.partitions_for_topic(self.topic))

    def lag(self) -> int:
        lag = self.assigned_end_lag()
        return 0 if lag is None else lag

    def close(self) -> None:
        if self._dlq is not None:
            self._dlq.close(timeout=5)
        self.consumer.close(autocommit=False)
