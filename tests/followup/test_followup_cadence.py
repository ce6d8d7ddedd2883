"""Cadence profiles: JSON round trip and validation, and which change is in force when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.followup.api import parse_at, parse_states
from shared.casework.cadence import HERNING, CadenceProfile, ProfileChange, ProfileTimeline
from shared.casework.calendar import Period


def test_herning_is_the_default() -> None:
    assert HERNING.placement_first == Period(2, "weeks")
    assert HERNING.placement_first_year == Period(6, "weeks")
    assert HERNING.foster_family_after_first_year == Period(3, "months")
    assert HERNING.placement_after_first_year == Period(6, "weeks")
    assert HERNING.non_placement_first == Period(4, "weeks")
    assert HERNING.non_placement_then == Period(3, "months")
    assert HERNING.is_foster_family("plejefamilie") and HERNING.is_foster_family("netvaerksanbringelse")
    assert not HERNING.is_foster_family("opholdssted")


def test_json_round_trip_and_partial_update() -> None:
    assert CadenceProfile.from_json(HERNING.to_json()) == HERNING
    changed = CadenceProfile.from_json({"non_placement_then": None, "child_conversation_days": 5})
    assert changed.non_placement_then is None
    assert changed.child_conversation_days == 5
    assert changed.placement_first == HERNING.placement_first
    assert CadenceProfile.from_json({"placement_first": "10 days"}).placement_first == Period(10, "days")


@pytest.mark.parametrize(
    "doc",
    [
        {"unknown": 1},
        {"placement_first": {"amount": 0, "unit": "weeks"}},
        {"placement_first": {"amount": 2, "unit": "years"}},
        {"placement_first": {"amount": 2, "unit": "weeks", "extra": 1}},
        {"placement_first": {"amount": True, "unit": "weeks"}},
        {"placement_first": 14},
        {"placement_first": "two weeks"},
        {"child_conversation_days": -1},
        {"child_conversation_days": 1.5},
        {"foster_family_types": "plejefamilie"},
    ],
)
def test_bad_profiles_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CadenceProfile.from_json(doc)


def test_timeline_answers_what_was_in_force() -> None:
    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    tight = CadenceProfile(non_placement_then=Period(1, "months"))
    timeline = ProfileTimeline(
        [
            ProfileChange("657", t0 + timedelta(days=10), "b", HERNING, 15),
            ProfileChange("657", t0, "a", tight, 20),
        ],
        default_target=25,
    )
    assert timeline.profile("657", t0 - timedelta(seconds=1)) == HERNING
    assert timeline.target("657", t0 - timedelta(seconds=1)) == 25
    assert timeline.profile("657", t0) == tight
    assert timeline.target("657", t0 + timedelta(days=5)) == 20
    assert timeline.target("657", t0 + timedelta(days=10)) == 15
    assert timeline.target("101", t0 + timedelta(days=10)) == 25
    assert timeline.lookup()("657", t0 + timedelta(days=1)) == tight


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2026-11-20T12:00:00+01:00", datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
        ("2026-11-20T12:00:00 01:00", datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),  # '+' lost in the URL
        ("2026-11-20T11:00:00Z", datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
        ("2026-11-20 12:00", datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),  # naive = Copenhagen
        ("2026-07-01T12:00", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),  # summer time
        ("2026-11-20", datetime(2026, 11, 19, 23, 0, tzinfo=UTC)),  # a date = its local midnight
    ],
)
def test_parse_at(raw: str, utc: datetime) -> None:
    assert parse_at(raw) == utc


def test_parse_at_default_is_now() -> None:
    assert abs(parse_at(None) - datetime.now(UTC)) < timedelta(seconds=5)


def test_parse_states() -> None:
    assert parse_states(["overdue,due_soon", "overdue"]) == ("overdue", "due_soon")
    assert parse_states(None) == ("upcoming", "due_soon", "overdue", "met_on_time", "met_late")
