"""The projection: arrival order and batching do not matter, late records correct past periods, a
replay gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from services.ledelsesinfo import tables
from services.ledelsesinfo.domain.contributions import child_contributions
from services.ledelsesinfo.domain.periods import week_index
from services.ledelsesinfo.projection import decode_event
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child


def rich_events() -> list[EventEnvelope]:
    """Several children with every kind of record, in several teams and with caseworker changes."""
    a, b, c, d = Child("a"), Child("b"), Child("c"), Child("d", municipality="101")
    a.received("ua1", "2026-10-05 08:40", notifier="3", team="syd")
    a.assessed("ua1", "2026-10-05 13:10")
    a.receipt("ua1", "2026-10-06 09:00")
    a.opened("sa", "2026-10-05 14:00", team="syd", uid="ua1")
    a.assigned("sa", "anna", "2026-10-05 14:05")
    a.inv_started("sa", "2026-10-06 10:00")
    a.conversation("2026-10-09 15:00", case="sa")
    a.inv_completed("sa", "2026-10-30 12:00")
    a.wait_in("sa", "familiebehandling", "2026-10-30 12:30")
    a.wait_out("sa", "familiebehandling", "2026-11-09 09:00")
    a.measure("sa", "ma", "familiebehandling", "2026-11-09 09:00", cost=18500)
    a.follow_up("sa", "ma", "2026-11-16 10:00", next_due="2026-12-14")
    a.assigned("sa", "bo", "2026-11-17 08:00")
    a.received("ua2", "2026-11-20 10:00", notifier="8", reasons=("overgreb_andre",), team="syd")
    b.received(
        "ub1", "2026-09-14 09:00", notifier="6", severity="akut", reasons=("overgreb_foraeldre",), team="nord"
    )
    b.assessed("ub1", "2026-09-14 10:00", decision="akut_indsats", acute=True)
    b.opened("sb", "2026-09-14 10:30", team="nord", uid="ub1")
    b.assigned("sb", "carl", "2026-09-14 10:35")
    b.plan("sb", "2026-09-14 12:00")
    b.measure("sb", "mb", "plejefamilie", "2026-09-14 13:00", cost=42000)
    b.follow_up("sb", "mb", "2026-09-28 10:00")
    b.visit("sb", "mb", "2026-11-10 10:00")
    b.follow_up("sb", "mb", "2026-11-09 10:00", exemption=True)
    b.measure_ended("sb", "mb", "2026-11-20 10:00")
    b.closed("sb", "2026-11-20 12:00")
    c.received("uc1", "2026-11-22 23:30", notifier="2", team="syd")
    c.received("uc2", "2026-12-01 08:00", notifier="2", team="syd")
    c.opened("sc", "2026-12-01 09:00", team="syd")
    c.assigned("sc", "anna", "2026-12-01 09:00")
    c.measure("sc", "mc", "opholdssted", "2026-12-03 09:00", cost=70000)
    c.measure("sc", "mc2", "raadgivning", "2027-01-10 09:00")
    c.measure_ended("sc", "mc", "2027-01-10 09:00")
    d.received("ud1", "2026-11-02 11:00", notifier="4", severity="alvorlig", team="vest")
    d.assessed("ud1", "2026-11-02 15:00")
    return [*a.events, *b.events, *c.events, *d.events]


def dump(engine: Engine) -> dict[str, Any]:
    """Every row of the derived tables (the stored events by id): a projection's whole state."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in (tables.packed, tables.children):
            out[table.name] = sorted(tuple(r) for r in conn.execute(select(table)))
        out["events"] = sorted(r[0] for r in conn.execute(select(tables.events.c.event_id)))
    return out


raw_tables = dump


def bucket_sums(engine: Engine) -> dict[tuple[Any, ...], int]:
    """(municipality, kind, team, caseworker, mode, position, bucket, code) -> value."""
    with engine.connect() as conn:
        return {
            (r.municipality, r.kind, r.team_id, r.caseworker_id, r.mode, r.pos, b, c): v
            for r in conn.execute(select(tables.packed)) for b, c, v in json.loads(r.doc)
        }


def apply_in_batches(h: Harness, events: list[EventEnvelope], sizes: list[int]) -> None:
    i, k = 0, 0
    while i < len(events):
        n = sizes[k % len(sizes)] if sizes else len(events)
        h.feed(events[i : i + n])
        i, k = i + n, k + 1


