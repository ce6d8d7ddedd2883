"""The case engine's fast paths give what the plain ones give: the instant texts equal what
`datetime` itself gives, for any instant and offset, around the clock changes of Copenhagen too;
`local_date`'s fast path equals the zone's answer; `new_deadline` is `Deadline(...)`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.casework.calendar import TZ, local_date
from shared.casework.deadlines import Deadline, new_deadline
from shared.casework.isotext import copenhagen_iso, isoformat, sqlite_utc_text, sqlite_utc_text_of

OFFSETS = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=1)),
        timezone(timedelta(hours=2)),
        timezone(timedelta(hours=-3, minutes=-30)),
        timezone(timedelta(hours=5, minutes=45)),
        timezone(timedelta(hours=14)),
        timezone(timedelta(hours=-12)),
        timezone(timedelta(seconds=3020)),  # not whole minutes: formatted in full
        TZ,  # not a fixed offset: formatted in full
    ]
)
INSTANTS = st.datetimes(
    min_value=datetime(1850, 1, 2), max_value=datetime(2200, 12, 30), timezones=st.just(UTC)
)


def sqlite_reference(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(" ", "microseconds")[:26]


@settings(max_examples=3000, deadline=None)
@given(INSTANTS, OFFSETS, st.booleans())
def test_texts_equal_the_standard_ones(at: datetime, zone: timezone, whole_second: bool) -> None:
    if whole_second:
        at = at.replace(microsecond=0)
    local = at.astimezone(zone)
    assert isoformat(local) == local.isoformat()
    assert copenhagen_iso(local) == local.astimezone(TZ).isoformat()
    assert sqlite_utc_text(local) == sqlite_reference(local)
    if zone is not TZ:
        assert sqlite_utc_text_of(local.isoformat()) == sqlite_reference(local)
    assert local_date(local) == local.astimezone(TZ).date()


def test_naive_values() -> None:
    naive = datetime(2026, 3, 29, 1, 30, 5, 12)
    assert isoformat(naive) == naive.isoformat()
    assert sqlite_utc_text(naive) == naive.isoformat(" ", "microseconds")  # naive: UTC already


def test_every_hour_around_the_clock_changes() -> None:
    """The UTC days on which Copenhagen changes its clocks (and the days around them) are formatted
    hour by hour as the zone says, in years of summer time and of none."""
    for year in (1916, 1940, 1945, 1948, 1950, 1980, 1995, 1996, 2024, 2026, 2037):
        for month in range(1, 13):
            for day in range(1, 29):
                for hour in range(24):
                    for minute, second in ((0, 0), (59, 59)):
                        at = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
                        there = at.astimezone(TZ)
                        assert copenhagen_iso(at) == there.isoformat(), at
                        assert local_date(at) == there.date(), at


def test_the_extremes() -> None:
    for at in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=3))),
        datetime(999, 5, 6, 7, 8, 9, 10, tzinfo=timezone(timedelta(hours=-2))),
    ):
        assert isoformat(at) == at.isoformat()
        assert sqlite_utc_text(at) == sqlite_reference(at)


def test_new_deadline_is_the_dataclass() -> None:
    t = datetime(2026, 11, 20, 11, tzinfo=UTC)
    values = ("receipt", "c-1", t, t + timedelta(days=6), "S1", "U1", None, 2, "syd", t, None)
    made, built = new_deadline(*values), Deadline(*values)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert dataclasses.astuple(made) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.seq = 3  # type: ignore[misc]
