"""A bulk replay applies the events of streams that are not a child's (a municipality's cadence
profile, `municipality-{m}`) first, through the ordinary path, and only then rebuilds the children,
although the log's (stream, version) order puts `municipality-...` after every `child-...`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, delete, select

from shared.casework.cadence import CadenceProfile
from shared.config import ServiceSettings
from shared.events.catalogue import CadenceProfileChanged, stream_id_for_municipality
from shared.events.envelope import EventEnvelope
from shared.eventstore.store import EventStore
from shared.messaging.runner import ProjectionWorker, log_head, replay, stream_boundaries
from shared.messaging.schema import checkpoints, processed_events
from tests.backbone.support import T0, append_streams


class FirstSeenProjection:
    """Writes down, in a table (processes share it), every event it is handed and by which path:
    `apply` (the ordinary one) or `rebuild` (a bulk rebuild's page), and which process."""

    parallel_rebuild = True

    def __init__(self) -> None:
        self.name = "first-seen"
        self.metadata = MetaData()
        self.seen = Table(
            "seen",
            self.metadata,
            Column("seq", Integer, primary_key=True, autoincrement=True),
            Column("path", String(10), nullable=False),
            Column("stream_id", String(200), nullable=False),
            Column("version", Integer, nullable=False),
            Column("pid", Integer, nullable=False),
        )

    def _write(self, conn: Connection, path: str, events: Sequence[EventEnvelope]) -> None:
        rows = [
            {"path": path, "stream_id": e.stream_id, "version": e.version, "pid": os.getpid()} for e in events
        ]
        if rows:
            conn.execute(self.seen.insert(), rows)

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None:
        self._write(conn, "apply", events)

    def rebuild_children(self, conn: Connection, children: Sequence[Sequence[EventEnvelope]]) -> None:
        self._write(conn, "rebuild", [e for child in children for e in child])

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(self.seen))

    def log(self, engine: Engine) -> list[tuple[str, str, int, int]]:
        with engine.connect() as conn:
            rows = conn.execute(select(self.seen).order_by(self.seen.c.seq)).all()
        return [(r.path, r.stream_id, r.version, r.pid) for r in rows]


def profile_change(municipality: str, version: int, target: int) -> EventEnvelope:
    return EventEnvelope.new(
        stream_id=stream_id_for_municipality(municipality),
        version=version,
        municipality=municipality,
        record_id=f"profile-{municipality}-{version}",
        occurred_at=T0 + timedelta(days=version),
        payload=CadenceProfileChanged(
            profile=CadenceProfile().to_json(), caseload_target=target, changed_by="chef"
        ),
    )


def append_log(store_engine: Engine, store: EventStore) -> tuple[list[EventEnvelope], list[EventEnvelope]]:
    """Profile changes before, among and after the children's events; (children's, profiles')."""
    profiles: list[EventEnvelope] = []
    with store_engine.begin() as conn:
        profiles += store.append(conn, [profile_change("657", 1, 20)], expected_version=0, content_hash="p1")
    children = append_streams(store_engine, store, streams=12, per_stream=2)
    with store_engine.begin() as conn:
        profiles += store.append(conn, [profile_change("167", 1, 18)], expected_version=0, content_hash="p2")
        profiles += store.append(conn, [profile_change("657", 2, 15)], expected_version=1, content_hash="p3")
    return children, profiles


@pytest.mark.parametrize("processes", [1, 3])
def test_other_streams_are_applied_first_then_children_only(
    db_url: str, store_engine: Engine, processes: int
) -> None:
    store = EventStore()
    children, profiles = append_log(store_engine, store)
    settings = ServiceSettings(transport="sql", event_store_url=db_url, database_url=db_url)
    projection = FirstSeenProjection()
    worker = ProjectionWorker(projection, settings, store_engine=store_engine)
    worker.ensure_schema()

    assert replay(projection, settings, workers=processes) == len(children) + len(profiles)
    seen = projection.log(worker.engine)
    n = len(profiles)
    # first, by the ordinary path in the replaying (parent) process, in log order: the profiles
    assert [(p, s, v) for p, s, v, _ in seen[:n]] == [("apply", e.stream_id, e.version) for e in profiles]
    assert {pid for *_, pid in seen[:n]} == {os.getpid()}
    # then the children, whole, by the rebuild, and nothing else
    rest = seen[n:]
    assert {p for p, *_ in rest} == {"rebuild"}
    assert sorted((s, v) for _, s, v, _ in rest) == sorted((e.stream_id, e.version) for e in children)
    if processes > 1:
        assert len({pid for *_, pid in rest}) == processes
    with worker.engine.connect() as conn:
        claimed = set(
            conn.execute(
                select(processed_events.c.event_id).where(processed_events.c.projection == projection.name)
            ).scalars()
        )
        checkpoint = conn.execute(
            select(checkpoints.c.position).where(checkpoints.c.projection == projection.name)
        ).scalar_one()
    assert {e.event_id for e in profiles} <= claimed  # the ordinary path's processed-event rows
    assert checkpoint == log_head(store_engine)

    # the runner goes on from the head: a later change comes through the ordinary path once
    with store_engine.begin() as conn:
        store.append(conn, [profile_change("657", 3, 12)], expected_version=2, content_hash="p4")
    assert ProjectionWorker(projection, settings, store_engine=store_engine).drain() == 1
    assert projection.log(worker.engine)[-1][:3] == ("apply", stream_id_for_municipality("657"), 3)


def test_boundaries_cut_only_the_children(store_engine: Engine) -> None:
    store = EventStore()
    children, _ = append_log(store_engine, store)
    cuts = stream_boundaries(store_engine, log_head(store_engine), 4)
    assert len(cuts) == 3 and all(cut.startswith("child-") for cut in cuts)
    # the runs hold about equal numbers of child events (the profiles are not counted)
    streams = sorted(e.stream_id for e in children)
    runs = [
        sum(1 for s in streams if (lo is None or s >= lo) and (hi is None or s < hi))
        for lo, hi in zip([None, *cuts], [*cuts, None], strict=True)
    ]
    assert sum(runs) == len(children) and max(runs) - min(runs) <= 2
