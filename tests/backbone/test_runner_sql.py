"""The consumer runner tailing the SQL event log, with its projection on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, func, select

from shared.config import ServiceSettings
from shared.eventstore.store import EventStore
from shared.messaging.runner import ProjectionWorker, replay
from shared.messaging.schema import dead_letters
from tests.backbone.support import CountingProjection, append_streams, assignment


def _worker(db_url: str, projection: CountingProjection, store_engine: Engine) -> ProjectionWorker:
    settings = ServiceSettings(transport="sql", event_store_url=db_url, database_url=db_url)
    worker = ProjectionWorker(projection, settings, store_engine=store_engine, retry_backoff=0.0)
    worker.ensure_schema()
    return worker


def test_projection_sees_every_event_once_and_replay_rebuilds_it(db_url: str, store_engine: Engine) -> None:
    store = EventStore()
    append_streams(store_engine, store, streams=20, per_stream=5)
    projection = CountingProjection()
    worker = _worker(db_url, projection, store_engine)
    assert worker.drain() == 100
    state = projection.state(worker.engine)
    assert len(state) == 20
    assert all(v == (5, [1, 2, 3, 4, 5]) for v in state.values())

    assert replay(CountingProjection(), worker.settings) == 100
    assert projection.state(worker.engine) == state


def test_an_event_fed_twice_changes_nothing(db_url: str, store_engine: Engine) -> None:
    store = EventStore()
    written = append_streams(store_engine, store, streams=2, per_stream=2)
    projection = CountingProjection()
    worker = _worker(db_url, projection, store_engine)
    worker.drain()
    before = projection.state(worker.engine)
    # The same events once more, as a redelivery would bring them.
    with worker.engine.begin() as conn:
        from shared.messaging.sources import Batch, Item

        batch = Batch([Item(e, e.to_bytes(), e.stream_id) for e in written])
        worker._handle(conn, worker.source(), batch)
    assert projection.state(worker.engine) == before
    assert worker.skipped_duplicates == len(written)


def test_poison_event_is_dead_lettered_and_later_events_still_processed(
    db_url: str, store_engine: Engine, tmp_path: Path
) -> None:
    store = EventStore()
    with store_engine.begin() as conn:
        store.append(conn, [assignment(1, 1)], expected_version=0, content_hash="1")
        store.append(conn, [assignment(1, 2, caseworker="poison-pill")], expected_version=1, content_hash="2")
        store.append(conn, [assignment(1, 3)], expected_version=2, content_hash="3")
        store.append(conn, [assignment(2, 1)], expected_version=0, content_hash="4")
    projection = CountingProjection()
    worker = _worker(db_url, projection, store_engine)
    worker.max_retries = 3
    assert worker.drain() == 4
    state = projection.state(worker.engine)
    assert state[assignment(1, 1).stream_id] == (2, [1, 3])
    assert state[assignment(2, 1).stream_id] == (1, [1])
    assert worker.retries == 3 and worker.dead_lettered == 1
    with worker.engine.connect() as conn:
        rows = conn.execute(select(dead_letters)).all()
        assert len(rows) == 1 and "poisoned on purpose" in rows[0].error
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 1


def test_a_database_outage_is_retried_never_dead_lettered(db_url: str, store_engine: Engine) -> None:
    """Given a projection whose database fails mid-batch, when the runner steps, then nothing is
    dead-lettered and nothing is marked processed; the next step applies the events normally."""
    import pytest
    from sqlalchemy.exc import OperationalError

    store = EventStore()
    append_streams(store_engine, store, streams=3, per_stream=2)
    projection = CountingProjection("outage")
    worker = _worker(db_url, projection, store_engine)
    real_apply = projection.apply
    failures = {"left": 1}

    def flaky_apply(conn, events):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        real_apply(conn, events)

    projection.apply = flaky_apply  # type: ignore[method-assign]
    with pytest.raises(OperationalError):
        worker.step()
    assert worker.dead_lettered == 0 and worker.retries == 0
    assert worker.drain() == 6
    assert worker.dead_lettered == 0
    assert all(v == (2, [1, 2]) for v in projection.state(worker.engine).values())
    with worker.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 0


def test_a_source_that_stalls_behind_the_log_is_reopened(db_url: str, store_engine: Engine) -> None:
    """Given a source that reports events behind it but hands none over (a Kafka client lost after
    a broker restart), when the worker runs past its stall limit, then it reopens the source and
    the new one brings the projection to the end of the log."""
    import time

    from shared.messaging.sources import Batch, SqlLogSource

    class Stuck(SqlLogSource):
        def poll(self, timeout: float) -> Batch:
            time.sleep(0.01)
            return Batch()

    store = EventStore()
    append_streams(store_engine, store, streams=4, per_stream=3)
    projection = CountingProjection("stall")
    opened: list[str] = []

    def factory(from_beginning: bool) -> SqlLogSource:
        kind = "stuck" if not opened else "healthy"
        opened.append(kind)
        return (Stuck if kind == "stuck" else SqlLogSource)(store_engine, projection.name, 1000)

    settings = ServiceSettings(transport="sql", event_store_url=db_url, database_url=db_url)
    worker = ProjectionWorker(projection, settings, store_engine=store_engine, source_factory=factory)
    worker.ensure_schema()
    worker.stall_seconds, worker.lag_interval = 0.3, 0.02
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and worker.processed < 12:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert opened[:2] == ["stuck", "healthy"]
    assert worker.reconnects == 1
    assert worker.processed == 12
    assert all(v == (3, [1, 2, 3]) for v in projection.state(worker.engine).values())


def test_the_worker_keeps_its_tables_analyzed_while_a_fresh_database_fills(
    db_url: str, store_engine: Engine
) -> None:
    """PostgreSQL: past 500 events the projection's tables are analyzed (autovacuum would wait a
    minute, planning the projection's lookups on a table it believes empty); SQLite: nothing."""
    append_streams(store_engine, EventStore(), streams=20, per_stream=30)
    worker = _worker(db_url, CountingProjection(), store_engine)
    assert worker.drain() == 600
    worker.statistics.wait(30)
    postgres = worker.engine.dialect.name == "postgresql"
    assert worker.statistics.runs == (1 if postgres else 0)
    if postgres:
        with worker.engine.connect() as conn:
            sql = "SELECT reltuples FROM pg_class WHERE relname = 'counting'"
            tuples = conn.exec_driver_sql(sql).scalar_one()
        assert tuples > 0
