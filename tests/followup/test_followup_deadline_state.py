"""A deadline's state at a moment (spec section 4): boundaries of due_soon, overdue, met, ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.casework.deadlines import Deadline

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def deadline(**kw: object) -> Deadline:
    base: dict[str, object] = {"deadline": "receipt", "child_id": "c", "starts_at": START, "due": DUE}
    base.update(kw)
    return Deadline(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("t", "state"),
    [
        (START - S, None),  # not started yet: not listed
        (START, "upcoming"),
        (DUE - timedelta(days=7) - S, "upcoming"),
        (DUE - timedelta(days=7), "due_soon"),  # exactly 7 days before: within 7 days
        (DUE - S, "due_soon"),
        (DUE, "due_soon"),  # due at t is not "due before t"
        (DUE + S, "overdue"),
        (DUE + timedelta(days=400), "overdue"),
    ],
)
def test_open_states(t: datetime, state: str | None) -> None:
    assert deadline().state_at(t) == state


@pytest.mark.parametrize(
    ("met_at", "t", "state"),
    [
        (DUE, DUE, "met_on_time"),  # met exactly at the due moment
        (DUE - S, DUE + timedelta(days=3), "met_on_time"),
        (DUE + S, DUE + S, "met_late"),
        (DUE + S, DUE, "due_soon"),  # before it was met
        (DUE + timedelta(days=2), DUE + timedelta(days=1), "overdue"),
        (START - timedelta(days=1), START, "met_on_time"),  # met before it started (a plan in advance)
    ],
)
def test_met_states(met_at: datetime, t: datetime, state: str) -> None:
    assert deadline(met_at=met_at).state_at(t) == state


def test_ended_without_being_met_is_no_longer_listed() -> None:
    ended = DUE + timedelta(days=2)
    d = deadline(ended_at=ended)
    assert d.state_at(DUE + timedelta(days=1)) == "overdue"
    assert d.state_at(ended) is None
    assert d.ended_unmet_at(ended)
    assert not d.ended_unmet_at(ended - S)


def test_met_before_the_end_stays_met() -> None:
    d = deadline(met_at=DUE + timedelta(days=1), ended_at=DUE + timedelta(days=2))
    assert d.state_at(DUE + timedelta(days=5)) == "met_late"
    assert not d.ended_unmet_at(DUE + timedelta(days=5))


def test_met_after_the_end_does_not_count() -> None:
    d = deadline(met_at=DUE + timedelta(days=3), ended_at=DUE - timedelta(days=1))
    assert d.state_at(DUE + timedelta(days=5)) is None
    assert d.state_at(DUE - timedelta(days=2)) == "due_soon"


def test_naive_moment_is_taken_as_utc() -> None:
    assert deadline().state_at(DUE.replace(tzinfo=None) + S) == "overdue"
