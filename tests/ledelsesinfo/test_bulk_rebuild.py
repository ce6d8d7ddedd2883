"""The bulk rebuild gives the same rows and reports as the incremental projection, however the
children are split into pages, also when the incremental projection goes on from it; the stored event
form round-trips; the Fenwick node sums equal adding every change along its update path."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from services.ledelsesinfo import tables
from services.ledelsesinfo.domain.fenwick import node_sums, update_nodes
from services.ledelsesinfo.projection import decode_event, encode_event
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child
from tests.ledelsesinfo.test_projection import dump, rich_events

REPORTS = (
    ("weekly", "2026-W45", {}),
    ("weekly", "2026-W47", {}),
    ("weekly", "2026-W47", {"team": "syd"}),
    ("weekly", "2026-W47", {"cw": "anna"}),
    ("weekly", "2026-W47", {"cw": "anna", "team": "syd"}),
    ("monthly", "2026-11", {}),
    ("monthly", "2026-11", {"team": "nord"}),
    ("monthly", "2027-01", {}),
)


def _engine(tmp_path: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    tables.metadata.create_all(engine)
    return engine


def _children(events: list[EventEnvelope]) -> list[list[EventEnvelope]]:
    by_stream: dict[str, list[EventEnvelope]] = defaultdict(list)
    for e in events:
        by_stream[e.stream_id].append(e)
    return [by_stream[s] for s in sorted(by_stream)]


def _rebuild(h: Harness, pages: list[list[list[EventEnvelope]]]) -> None:
    for page in pages:
        with h.engine.begin() as conn:
            h.projection.rebuild_children(conn, page)


def _reports(h: Harness) -> list[object]:
    return [h.weekly(p, **kw) if kind == "weekly" else h.monthly(p, **kw) for kind, p, kw in REPORTS]


def test_bulk_rebuild_equals_incremental_apply(tmp_path: Path) -> None:
    events = rich_events()
    incremental = Harness(_engine(tmp_path, "inc.db"))
    incremental.feed(events)
    bulk = Harness(_engine(tmp_path, "bulk.db"))
    children = _children(events)
    # two pages; 657's children are split over both (the second page adds to rows the first wrote)
    _rebuild(bulk, [children[:2], children[2:]])
    assert dump(bulk.engine) == dump(incremental.engine)
    assert dump(bulk.engine)["ledelsesinfo_packed"]
    assert _reports(bulk) == _reports(incremental)
    assert _reports(bulk)[1]["open_cases"] == 1  # sa (sb closed on 20 Nov, sc opens in December)


def test_any_split_into_pages_gives_the_same_buckets(tmp_path: Path) -> None:
    """Pages that continue a municipality merge into its packed rows (summed, emptied rows removed)."""
    events = [*rich_events(), *_closing_children()]
    reference = Harness(_engine(tmp_path, "inc.db"))
    reference.feed(events)
    expected = dump(reference.engine)
    children = _children(events)
    for n, pages in enumerate((
        [[c] for c in children],
        [[c] for c in reversed(children)],
        [children[::2], children[1::2]],
    )):
        bulk = Harness(_engine(tmp_path, f"bulk{n}.db"))
        _rebuild(bulk, pages)
        assert dump(bulk.engine) == expected
        assert _reports(bulk) == _reports(reference)
        with bulk.engine.connect() as conn:
            for r in conn.execute(select(tables.packed)):
                entries = json.loads(r.doc)
                assert entries and entries == sorted(entries) and all(v != 0 for _b, _c, v in entries)


def _closing_children() -> list[EventEnvelope]:
    """Cases that open and close in different weeks: their state changes cancel in the Fenwick
    nodes above both weeks, across children (so merged packed entries come to 0)."""
    out: list[EventEnvelope] = []
    for i, (opened, closed) in enumerate((("2026-03-02 10:00", "2026-03-16 10:00"),
                                          ("2026-03-09 10:00", None),
                                          ("2026-01-05 10:00", "2026-03-10 10:00"))):
        c = Child(f"z{i}")
        c.received(f"u{i}", opened, team="syd")
        c.opened(f"s{i}", opened, uid=f"u{i}", team="syd")
        if closed:
            c.closed(f"s{i}", closed)
        out.extend(c.events)
    return out


def test_apply_after_a_bulk_rebuild_recomputes_from_stored_events(tmp_path: Path) -> None:
    """A late record for a child rebuilt in bulk subtracts what its stored events gave, so the result
    equals a projection that saw everything incrementally."""
    a = Child("late")
    a.received("u1", "2026-11-03 09:00", team="syd")
    a.received("u2", "2026-11-04 09:00", team="syd")
    first = [*rich_events(), *a.events]
    backfill = [a.assessed("u1", "2026-11-03 15:00"),
                a.opened("s1", "2026-11-03 16:00", uid="u1", team="syd")]
    bulk = Harness(_engine(tmp_path, "bulk.db"))
    _rebuild(bulk, [_children(first)])
    before = bulk.weekly("2026-W45", team="syd")
    bulk.feed(backfill)
    bulk.feed(backfill[:1])  # redelivered: nothing changes
    incremental = Harness(_engine(tmp_path, "inc.db"))
    incremental.feed(first)
    incremental.feed(backfill)
    assert dump(bulk.engine) == dump(incremental.engine)
    assert _reports(bulk) == _reports(incremental)
    after = bulk.weekly("2026-W45", team="syd")
    assert before["underretninger_unassessed"] == 2
    assert after["underretninger_unassessed"] == 1
    assert after["open_cases"] == before["open_cases"] + 1


def test_packed_rows_hold_sorted_non_zero_entries(tmp_path: Path) -> None:
    bulk = Harness(_engine(tmp_path, "bulk.db"))
    _rebuild(bulk, [_children(rich_events())])
    with bulk.engine.connect() as conn:
        packed = conn.execute(select(tables.packed)).all()
    assert {r.municipality for r in packed} == {"657", "101"}
    for r in packed:
        entries = json.loads(r.doc)
        assert entries == sorted(entries) and all(v != 0 for _b, _c, v in entries)


def test_stored_event_form_round_trips() -> None:
    for e in rich_events():
        doc = encode_event(e)
        head, data = doc.split("\n", 1)  # the envelope's fields as a JSON list, then the payload's text
        assert json.loads(head)[:2] == [2, e.event_id]
        assert data == e.data_json()
        assert decode_event(e.stream_id, e.municipality, doc) == e
        # rows written in the earlier forms: the payload's text inside the list, or the wire dict
        form1 = json.dumps([1, e.event_id, e.version, e.record_id, e.occurred_at.isoformat(),
                            e.recorded_at.isoformat(), e.correlation_id, e.type, e.schema_version,
                            e.position, e.data_json()], separators=(",", ":"), ensure_ascii=False)
        assert decode_event(e.stream_id, e.municipality, form1) == e
        wire = json.dumps(e.to_wire())
        assert decode_event(e.stream_id, e.municipality, wire) == e


@given(kind=st.sampled_from(["W", "M"]),
       changes=st.dictionaries(st.integers(-3, 17000), st.integers(-3, 3), max_size=25))
def test_node_sums_equal_the_update_paths(kind: str, changes: dict[int, int]) -> None:
    naive: dict[int, int] = defaultdict(int)
    for period, d in changes.items():
        for node in update_nodes(kind, period):  # type: ignore[arg-type]
            naive[node] += d
    assert node_sums(kind, changes) == {n: v for n, v in naive.items() if v}  # type: ignore[arg-type]
