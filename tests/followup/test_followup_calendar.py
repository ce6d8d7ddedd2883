"""The working-day calendar and period arithmetic (spec section 4), table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.casework.calendar import (
    Period,
    add_months,
    end_of_day,
    is_working_day,
    local_date,
    nth_working_day_after,
    plus_hours,
)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 11, 6), True),  # Friday
        (date(2026, 11, 7), False),  # Saturday
        (date(2026, 11, 8), False),  # Sunday
        (date(2026, 4, 2), False),  # Skærtorsdag
        (date(2026, 4, 3), False),  # Langfredag
        (date(2026, 4, 6), False),  # 2. påskedag
        (date(2026, 4, 7), True),  # Tuesday after Easter
        (date(2026, 5, 14), False),  # Kristi himmelfart
        (date(2026, 5, 25), False),  # 2. pinsedag
        (date(2026, 6, 5), False),  # Grundlovsdag (Friday), not a public holiday in `holidays`
        (date(2026, 6, 4), True),
        (date(2026, 12, 24), False),  # juleaften (Thursday)
        (date(2026, 12, 25), False),
        (date(2026, 12, 28), True),
        (date(2026, 12, 31), False),  # nytårsaften (Thursday)
        (date(2027, 1, 1), False),
        (date(2023, 5, 5), False),  # Store Bededag 2023
        (date(2024, 4, 26), True),  # no Store Bededag from 2024
        (date(2028, 2, 29), True),  # leap day, a Tuesday
    ],
)
def test_working_days(day: date, working: bool) -> None:
    assert is_working_day(day) is working


@pytest.mark.parametrize(
    ("received", "sixth"),
    [
        (date(2026, 11, 2), date(2026, 11, 10)),  # Monday -> Tuesday next week
        (date(2026, 11, 6), date(2026, 11, 16)),  # Friday: weekend skipped
        (date(2026, 11, 7), date(2026, 11, 16)),  # Saturday
        (date(2026, 11, 8), date(2026, 11, 16)),  # Sunday
        (date(2026, 4, 1), date(2026, 4, 14)),  # before Easter: Thu, Fri, Mon off
        (date(2026, 3, 31), date(2026, 4, 13)),
        (date(2026, 6, 1), date(2026, 6, 10)),  # 5 June off
        (date(2026, 12, 23), date(2027, 1, 6)),  # 24, 25, 31 Dec and 1 Jan off
        (date(2026, 12, 18), date(2026, 12, 30)),
        (date(2023, 5, 1), date(2023, 5, 10)),  # Store Bededag 2023 off
        (date(2024, 4, 22), date(2024, 4, 30)),  # 2024 without Store Bededag
        (date(2026, 5, 8), date(2026, 5, 19)),  # Kristi himmelfart 14 May
        (date(2026, 2, 20), date(2026, 3, 2)),  # across the end of February
    ],
)
def test_sixth_working_day(received: date, sixth: date) -> None:
    assert nth_working_day_after(received, 6) == sixth


def test_first_working_day_after_a_holiday_run() -> None:
    assert nth_working_day_after(date(2026, 12, 23), 1) == date(2026, 12, 28)
    with pytest.raises(ValueError):
        nth_working_day_after(date(2026, 12, 23), 0)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2027, 10, 31), 4, date(2028, 2, 29)),  # leap year
        (date(2026, 10, 31), 4, date(2027, 2, 28)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
        (date(2028, 2, 29), 1, date(2028, 3, 29)),
        (date(2026, 3, 31), 6, date(2026, 9, 30)),
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2026, 12, 15), 3, date(2027, 3, 15)),
        (date(2026, 12, 31), 1, date(2027, 1, 31)),
        (date(2026, 5, 31), 4, date(2026, 9, 30)),
    ],
)
def test_add_months_clamps_to_month_end(start: date, months: int, expected: date) -> None:
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("day", "utc"),
    [
        (date(2026, 11, 2), datetime(2026, 11, 2, 23, 0, tzinfo=UTC)),  # winter time
        (date(2026, 7, 1), datetime(2026, 7, 1, 22, 0, tzinfo=UTC)),  # summer time
        (date(2026, 3, 28), datetime(2026, 3, 28, 23, 0, tzinfo=UTC)),  # next midnight still CET
        (date(2026, 3, 29), datetime(2026, 3, 29, 22, 0, tzinfo=UTC)),  # DST day: ends in CEST
        (date(2026, 10, 24), datetime(2026, 10, 24, 22, 0, tzinfo=UTC)),
        (date(2026, 10, 25), datetime(2026, 10, 25, 23, 0, tzinfo=UTC)),  # back to CET
        (date(2026, 12, 31), datetime(2026, 12, 31, 23, 0, tzinfo=UTC)),
    ],
)
def test_end_of_day_is_local_midnight(day: date, utc: datetime) -> None:
    assert end_of_day(day) == utc


@pytest.mark.parametrize(
    ("start", "due"),
    [
        # 24 elapsed hours: across the spring-forward night the wall clock moves on an hour
        ("2026-03-28T10:00:00+01:00", "2026-03-29T11:00:00+02:00"),
        # and across the fall-back night it moves back an hour
        ("2026-10-24T10:00:00+02:00", "2026-10-25T09:00:00+01:00"),
        ("2026-11-02T09:15:00+01:00", "2026-11-03T09:15:00+01:00"),
        ("2026-12-31T23:30:00+01:00", "2027-01-01T23:30:00+01:00"),
    ],
)
def test_plus_24_hours_is_an_exact_instant(start: str, due: str) -> None:
    assert plus_hours(datetime.fromisoformat(start), 24) == datetime.fromisoformat(due)


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        ("2026-11-06T22:30:00+00:00", date(2026, 11, 6)),  # 23:30 Friday in Copenhagen
        ("2026-11-06T23:30:00+00:00", date(2026, 11, 7)),  # 00:30 Saturday in Copenhagen
        ("2026-07-01T22:30:00+00:00", date(2026, 7, 2)),  # summer: 00:30 local
        ("2026-03-29T01:30:00+00:00", date(2026, 3, 29)),
    ],
)
def test_local_date_is_copenhagen(instant: str, day: date) -> None:
    assert local_date(datetime.fromisoformat(instant)) == day


def test_local_date_refuses_naive() -> None:
    with pytest.raises(ValueError):
        local_date(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("period", "start", "expected"),
    [
        (Period(2, "weeks"), date(2026, 12, 24), date(2027, 1, 7)),
        (Period(6, "weeks"), date(2026, 2, 1), date(2026, 3, 15)),
        (Period(7, "days"), date(2026, 2, 25), date(2026, 3, 4)),
        (Period(7, "days"), date(2028, 2, 25), date(2028, 3, 3)),
        (Period(3, "months"), date(2026, 11, 30), date(2027, 2, 28)),
    ],
)
def test_periods(period: Period, start: date, expected: date) -> None:
    assert period.after(start) == expected


def test_bad_period() -> None:
    with pytest.raises(ValueError):
        Period(1, "years")  # type: ignore[arg-type]
