"""The event store: append with optimistic concurrency and record idempotency, read by stream or
by global position. All writes happen in the caller's transaction so that intake's own tables,
the events and their outbox rows commit together (no dual writes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from shared.events.catalogue import decode_payload
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events, outbox


class ConcurrencyError(Exception):
    """Another writer appended to the stream at the same version first."""


class DuplicateRecordError(Exception):
    """The (municipality, record_id) is already in the log."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    position: int
    content_hash: str


class EventStore:
    """Append-only event log on SQLAlchemy Core.

    `outbox_topic`: when set, every appended event also gets an outbox row in the same
    transaction, for the relay to publish to Kafka. `serialize_appends`: on PostgreSQL, take a
    transaction-level advisory lock so positions become visible in order (needed only when
    projections tail the SQL log by position instead of consuming Kafka).
    """

    def __init__(self, *, outbox_topic: str | None = None, serialize_appends: bool = False) -> None:
        self.outbox_topic = outbox_topic
        self.serialize_appends = serialize_appends

    # --- writing ---------------------------------------------------------------------------

    def append(
        self,
        conn: Connection,
        new_events: Sequence[EventEnvelope],
        *,
        expected_version: int,
        content_hash: str,
    ) -> list[EventEnvelope]:
        """Append events of ONE stream after `expected_version`; returns them with positions.

        Raises ConcurrencyError if the stream moved on, DuplicateRecordError if the record id
        is taken. Nothing is written in either case (a savepoint is rolled back).
        """
        if not new_events:
            return []
        stream_ids = {e.stream_id for e in new_events}
        if len(stream_ids) != 1:
            raise ValueError("append takes the events of one stream")
        if self.serialize_appends and conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        stored: list[EventEnvelope] = []
        try:
            with conn.begin_nested():
                for offset, env in enumerate(new_events, start=1):
                    if env.version != expected_version + offset:
                        raise ValueError("event versions must follow expected_version")
                    position = conn.execute(
                        insert(events).returning(events.c.position),
                        {
                            "event_id": env.event_id,
                            "stream_id": env.stream_id,
                            "version": env.version,
                            "type": env.type,
                            "schema_version": env.schema_version,
                            "municipality": env.municipality,
                            "record_id": env.record_id,
                            "occurred_at": env.occurred_at.isoformat(),
                            "recorded_at": env.recorded_at.isoformat(),
                            "correlation_id": env.correlation_id,
                            "content_hash": content_hash,
                            "data": env.data_json(),
                        },
                    ).scalar_one()
                    placed = env.with_position(position)
                    stored.append(placed)
                    if self.outbox_topic:
                        conn.execute(
                            insert(outbox),
                            {
                                "position": position,
                                "topic": self.outbox_topic,
                                "key": placed.stream_id,
                                "payload": placed.to_bytes(),
                                "created_at": datetime.now(UTC).isoformat(),
                            },
                        )
        except IntegrityError as exc:
            message = str(exc.orig)
            if "record" in message:
                raise DuplicateRecordError(new_events[0].record_id) from None
            raise ConcurrencyError(new_events[0].stream_id) from None
        return stored

    # --- reading ---------------------------------------------------------------------------

    def stream_version(self, conn: Connection, stream_id: str) -> int:
        return int(
            conn.execute(
                select(func.coalesce(func.max(events.c.version), 0)).where(events.c.stream_id == stream_id)
            ).scalar_one()
        )

    def find_record(self, conn: Connection, municipality: str, record_id: str) -> StoredRecord | None:
        row = conn.execute(
            select(events.c.position, events.c.content_hash).where(
                events.c.municipality == municipality, events.c.record_id == record_id
            )
        ).first()
        return StoredRecord(row.position, row.content_hash) if row else None

    def read_stream(self, conn: Connection, stream_id: str) -> list[EventEnvelope]:
        rows = conn.execute(
            select(events).where(events.c.stream_id == stream_id).order_by(events.c.version)
        ).all()
        return [row_to_envelope(r) for r in rows]

    def read_all(self, conn: Connection, after_position: int, limit: int = 1000) -> list[EventEnvelope]:
        rows = conn.execute(
            select(events).where(events.c.position > after_position).order_by(events.c.position).limit(limit)
        ).all()
        return [row_to_envelope(r) for r in rows]

    def head_position(self, conn: Connection) -> int:
        return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())

    def count(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def row_to_envelope(row: object) -> EventEnvelope:
    r = row._mapping  # type: ignore[attr-defined]
    return EventEnvelope(
        event_id=r["event_id"],
        stream_id=r["stream_id"],
        version=r["version"],
        municipality=r["municipality"],
        record_id=r["record_id"],
        occurred_at=datetime.fromisoformat(r["occurred_at"]),
        recorded_at=datetime.fromisoformat(r["recorded_at"]),
        correlation_id=r["correlation_id"],
        payload=decode_payload(r["type"], r["schema_version"], json.loads(r["data"])),
        position=r["position"],
    )
