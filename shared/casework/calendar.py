"""The Danish working-day calendar and the period arithmetic of spec section 4. Pure, no I/O.

- Working days are Monday-Friday except the Danish public holidays that the `holidays` package
  lists for DK (it knows Store Bededag ended after 2023) and 5 June (Grundlovsdag), 24 December
  and 31 December.
- Every period is computed in Europe/Copenhagen. A period in hours is due at that exact instant
  (elapsed time, so a daylight-saving night does not shift it); a period in days, weeks or months
  is due at the end (24:00 local time) of its due date.
- "+N months" keeps the day of month, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb).
"""

from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

TZ = ZoneInfo("Europe/Copenhagen")

EXTRA_NON_WORKING: frozenset[tuple[int, int]] = frozenset({(6, 5), (12, 24), (12, 31)})
"""(month, day) that are never working days besides the public holidays: 5 June, 24 and 31 Dec."""

Unit = Literal["days", "weeks", "months"]


@lru_cache(maxsize=256)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("DK", years=year).keys())


def is_holiday(d: date) -> bool:
    """A Danish public holiday, 5 June, 24 December or 31 December."""
    return (d.month, d.day) in EXTRA_NON_WORKING or d in _public_holidays(d.year)


def is_working_day(d: date) -> bool:
    return d.weekday() < 5 and not is_holiday(d)


@lru_cache(maxsize=8192)
def nth_working_day_after(d: date, n: int) -> date:
    """The `n`-th working day strictly after the day `d` (n >= 1)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    current = d
    found = 0
    while found < n:
        current += timedelta(days=1)
        if is_working_day(current):
            found += 1
    return current


@lru_cache(maxsize=16384)
def add_months(d: date, months: int) -> date:
    """`d` plus `months` calendar months, the day of month clamped to the target month's last day."""
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    last = _calendar.monthrange(year, month)[1]
    return date(year, month, min(d.day, last))


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar period of `amount` days, weeks or months."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in ("days", "weeks", "months"):
            raise ValueError(f"unknown period unit {self.unit!r}")
        if self.amount < 0:
            raise ValueError("a period cannot be negative")

    def after(self, d: date) -> date:
        if self.unit == "days":
            return d + timedelta(days=self.amount)
        if self.unit == "weeks":
            return d + timedelta(weeks=self.amount)
        return add_months(d, self.amount)

    def to_json(self) -> dict[str, object]:
        return {"amount": self.amount, "unit": self.unit}

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


def local_date(at: datetime) -> date:
    """The calendar day in Copenhagen on which the instant `at` falls."""
    if at.tzinfo is None:
        raise ValueError("an instant must carry a UTC offset")
    if at.tzinfo is UTC:
        # Copenhagen's offset on this UTC day, when one (whole hours) holds all day: the local day
        # is then the UTC day or the next, by the hour (the clocks change at 01:00 UTC, so a day
        # with a change is asked of the zone, as is every other kind of instant)
        hours = _OFFSET_HOURS.get(at.toordinal())
        if hours is None:
            hours = _offset_hours(at)
        if hours != _CHANGES:
            ordinal = at.toordinal() + (1 if at.hour + hours >= 24 else 0)
            day = _DAYS.get(ordinal)
            if day is None:
                if len(_DAYS) >= 65536:
                    _DAYS.clear()
                day = _DAYS[ordinal] = date.fromordinal(ordinal)
            return day
    return at.astimezone(TZ).date()


_CHANGES = -99  # in _OFFSET_HOURS: the offset changes that day (or is not whole hours)
_OFFSET_HOURS: dict[int, int] = {}  # UTC day (ordinal) -> Copenhagen's offset that day, in hours
_DAYS: dict[int, date] = {}


def _offset_hours(at: datetime) -> int:
    start = datetime(at.year, at.month, at.day, tzinfo=UTC)
    offset = start.astimezone(TZ).utcoffset()
    end = (start + timedelta(days=1, microseconds=-1)).astimezone(TZ).utcoffset()
    hours = _CHANGES
    if offset is not None and offset == end and not offset.microseconds and not offset.seconds % 3600:
        hours = (offset.days * 86400 + offset.seconds) // 3600
        if not 0 <= hours < 24:
            hours = _CHANGES
    if len(_OFFSET_HOURS) >= 65536:
        _OFFSET_HOURS.clear()
    _OFFSET_HOURS[at.toordinal()] = hours
    return hours


@lru_cache(maxsize=16384)
def end_of_day(d: date) -> datetime:
    """24:00 local time at the end of the day `d` (= 00:00 of the next day), in UTC.

    Copenhagen changes its clocks at 02:00/03:00, never at midnight, so the next day's midnight
    always exists exactly once.
    """
    return datetime.combine(d + timedelta(days=1), time(0), tzinfo=TZ).astimezone(UTC)


def plus_hours(at: datetime, hours: int) -> datetime:
    """The exact instant `hours` elapsed hours after `at` (daylight-saving changes do not matter)."""
    if at.tzinfo is None:
        raise ValueError("an instant must carry a UTC offset")
    return at.astimezone(UTC) + timedelta(hours=hours)


def as_utc(at: datetime) -> datetime:
    """An aware instant in UTC; a naive value is taken to be UTC already (as SQLite returns it)."""
    tz = at.tzinfo
    if tz is UTC:
        return at
    return at.replace(tzinfo=UTC) if tz is None else at.astimezone(UTC)
