"""Time helpers of the generator: instants are integer seconds since the epoch (UTC); what goes into
records is Europe/Copenhagen local time with its offset (+01:00 in winter, +02:00 in summer), as
zoneinfo says. Pure functions; `random.Random` passed in where chance is involved."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

TZ: Final = ZoneInfo("Europe/Copenhagen")
MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86_400
WORK_START_MIN: Final = 8 * 60
WORK_END_MIN: Final = 16 * 60


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_CACHE_LIMIT: Final = 200_000
_offsets: dict[int, int] = {}  # UTC hour -> offset in seconds (Danish offsets change on the hour)
_prefixes: dict[int, str] = {}  # local day number -> "YYYY-MM-DDT"


def offset(t: int) -> int:
    """Seconds Copenhagen is ahead of UTC at instant `t` (3600 or 7200), from zoneinfo."""
    hour = t // HOUR
    off = _offsets.get(hour)
    if off is None:
        if len(_offsets) > _CACHE_LIMIT:
            _offsets.clear()
        delta = datetime.fromtimestamp(hour * HOUR, TZ).utcoffset()
        assert delta is not None
        off = _offsets[hour] = int(delta.total_seconds())
    return off


def local(t: int) -> datetime:
    return datetime.fromtimestamp(t, TZ)


def iso(t: int) -> str:
    """`2026-11-02T09:15:00+01:00`: the instant in Copenhagen time with the offset in force then
    (the same text as `datetime.fromtimestamp(t, TZ).isoformat()`, faster)."""
    off = offset(t)
    loc = t + off
    day, sod = divmod(loc, DAY)
    prefix = _prefixes.get(day)
    if prefix is None:
        if len(_prefixes) > _CACHE_LIMIT:
            _prefixes.clear()
        prefix = _prefixes[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + "T"
    h, rest = divmod(sod, HOUR)
    m, s = divmod(rest, MINUTE)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}+{off // HOUR:02d}:00"


def local_day_number(t: int) -> int:
    return (t + offset(t)) // DAY


def local_date(t: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + (t + offset(t)) // DAY)


def at_local(day: date, minute_of_day: int) -> int:
    """The instant of `day` at hh:mm local time (daytime minutes only: never a DST gap)."""
    h, m = divmod(minute_of_day, 60)
    return int(datetime(day.year, day.month, day.day, h, m, tzinfo=TZ).timestamp())


def start_of(day: date) -> int:
    """00:00 local time of `day` (midnight exists on every Danish day)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp())


def add_months(day: date, months: int) -> date:
    """`day` + N months, keeping the day of month, clamped to the month's last day."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def add_years(day: date, years: int) -> date:
    return add_months(day, 12 * years)


def working_day_on_or_after(day: date) -> date:
    wd = day.weekday()
    return day + timedelta(days=7 - wd) if wd >= 5 else day


def working_day_on_or_before(day: date) -> date:
    wd = day.weekday()
    return day - timedelta(days=wd - 4) if wd >= 5 else day


def _at_local_minute(day_number: int, minute_of_day: int) -> int:
    """Local day number + daytime minute -> instant (daytime: the offset of 12:00 UTC that day)."""
    noon = day_number * DAY + 12 * HOUR
    return day_number * DAY + minute_of_day * MINUTE - offset(noon)


def at_work(t: int, rng: random.Random) -> int:
    """`t` if it falls in office hours (Monday-Friday 08-16 local), else a moment in the next
    office hours (never earlier than `t`)."""
    day, sod = divmod(t + offset(t), DAY)
    minute = sod // MINUTE
    wd = (day + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    if wd < 5 and WORK_START_MIN <= minute < WORK_END_MIN:
        return t
    if wd >= 5 or minute >= WORK_END_MIN:
        day += 1
        wd = (wd + 1) % 7
        if wd >= 5:
            day += 7 - wd
    return _at_local_minute(day, WORK_START_MIN + int(rng.random() * 300))


def on_day_at_work(day: date, rng: random.Random) -> int:
    """A moment in office hours of `day` (which should be a working day)."""
    minute = WORK_START_MIN + int(rng.random() * (WORK_END_MIN - WORK_START_MIN - 30))
    return _at_local_minute(day.toordinal() - _EPOCH_ORDINAL, minute)
