"""A trivial projection and event factories for the backbone tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, Text, delete, select

from shared.events.catalogue import CaseworkerAssigned
from shared.events.envelope import EventEnvelope, stream_id_for_child
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import EventStore

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class CountingProjection:
    """Per stream: how many events and which versions, in the order they were applied.

    Raises on a caseworker id starting with "poison", to exercise retries and dead-lettering.
    """

    def __init__(self, name: str = "counting") -> None:
        self.name = name
        self.metadata = MetaData()
        self.table = Table(
            "counting",
            self.metadata,
            Column("stream_id", String(200), primary_key=True),
            Column("n", Integer, nullable=False),
            Column("versions", Text, nullable=False),
        )

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        for env in events:
            payload = env.payload
            if isinstance(payload, CaseworkerAssigned) and payload.caseworker_id.startswith("poison"):
                raise ValueError("poisoned on purpose")
            row = conn.execute(select(self.table).where(self.table.c.stream_id == env.stream_id)).first()
            if row is None:
                conn.execute(
                    self.table.insert().values(
                        stream_id=env.stream_id, n=1, versions=json.dumps([env.version])
                    )
                )
            else:
                versions = json.loads(row.versions) + [env.version]
                conn.execute(
                    self.table.update()
                    .where(self.table.c.stream_id == env.stream_id)
                    .values(n=row.n + 1, versions=json.dumps(versions))
                )

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(self.table))

    def state(self, engine: Engine) -> dict[str, tuple[int, list[int]]]:
        with engine.connect() as conn:
            return {
                r.stream_id: (r.n, json.loads(r.versions)) for r in conn.execute(select(self.table)).all()
            }


def assignment(
    stream: int, version: int, caseworker: str = "sr-anna", record: str | None = None
) -> EventEnvelope:
    return EventEnvelope.new(
        stream_id=stream_id_for_child("657", f"c{stream:05d}"),
        version=version,
        municipality="657",
        record_id=record or f"r-{stream}-{version}",
        occurred_at=T0 + timedelta(minutes=version),
        payload=CaseworkerAssigned(case_id=f"S-{stream}", caseworker_id=caseworker),
    )


def append_streams(engine: Engine, store: EventStore, streams: int, per_stream: int) -> list[EventEnvelope]:
    """Append `per_stream` events to each of `streams` streams, interleaved."""
    out = []
    for v in range(1, per_stream + 1):
        with engine.begin() as conn:
            for s in range(streams):
                out += store.append(
                    conn, [assignment(s, v)], expected_version=v - 1, content_hash=f"h{s}-{v}"
                )
    return out


def create_store(engine: Engine) -> None:
    store_metadata.create_all(engine)
