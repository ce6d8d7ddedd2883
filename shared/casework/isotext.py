"""Instants as text, fast: the same strings as `datetime.isoformat` (and the Copenhagen rendering of
`shared.casework.views.iso`), without CPython's printf-style formatter for every value.

A projection writes several instants per event, and `isoformat` formats every field each time
through `PyUnicode_FromFormat`. Here the date is formatted once per distinct day and kept (a
bounded table), and the time of day is put together from two-digit strings. For Copenhagen time the
offset is looked up once per UTC day (a day on which the clocks change, or an offset that is not
whole hours, is formatted in full). Pure, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from shared.casework.calendar import TZ

_TWO: Final[tuple[str, ...]] = tuple(f"{i:02d}" for i in range(60))
_LIMIT = 65536  # entries per table; then it starts over

_dates: dict[int, str] = {}  # proleptic ordinal -> "YYYY-MM-DD"
_suffixes: dict[tzinfo, str] = {}  # a fixed-offset zone -> its "+HH:MM"
# UTC day -> (offset hours, "+HH:MM"); None: the clocks change that day
_copenhagen: dict[int, tuple[int, str] | None] = {}


def _date(ordinal: int) -> str:
    """The day's "YYYY-MM-DD", kept (callers look in `_dates` first: `_dates.get(o) or _date(o)`)."""
    if len(_dates) >= _LIMIT:
        _dates.clear()
    day = datetime.fromordinal(ordinal)
    text = _dates[ordinal] = f"{day.year:04d}-{_TWO[day.month]}-{_TWO[day.day]}"
    return text


def _offset_text(offset: timedelta | None) -> str | None:
    """`isoformat`'s offset suffix (`+HH:MM`), when the offset is whole minutes (else None)."""
    if offset is None or offset.microseconds or offset.seconds % 60:
        return None
    minutes = offset.days * 1440 + offset.seconds // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def isoformat(at: datetime) -> str:
    """`at.isoformat()` (fast for an aware value with a fixed offset, a `datetime.timezone`)."""
    tz = at.tzinfo
    if type(tz) is not timezone:
        return at.isoformat()
    suffix = _suffixes.get(tz)
    if suffix is None:
        text = _offset_text(tz.utcoffset(None))
        if text is None:
            return at.isoformat()
        if len(_suffixes) >= 256:
            _suffixes.clear()
        suffix = _suffixes[tz] = text
    us = at.microsecond
    ordinal = at.toordinal()
    date = _dates.get(ordinal) or _date(ordinal)
    if us:
        return f"{date}T{_TWO[at.hour]}:{_TWO[at.minute]}:{_TWO[at.second]}.{str(us + 1000000)[1:]}{suffix}"
    return f"{date}T{_TWO[at.hour]}:{_TWO[at.minute]}:{_TWO[at.second]}{suffix}"


def copenhagen_iso(at: datetime) -> str:
    """`at.astimezone(TZ).isoformat()`: the instant in Copenhagen time with its offset."""
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    ordinal = utc.toordinal()
    try:
        day = _copenhagen[ordinal]
    except KeyError:
        if len(_copenhagen) >= _LIMIT:
            _copenhagen.clear()
        day = _copenhagen[ordinal] = _copenhagen_day(utc)
    if day is None:
        return utc.astimezone(TZ).isoformat()
    hours, suffix = day
    hour = utc.hour + hours
    if hour >= 24:
        hour, ordinal = hour - 24, ordinal + 1
    elif hour < 0:
        hour, ordinal = hour + 24, ordinal - 1
    us = utc.microsecond
    date = _dates.get(ordinal) or _date(ordinal)
    if us:
        return f"{date}T{_TWO[hour]}:{_TWO[utc.minute]}:{_TWO[utc.second]}.{str(us + 1000000)[1:]}{suffix}"
    return f"{date}T{_TWO[hour]}:{_TWO[utc.minute]}:{_TWO[utc.second]}{suffix}"


def _copenhagen_day(utc: datetime) -> tuple[int, str] | None:
    """Copenhagen's offset on the UTC day of `utc`, in whole hours, with its text; None when the
    clocks change that day or the offset is not whole hours (then each value is formatted in full)."""
    start = datetime(utc.year, utc.month, utc.day, tzinfo=UTC)
    offset = start.astimezone(TZ).utcoffset()
    end = (start + timedelta(days=1, microseconds=-1)).astimezone(TZ).utcoffset()
    if offset is None or offset != end or offset.microseconds or offset.seconds % 3600:
        return None
    suffix = _offset_text(offset)
    if suffix is None:
        return None
    return (offset.days * 86400 + offset.seconds) // 3600, suffix


def sqlite_utc_text(at: datetime) -> str:
    """An instant as SQLAlchemy's `DateTime` keeps it on SQLite: naive UTC text
    `YYYY-MM-DD HH:MM:SS.ffffff` (`at.astimezone(UTC).isoformat(" ", "microseconds")[:26]`; a naive
    value is taken to be UTC already)."""
    tz = at.tzinfo
    utc = at if tz is UTC or tz is None else at.astimezone(UTC)
    ordinal = utc.toordinal()
    date = _dates.get(ordinal) or _date(ordinal)
    return (
        f"{date} {_TWO[utc.hour]}:{_TWO[utc.minute]}:{_TWO[utc.second]}.{str(utc.microsecond + 1000000)[1:]}"
    )


_utc_hours: dict[str, str] = {}  # "YYYY-MM-DDTHH" + "+HH:MM" -> the UTC "YYYY-MM-DD HH" of that hour


def sqlite_utc_text_of(iso: str) -> str:
    """`sqlite_utc_text` of the instant whose `isoformat` is `iso` (an aware value's), from the text."""
    n = len(iso)
    offset = iso[-6:]
    if (n != 25 and n != 32) or offset[-2:] != "00":
        return sqlite_utc_text(datetime.fromisoformat(iso))
    key = iso[:13] + offset
    hour = _utc_hours.get(key)
    if hour is None:
        if len(_utc_hours) >= _LIMIT:
            _utc_hours.clear()
        hour = _utc_hours[key] = sqlite_utc_text(datetime.fromisoformat(iso[:13] + ":00:00" + offset))[:13]
    return f"{hour}{iso[13:19]}{iso[19:26] if n == 32 else '.000000'}"
