"""`Deadline.overdue_span()` agrees with `Deadline.state_at()`: the figures count a deadline overdue at a
period's end exactly when the worklist would show it `overdue` just before that instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.casework.deadlines import Deadline

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TICK = timedelta(hours=1)
EPS = timedelta(microseconds=1)


def at(i: int) -> datetime:
    return T0 + i * TICK


ticks = st.integers(0, 12)
maybe = st.none() | ticks


@given(start=ticks, due=ticks, met=maybe, ended=maybe)
def test_span_matches_the_state(start: int, due: int, met: int | None, ended: int | None) -> None:
    d = Deadline(
        deadline="follow_up",
        child_id="c",
        starts_at=at(start),
        due=at(due),
        met_at=None if met is None else at(met),
        ended_at=None if ended is None else at(ended),
    )
    span = d.overdue_span()
    for i in range(-1, 15):
        for p in (at(i) - EPS, at(i), at(i) + EPS):
            overdue = d.state_at(p) == "overdue"
            if span is None:
                assert not overdue, (p, span)
                continue
            since, until = span
            if since < p and (until is None or p < until):
                assert overdue, (p, span)
            if p < since or (until is not None and p >= until):
                assert not overdue, (p, span)
        # the state just before an instant, as a period's end sees it
        p = at(i)
        just_before = d.state_at(p - EPS) == "overdue"
        expected = span is not None and span[0] < p and (span[1] is None or p <= span[1])
        assert just_before == expected, (p, span)


def test_a_deadline_due_before_it_starts_is_overdue_from_its_start() -> None:
    # a caseworker's next_due earlier than the follow-up itself
    d = Deadline(deadline="follow_up", child_id="c", starts_at=at(5), due=at(2))
    assert d.overdue_span() == (at(5), None)
    assert d.state_at(at(4)) is None and d.state_at(at(5)) == "overdue"


def test_met_or_ended_before_due_is_never_overdue() -> None:
    def receipt(**kw: datetime) -> Deadline:
        return Deadline(deadline="receipt", child_id="c", starts_at=at(0), due=at(5), **kw)  # type: ignore[arg-type]

    assert receipt(met_at=at(5)).overdue_span() is None
    assert receipt(ended_at=at(3)).overdue_span() is None
    assert receipt(met_at=at(9), ended_at=at(7)).overdue_span() == (at(5), at(7))  # met after the end
