"""Property: any arrival order of a child's events gives the same picture (a DUBU backfill delivers late)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.casework.cadence import CadenceProfile
from shared.casework.calendar import Period
from shared.casework.child import project_child
from shared.events.catalogue import (
    CaseClosed,
    CaseOpened,
    CaseworkerAssigned,
    ChildConversationHeld,
    ChildPlanMade,
    EventPayload,
    FollowUpHeld,
    InvestigationCompleted,
    InvestigationStarted,
    MeasureEnded,
    MeasureStarted,
    ReceiptSent,
    SupervisionVisitHeld,
    UnderretningAssessed,
    UnderretningReceived,
    WaitlistEntered,
    WaitlistLeft,
)
from shared.events.codes import DEFAULT_MEASURE_TYPES
from shared.events.envelope import EventEnvelope, stream_id_for_child
from tests.followup.followup_factory import child_ref

BASE = datetime.fromisoformat("2026-01-01T00:00:00+01:00")
CHILD = "c-prop"
UIDS = st.sampled_from(["U1", "U2", "U3"])
CASES = st.sampled_from(["S1", "S2"])
MEASURES = st.sampled_from(["M1", "M2", "M3"])
KINDS = st.sampled_from(["screening", "afdaekning", "boernefaglig_undersoegelse"])
OFFERS = st.sampled_from(["familiebehandling", "plejefamilie"])


@st.composite
def measure_started(draw: st.DrawFn) -> MeasureStarted:
    mt = DEFAULT_MEASURE_TYPES[draw(st.sampled_from(sorted(DEFAULT_MEASURE_TYPES)))]
    return MeasureStarted(
        case_id=draw(CASES),
        measure_id=draw(MEASURES),
        measure_type=mt.code,
        step=mt.step,
        placement=mt.placement,
    )


@st.composite
def received(draw: st.DrawFn) -> UnderretningReceived:
    return UnderretningReceived(
        underretning_id=draw(UIDS),
        child=child_ref(CHILD),
        notifier=draw(st.sampled_from(["2", "8"])),
        professional=draw(st.booleans()),
        reasons=tuple(
            draw(st.lists(st.sampled_from(["barn_skole", "overgreb_andre"]), min_size=1, max_size=2))
        ),
        severity="bekymring",
        team_id=draw(st.sampled_from(["t1", "t2"])),
        case_id=draw(st.none() | CASES),
    )


PAYLOADS: st.SearchStrategy[EventPayload] = st.one_of(
    received(),
    st.builds(ReceiptSent, underretning_id=UIDS),
    st.builds(
        UnderretningAssessed, underretning_id=UIDS, acute=st.booleans(), decision=st.just("afdaekning")
    ),
    st.builds(
        CaseOpened,
        case_id=CASES,
        child=st.just(child_ref(CHILD)),
        team_id=st.just("t1"),
        underretning_id=st.none() | UIDS,
    ),
    st.builds(CaseworkerAssigned, case_id=CASES, caseworker_id=st.sampled_from(["sr-a", "sr-b"])),
    st.builds(InvestigationStarted, case_id=CASES, kind=KINDS),
    st.builds(InvestigationCompleted, case_id=CASES, kind=KINDS),
    st.builds(ChildConversationHeld, case_id=CASES, underretning_id=st.none() | UIDS),
    st.builds(ChildPlanMade, case_id=CASES),
    measure_started(),
    st.builds(
        FollowUpHeld,
        case_id=CASES,
        measure_id=MEASURES,
        next_due=st.none() | st.dates(date(2026, 1, 1), date(2027, 12, 31)),
        stable_placement_exemption=st.booleans(),
    ),
    st.builds(SupervisionVisitHeld, case_id=CASES, measure_id=MEASURES),
    st.builds(MeasureEnded, case_id=CASES, measure_id=MEASURES),
    st.builds(WaitlistEntered, case_id=CASES, offer_type=OFFERS),
    st.builds(WaitlistLeft, case_id=CASES, offer_type=OFFERS),
    st.builds(CaseClosed, case_id=CASES),
)

# Few distinct moments, so that ties in occurred_at (and in recorded_at) are common.
MINUTES = st.sampled_from(
    [0, 1, 60, 60 * 24, 60 * 24 * 3, 60 * 24 * 40, 60 * 24 * 100, 60 * 24 * 200, 60 * 24 * 400]
)


@st.composite
def child_events(draw: st.DrawFn) -> list[EventEnvelope]:
    n = draw(st.integers(min_value=1, max_value=30))
    events = []
    for i in range(n):
        at = BASE + timedelta(minutes=draw(MINUTES) + draw(st.integers(0, 2)))
        events.append(
            EventEnvelope(
                event_id=f"e{i:03d}",
                stream_id=stream_id_for_child("657", CHILD),
                version=i + 1,
                municipality="657",
                record_id=f"r{i}",
                occurred_at=at,
                recorded_at=at + timedelta(seconds=draw(st.integers(0, 1))),
                correlation_id="c",
                payload=draw(PAYLOADS),
            )
        )
    return events


TIGHT = CadenceProfile(non_placement_then=Period(1, "months"), placement_first_year=None)
CHANGE = BASE + timedelta(days=100)


def lookup(_m: str, t: datetime) -> CadenceProfile:
    return TIGHT if t >= CHANGE else CadenceProfile()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=child_events(), data=st.data())
def test_any_arrival_order_gives_the_same_picture(events: list[EventEnvelope], data: Any) -> None:
    shuffled = data.draw(st.permutations(events))
    expected = project_child(events, lookup)
    assert project_child(shuffled, lookup) == expected
    # and it is a function of the set: duplicates of the same event (a redelivery) change nothing
    assert project_child([*shuffled, *shuffled[:3]], lookup) == expected


@settings(max_examples=200, deadline=None)
@given(events=child_events())
def test_deadline_states_are_consistent(events: list[EventEnvelope]) -> None:
    p = project_child(events, lookup)
    keys = [d.key for d in p.deadlines]
    assert len(keys) == len(set(keys)), "deadline keys are unique"
    for d in p.deadlines:
        assert d.met_at is None or d.ended_at is None or d.met_at <= d.ended_at
        assert d.ended_at is None or d.ended_at >= d.starts_at
        for t in (d.starts_at, d.due, d.due + timedelta(days=8)):
            state = d.state_at(t)
            assert state in (None, "upcoming", "due_soon", "overdue", "met_on_time", "met_late")
            if t < d.starts_at:
                assert state is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=child_events(), data=st.data())
def test_projection_tables_same_for_any_arrival_order_and_batching(
    events: list[EventEnvelope], data: Any
) -> None:
    from sqlalchemy import select

    from services.followup.projection import FollowupProjection
    from services.followup.tables import fu_assignments, fu_cases, fu_deadlines
    from shared.db import make_engine

    def tables(batches: list[list[EventEnvelope]]) -> dict[str, list[Any]]:
        engine = make_engine("sqlite://")
        projection = FollowupProjection()
        projection.metadata.create_all(engine)
        for batch in batches:
            with engine.begin() as conn:
                projection.apply(conn, batch)
        out: dict[str, list[Any]] = {}
        with engine.connect() as conn:
            for table in (fu_cases, fu_deadlines, fu_assignments):
                rows = [
                    tuple(v for k, v in r._mapping.items() if k != "id") for r in conn.execute(select(table))
                ]
                out[table.name] = sorted(rows, key=repr)
        engine.dispose()
        return out

    shuffled = data.draw(st.permutations(events))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(shuffled) - 1)), max_size=5)))
    batches, start = [], 0
    for cut in [*cuts, len(shuffled)]:
        if cut > start:
            batches.append(shuffled[start:cut])
            start = cut
    assert tables(batches) == tables([events])
