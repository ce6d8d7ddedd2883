"""`DecodedEvents`: a child's stored events read again (each batch that touches the child, each
GET /cases) are not decoded again, and what is read is always what `fu_events` holds."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.followup.projection import _EVENTS_OF, DecodedEvents, FollowupProjection
from shared.casework.views import case_view
from shared.events.envelope import EventEnvelope
from tests.followup.followup_factory import Stream, local
from tests.followup.test_followup_projection import apply_in_batches, new_engine


def _child(engine: Engine, projection: FollowupProjection, child: str = "c-cache") -> Stream:
    s = Stream(child_id=child)
    s.received("2026-11-02 09:00", "U1")
    s.opened("2026-11-02 16:00", uid="U1")
    s.assessed("2026-11-02 15:00", "U1")
    apply_in_batches(engine, projection, [s.events])
    return s


Given = tuple[Engine, FollowupProjection, Stream]


@pytest.fixture
def given(tmp_path: Path) -> Given:
    """A projection that has stored one child's events."""
    engine = new_engine(tmp_path)
    projection = FollowupProjection()
    return engine, projection, _child(engine, projection)


def test_a_second_read_of_a_child_decodes_nothing_and_gives_the_same_picture(given: Given) -> None:
    engine, projection, s = given
    with engine.connect() as conn:
        first = projection.picture(conn, s.stream_id)
        decodes = projection.decoded.decodes
        second = projection.picture(conn, s.stream_id)
    assert projection.decoded.decodes == decodes
    assert first is not None and second is not None
    at = local("2026-11-20 12:00")
    assert [case_view(second, c, at) for c in second.cases] == [case_view(first, c, at) for c in first.cases]


def test_a_late_event_is_read_beside_the_remembered_ones(given: Given) -> None:
    engine, projection, s = given
    with engine.connect() as conn:
        before = projection.picture(conn, s.stream_id)
    assert before is not None and before.cases
    case_id = next(iter(before.cases))
    late = s.closed("2026-11-10 10:00", case_id)
    decodes = projection.decoded.decodes
    apply_in_batches(engine, projection, [[late]])  # the batch re-derives the child: one new decode
    assert projection.decoded.decodes == decodes + 1
    with engine.connect() as conn:
        after = projection.picture(conn, s.stream_id)
    assert after is not None and after.cases[case_id].closed_at is not None
    assert projection.decoded.decodes == decodes + 1


def test_it_keeps_at_most_its_size_and_still_reads_right(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    projection = FollowupProjection()
    streams = [_child(engine, projection, f"c-{i}") for i in range(4)]
    projection.decoded = DecodedEvents(size=2)
    fresh = FollowupProjection()
    with engine.connect() as conn:
        for _ in range(2):
            for s in streams:
                got = projection.load_events(conn, [s.stream_id])[s.stream_id]
                want = fresh.load_events(conn, [s.stream_id])[s.stream_id]
                assert sorted(got, key=_key) == sorted(want, key=_key) == sorted(s.events, key=_key)
                assert len(projection.decoded._by_id) <= 2


def test_threads_share_it(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    projection = FollowupProjection()
    streams = [_child(engine, projection, f"c-t{i}") for i in range(6)]
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(_EVENTS_OF, {"ids": [s.stream_id for s in streams]})]
    cache = DecodedEvents(size=5)  # smaller than the rows: threads evict while others read
    want = {env.event_id: env for s in streams for env in s.events}
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(50):
                for row in rows:
                    assert cache.get(row) == want[row[1]]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache._by_id) <= 5


def _key(env: EventEnvelope) -> str:
    return env.event_id
