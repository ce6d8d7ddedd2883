"""ISO weeks (`2026-W47`) and calendar months (`2026-11`) in Europe/Copenhagen (domain.md §6).

A period is half-open: it starts at local midnight of its first day and ends at local midnight of the
day after its last day; an instant belongs to the period with `start <= instant < end`. Periods are
also numbered (`period_index`): weeks since 1970-W01, months since 1970-01, so the projection can
store them as integers and the report can step back and forth cheaply.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from shared.casework.calendar import TZ, local_date

PeriodKind = Literal["W", "M"]
WEEK: PeriodKind = "W"
MONTH: PeriodKind = "M"
KINDS: tuple[PeriodKind, ...] = (WEEK, MONTH)

_EPOCH_MONDAY = date(1969, 12, 29)  # the Monday of ISO week 1970-W01
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class BadPeriod(ValueError):
    """A week or month string that is not a real period."""


# --- days -------------------------------------------------------------------------------------
# The calendar itself (Copenhagen time, local dates, 24:00 of a day) is the shared case-work
# engine's: shared/casework/calendar.py.


def start_of_day(day: date) -> datetime:
    """Local midnight at the start of `day` (24:00 of the day before), as an aware instant."""
    return datetime.combine(day, time(0, 0), tzinfo=TZ)


# --- weeks ------------------------------------------------------------------------------------


def parse_week(week: str) -> date:
    """`2026-W47` -> the Monday of that ISO week. Raises `BadPeriod`."""
    m = _WEEK_RE.match(week)
    if not m:
        raise BadPeriod(f"week must look like 2026-W47, got {week!r}")
    try:
        return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise BadPeriod(f"{week} is not an ISO week") from None


def week_of_date(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_of(instant: datetime) -> str:
    return week_of_date(local_date(instant))


# --- months -----------------------------------------------------------------------------------


def parse_month(month: str) -> tuple[int, int]:
    """`2026-11` -> (2026, 11). Raises `BadPeriod`."""
    m = _MONTH_RE.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise BadPeriod(f"month must look like 2026-11, got {month!r}")
    return int(m.group(1)), int(m.group(2))


def month_of_date(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_of(instant: datetime) -> str:
    return month_of_date(local_date(instant))


def first_date_of_month(month: str) -> date:
    year, mon = parse_month(month)
    return date(year, mon, 1)


def last_date_of_month(month: str) -> date:
    year, mon = parse_month(month)
    return date(year, mon, calendar.monthrange(year, mon)[1])


def days_in_month(month: str) -> int:
    return last_date_of_month(month).day


def months_ending(month: str, count: int = 12) -> list[str]:
    """The `count` months ending with `month`, oldest first."""
    last = month_index(month)
    return [month_from_index(i) for i in range(last - count + 1, last + 1)]


# --- period numbering -------------------------------------------------------------------------


def week_index(week: str) -> int:
    return (parse_week(week) - _EPOCH_MONDAY).days // 7


def week_from_index(index: int) -> str:
    return week_of_date(_EPOCH_MONDAY + timedelta(weeks=index))


def month_index(month: str) -> int:
    year, mon = parse_month(month)
    return (year - 1970) * 12 + mon - 1


def month_from_index(index: int) -> str:
    year, month0 = divmod(index, 12)
    return f"{1970 + year:04d}-{month0 + 1:02d}"


def date_index(kind: PeriodKind, day: date) -> int:
    """Number of the period that contains `day`."""
    if kind == WEEK:
        return (day - _EPOCH_MONDAY).days // 7
    return (day.year - 1970) * 12 + day.month - 1


def period_index(kind: PeriodKind, instant: datetime) -> int:
    """Number of the period that contains `instant`."""
    return date_index(kind, local_date(instant))


_HOUR_PERIODS: dict[int, tuple[int, int]] = {}  # UTC hour since the epoch -> (week, month)
_HOUR_PERIODS_MAX = 1 << 20


def period_indexes(instant: datetime) -> tuple[int, int]:
    """`(period_index(WEEK, instant), period_index(MONTH, instant))`, memoised per UTC hour: a local
    day in Copenhagen begins on a whole UTC hour (offsets +1 and +2 hours), so every instant of
    such an hour lies in the same week and month. An hour that does hold a local midnight (an
    offset of minutes, before 1894) is computed for each instant and not memoised."""
    utc = instant if instant.tzinfo is UTC else _as_utc(instant)
    hour = utc.toordinal() * 24 + utc.hour
    found = _HOUR_PERIODS.get(hour)
    if found is not None:
        return found
    day = local_date(instant)
    found = (date_index(WEEK, day), date_index(MONTH, day))
    first = datetime.combine(date.fromordinal(hour // 24), time(hour % 24), tzinfo=UTC)
    if local_date(first) == local_date(first + _HOUR_LESS_TICK):
        if len(_HOUR_PERIODS) >= _HOUR_PERIODS_MAX:
            _HOUR_PERIODS.clear()
        _HOUR_PERIODS[hour] = found
    return found


_HOUR_LESS_TICK = timedelta(hours=1) - timedelta(microseconds=1)  # the last instant of an hour


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("an instant must carry a UTC offset")
    return instant.astimezone(UTC)


def parse_period(kind: PeriodKind, period: str) -> int:
    return week_index(period) if kind == WEEK else month_index(period)


def period_name(kind: PeriodKind, index: int) -> str:
    return week_from_index(index) if kind == WEEK else month_from_index(index)


def period_first_date(kind: PeriodKind, index: int) -> date:
    if kind == WEEK:
        return _EPOCH_MONDAY + timedelta(weeks=index)
    year, month0 = divmod(index, 12)
    return date(1970 + year, month0 + 1, 1)


def period_last_date(kind: PeriodKind, index: int) -> date:
    return period_first_date(kind, index + 1) - timedelta(days=1)


def period_start(kind: PeriodKind, period: str) -> datetime:
    """Local midnight at the start of the period."""
    return start_of_day(period_first_date(kind, parse_period(kind, period)))


def period_end(kind: PeriodKind, period: str) -> datetime:
    """Local midnight after the period's last day (exclusive end; = start of the next period)."""
    return start_of_day(period_first_date(kind, parse_period(kind, period) + 1))


def previous_period(kind: PeriodKind, period: str) -> str:
    return period_name(kind, parse_period(kind, period) - 1)


def week_start(week: str) -> datetime:
    return period_start(WEEK, week)


def week_end(week: str) -> datetime:
    return period_end(WEEK, week)


def month_start(month: str) -> datetime:
    return period_start(MONTH, month)


def month_end(month: str) -> datetime:
    return period_end(MONTH, month)


def previous_week(week: str) -> str:
    return previous_period(WEEK, week)


def previous_month(month: str) -> str:
    return previous_period(MONTH, month)
