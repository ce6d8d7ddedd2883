"""The event store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from shared.eventstore.store import ConcurrencyError, DuplicateRecordError, EventStore
from tests.backbone.support import append_streams, assignment


def test_append_then_read_back_in_order(store_engine: Engine) -> None:
    store = EventStore()
    written = append_streams(store_engine, store, streams=3, per_stream=4)
    with store_engine.connect() as conn:
        stream = store.read_stream(conn, written[0].stream_id)
        everything = store.read_all(conn, after_position=0)
        assert store.stream_version(conn, written[0].stream_id) == 4
    assert [e.version for e in stream] == [1, 2, 3, 4]
    assert [e.event_id for e in everything] == [e.event_id for e in written]
    assert [e.position for e in everything] == sorted(e.position for e in everything)
    assert everything[0].payload == written[0].payload
    assert everything[0].occurred_at == written[0].occurred_at


def test_duplicate_record_id_appends_nothing(store_engine: Engine) -> None:
    store = EventStore()
    with store_engine.begin() as conn:
        store.append(conn, [assignment(1, 1, record="dubu-1")], expected_version=0, content_hash="a")
    with pytest.raises(DuplicateRecordError), store_engine.begin() as conn:
        store.append(conn, [assignment(2, 1, record="dubu-1")], expected_version=0, content_hash="a")
    with store_engine.connect() as conn:
        assert store.count(conn) == 1
        found = store.find_record(conn, "657", "dubu-1")
    assert found is not None and found.content_hash == "a"


def test_two_writers_at_the_same_version_one_wins(store_engine: Engine) -> None:
    store = EventStore()
    with store_engine.begin() as conn:
        store.append(conn, [assignment(7, 1)], expected_version=0, content_hash="a")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer(name: str) -> None:
        barrier.wait()
        try:
            with store_engine.begin() as conn:
                store.append(
                    conn,
                    [assignment(7, 2, caseworker=name, record=name)],
                    expected_version=1,
                    content_hash=name,
                )
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "won"]
    with store_engine.connect() as conn:
        assert [e.version for e in store.read_stream(conn, assignment(7, 1).stream_id)] == [1, 2]


def test_outbox_row_is_written_in_the_same_transaction(store_engine: Engine) -> None:
    from sqlalchemy import func, select

    from shared.eventstore.schema import outbox

    store = EventStore(outbox_topic="t")
    with pytest.raises(RuntimeError), store_engine.begin() as conn:
        store.append(conn, [assignment(1, 1)], expected_version=0, content_hash="a")
        raise RuntimeError("the caller's transaction fails after the append")
    with store_engine.begin() as conn:
        store.append(conn, [assignment(2, 1)], expected_version=0, content_hash="b")
    with store_engine.connect() as conn:
        assert store.count(conn) == 1
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1