def test_zero_rows_are_removed_and_tables_hold_only_sums(h: Harness) -> None:
    events = rich_events()
    h.feed(events[:25])
    h.feed(events[25:])
    with h.engine.connect() as conn:
        rows = conn.execute(select(tables.packed)).all()
    assert rows
    for r in rows:
        entries = json.loads(r.doc)
        assert entries and entries == sorted(entries) and all(v != 0 for _b, _c, v in entries)
    sums = bucket_sums(h.engine)
    assert sums[("101", "W", "", "", "p", week_index("2026-W45"), "underretninger_received", "")] == 1
    assert sums[("657", "W", "syd", "", "p", week_index("2026-W47"), "underretninger_received", "")] == 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arrival_order_and_batching_do_not_matter(tmp_path: Path, data: st.DataObject) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'prop.db'}")
    tables.metadata.create_all(engine)
    h = Harness(engine)
    events = rich_events()
    with engine.begin() as conn:
        h.projection.reset(conn)
    h.feed(events)  # reference: one batch, in order
    reference = dump(engine)
    assert reference["ledelsesinfo_packed"] and reference["events"]
    shuffled = data.draw(st.permutations(events), label="arrival order")
    sizes = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=6), label="batch sizes")
    with engine.begin() as conn:
        h.projection.reset(conn)
    apply_in_batches(h, shuffled, sizes)
    assert dump(engine) == reference
    engine.dispose()


def test_contributions_ignore_arrival_order() -> None:
    events = [e for e in rich_events() if e.stream_id == "child-657-a"]
    assert child_contributions(events) == child_contributions(list(reversed(events)))


def test_late_record_corrects_past_periods(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-11-03 09:00")
    c.received("u2", "2026-11-04 09:00")
    h.feed(c)
    assert h.weekly("2026-W45")["underretninger_unassessed"] == 2
    assert h.weekly("2026-W46")["underretninger_unassessed"] == 2
    assert h.weekly("2026-W45")["acute_assessment_on_time_share"]["denominator"] == 2
    # a DUBU backfill weeks later: u1 was assessed on time on 3 Nov, and a case was opened then
    backfill = [
        c.assessed("u1", "2026-11-03 15:00"),
        c.opened("s1", "2026-11-03 16:00", uid="u1"),
    ]
    h.feed(backfill)
    w45 = h.weekly("2026-W45")
    assert w45["underretninger_unassessed"] == 1
    assert w45["acute_assessment_on_time_share"] == {"value": 0.5, "numerator": 1, "denominator": 2}
    assert w45["open_cases"] == 1
    assert h.weekly("2026-W44")["open_cases"] == 0
    # the same as a projection that saw everything at once
    fresh_engine = make_engine(f"sqlite:///{Path(str(h.engine.url.database)).with_suffix('.fresh.db')}")
    tables.metadata.create_all(fresh_engine)
    fresh = Harness(fresh_engine)
    fresh.feed(c)
    assert dump(fresh_engine) == dump(h.engine)
    fresh_engine.dispose()


def test_replay_gives_the_same_numbers(h: Harness) -> None:
    events = rich_events()
    apply_in_batches(h, events, [5])
    before = (
        h.weekly("2026-W47"),
        h.monthly("2026-11"),
        h.weekly("2026-W47", team="syd"),
        h.weekly("2026-W47", cw="anna"),
        h.monthly("2027-01"),
    )
    with h.engine.begin() as conn:
        h.projection.reset(conn)
    assert h.weekly("2026-W47")["open_cases"] == 0
    apply_in_batches(h, list(reversed(events)), [7])
    after = (
        h.weekly("2026-W47"),
        h.monthly("2026-11"),
        h.weekly("2026-W47", team="syd"),
        h.weekly("2026-W47", cw="anna"),
        h.monthly("2027-01"),
    )
    assert after == before


def test_redelivered_events_change_nothing(h: Harness) -> None:
    events = rich_events()
    h.feed(events)
    reference = raw_tables(h.engine)
    h.feed(events[:10])
    assert raw_tables(h.engine) == reference


def test_municipalities_are_kept_apart(h: Harness) -> None:
    h.feed(rich_events())
    assert h.weekly("2026-W45", municipality="101")["underretninger_received"] == 1
    assert h.weekly("2026-W45")["underretninger_received"] == 0
    assert h.monthly("2026-11", municipality="101")["underretninger_by_severity_12m"]["alvorlig"] == 1


def test_events_round_trip_through_the_stored_form(h: Harness, tmp_path: Path) -> None:
    """Children recomputed from their stored events give the same buckets as from the originals."""
    events = rich_events()
    h.feed(events[:20])
    h.feed(events[20:])  # recomputes the children from their stored events (old and new sets)
    with h.engine.connect() as conn:
        stored = {r.event_id: decode_event(r.stream_id, r.municipality, r.doc)
                  for r in conn.execute(select(tables.events))}
    assert stored == {e.event_id: e for e in events}
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    tables.metadata.create_all(reference)
    Harness(reference).feed(events)  # never reads a stored event
    assert dump(h.engine) == dump(reference)
    reference.dispose()
