"""Replay by several processes (children split by stream id) ends in the same tables as one process."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, Text, delete, select

from shared.config import ServiceSettings
from shared.events.envelope import EventEnvelope
from shared.eventstore.store import EventStore
from shared.messaging.runner import ProjectionWorker, log_head, replay, stream_boundaries
from tests.backbone.support import append_streams, assignment


class PerChildProjection:
    """One row per child (stream): its event count and versions, and which process derived it."""

    parallel_rebuild = True

    def __init__(self) -> None:
        self.name = "per-child"
        self.metadata = MetaData()
        self.table = Table(
            "per_child",
            self.metadata,
            Column("stream_id", String(200), primary_key=True),
            Column("n", Integer, nullable=False),
            Column("versions", Text, nullable=False),
            Column("pid", Integer, nullable=False),
        )

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        streams = sorted({e.stream_id for e in events})
        stored = {
            r.stream_id: json.loads(r.versions)
            for r in conn.execute(select(self.table).where(self.table.c.stream_id.in_(streams)))
        }
        conn.execute(delete(self.table).where(self.table.c.stream_id.in_(streams)))
        for stream in streams:
            versions = sorted(stored.get(stream, []) + [e.version for e in events if e.stream_id == stream])
            self._write(conn, [versions], [stream])

    def rebuild_children(self, conn: Connection, children: Sequence[Sequence[EventEnvelope]]) -> None:
        self._write(
            conn, [sorted(e.version for e in c) for c in children], [c[0].stream_id for c in children]
        )

    def _write(self, conn: Connection, versions: list[list[int]], streams: list[str]) -> None:
        rows = [
            {"stream_id": s, "n": len(v), "versions": json.dumps(v), "pid": os.getpid()}
            for s, v in zip(streams, versions, strict=True)
        ]
        conn.execute(self.table.insert(), rows)

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(self.table))

    def state(self, engine: Engine) -> dict[str, tuple[int, list[int]]]:
        with engine.connect() as conn:
            return {r.stream_id: (r.n, json.loads(r.versions)) for r in conn.execute(select(self.table))}

    def writers(self, engine: Engine) -> set[int]:
        with engine.connect() as conn:
            return set(conn.execute(select(self.table.c.pid).distinct()).scalars())


def _settings(db_url: str) -> ServiceSettings:
    return ServiceSettings(transport="sql", event_store_url=db_url, database_url=db_url)


def test_three_processes_rebuild_the_same_tables_as_one_and_the_runner_goes_on(
    db_url: str, store_engine: Engine
) -> None:
    store = EventStore()
    append_streams(store_engine, store, streams=30, per_stream=4)
    settings = _settings(db_url)
    projection = PerChildProjection()
    worker = ProjectionWorker(projection, settings, store_engine=store_engine)
    worker.ensure_schema()

    assert replay(projection, settings, workers=1) == 120
    alone = projection.state(worker.engine)
    assert len(alone) == 30 and all(v == (4, [1, 2, 3, 4]) for v in alone.values())

    assert replay(projection, settings, workers=3) == 120
    assert projection.state(worker.engine) == alone
    assert len(projection.writers(worker.engine)) == 3  # three processes really shared the work

    # the checkpoint is the head: the ordinary runner applies only what comes after the replay
    with store_engine.begin() as conn:
        store.append(conn, [assignment(0, 5)], expected_version=4, content_hash="h0-5")
    assert ProjectionWorker(projection, settings, store_engine=store_engine).drain() == 1
    assert projection.state(worker.engine)[assignment(0, 5).stream_id] == (5, [1, 2, 3, 4, 5])


def test_boundaries_split_the_log_into_runs_of_whole_children(store_engine: Engine) -> None:
    append_streams(store_engine, EventStore(), streams=10, per_stream=3)
    cuts = stream_boundaries(store_engine, log_head(store_engine), 4)
    assert cuts == sorted(cuts) and len(set(cuts)) == len(cuts) == 3
    streams = sorted({assignment(s, 1).stream_id for s in range(10)})
    assert set(cuts) <= set(streams)  # every cut is a child's first event, so no child is split
    assert stream_boundaries(store_engine, log_head(store_engine), 1) == []
