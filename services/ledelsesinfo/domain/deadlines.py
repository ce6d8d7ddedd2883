"""The deadlines of one child (domain.md §4), behind a narrow interface.

`child_deadlines(timeline, rules)` returns every deadline with its due, met and ended instants and its
attribution (case, team, the case's caseworker history). Figures only need this list, so the function
can later be replaced by an adapter over the shared case-state engine.

Working days are Monday-Friday except the Danish public holidays the `holidays` package lists for DK
and 5 June, 24 December and 31 December. A deadline in hours is due at that instant; one in days,
weeks or months at 24:00 local time of its due date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import holidays

from services.ledelsesinfo.domain.periods import add_months, end_of_day, local_date
from services.ledelsesinfo.domain.timeline import (
    Assignments,
    Measure,
    Timeline,
    Underretning,
    earliest,
)
from shared.events.codes import ABUSE_REASONS, FOSTER_FAMILY_TYPES


@dataclass(frozen=True, slots=True)
class CadenceProfile:
    """A municipality's follow-up cadence (default: Herning's, domain.md §4)."""

    placement_first_days: int = 14
    non_placement_first_days: int = 28
    placement_first_year_days: int = 42
    foster_family_after_first_year_months: int = 3
    other_placement_after_first_year_days: int = 42
    non_placement_months: int = 3


@dataclass(frozen=True, slots=True)
class Rules:
    child_conversation_days: int = 7
    cadence: CadenceProfile = CadenceProfile()


DEFAULT_RULES = Rules()


@dataclass(frozen=True, slots=True)
class Deadline:
    deadline: str  # the deadline id of domain.md §4
    started: datetime
    due: datetime
    met: datetime | None
    ended: datetime | None  # the measure or case it belongs to ended
    team_id: str | None
    case_id: str | None
    caseworkers: Assignments  # the case's assignment history: who holds it when
    underretning_id: str | None = None
    measure_id: str | None = None

    @property
    def met_on_time(self) -> bool:
        return self.met is not None and self.met <= self.due

    @property
    def overdue_until(self) -> datetime | None:
        """The deadline is overdue on [due, overdue_until) (None: still open)."""
        return earliest(self.met, self.ended)

    def is_ever_overdue(self) -> bool:
        stop = self.overdue_until
        return stop is None or stop > self.due


# --- working days -----------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _holidays_of_year(year: int) -> frozenset[date]:
    dk = holidays.country_holidays("DK", years=year)
    extra = {date(year, 6, 5), date(year, 12, 24), date(year, 12, 31)}
    return frozenset(set(dk.keys()) | extra)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _holidays_of_year(day.year)


def nth_working_day_after(day: date, n: int) -> date:
    d, count = day, 0
    while count < n:
        d += timedelta(days=1)
        if is_working_day(d):
            count += 1
    return d


# --- due instants -----------------------------------------------------------------------------


def acute_assessment_due(received: datetime) -> datetime:
    return received.astimezone(UTC) + timedelta(hours=24)  # 24 real hours, also across a DST change


def receipt_due(received: datetime) -> datetime:
    return end_of_day(nth_working_day_after(local_date(received), 6))


def child_conversation_due(received: datetime, days: int) -> datetime:
    return end_of_day(local_date(received) + timedelta(days=days))


def investigation_due(started: datetime) -> datetime:
    return end_of_day(add_months(local_date(started), 4))


def first_follow_up_due(m: Measure, profile: CadenceProfile) -> datetime:
    start = local_date(m.started_at)
    days = profile.placement_first_days if m.placement else profile.non_placement_first_days
    return end_of_day(min(add_months(start, 3), start + timedelta(days=days)))


def next_follow_up_due(m: Measure, held: date, next_due: date | None, exempt: bool,
                       profile: CadenceProfile) -> datetime:
    """The EARLIEST of the profile's date (unless exempt), the caseworker's `next_due` and +6 months."""
    candidates = [add_months(held, 6)]
    if next_due is not None:
        candidates.append(next_due)
    if not exempt:
        start = local_date(m.started_at)
        if m.placement:
            if held < add_months(start, 12):
                candidates.append(held + timedelta(days=profile.placement_first_year_days))
            elif m.measure_type in FOSTER_FAMILY_TYPES:
                candidates.append(add_months(held, profile.foster_family_after_first_year_months))
            else:
                candidates.append(held + timedelta(days=profile.other_placement_after_first_year_days))
        else:
            candidates.append(add_months(held, profile.non_placement_months))
    return end_of_day(min(candidates))


# --- the deadlines of a child -----------------------------------------------------------------


def _underretning_deadlines(tl: Timeline, u: Underretning, rules: Rules) -> list[Deadline]:
    case = tl.case(u.case_id)
    ended = case.closed_at if case else None
    cws = case.assignments if case else ()

    def make(kind: str, due: datetime, met: datetime | None) -> Deadline:
        return Deadline(kind, u.received_at, due, met, ended, u.team_id, u.case_id, cws, underretning_id=u.id)

    out = [make("acute_assessment", acute_assessment_due(u.received_at), u.assessed_at)]
    if u.professional:
        out.append(make("receipt", receipt_due(u.received_at), u.receipt_at))
    if ABUSE_REASONS & set(u.reasons):
        met = next(
            (c.at for c in tl.conversations
             if c.underretning_id == u.id
             or (c.underretning_id is None and u.case_id is not None and c.case_id == u.case_id
                 and c.at >= u.received_at)),
            None,
        )
        due = child_conversation_due(u.received_at, rules.child_conversation_days)
        out.append(make("child_conversation", due, met))
    return out


def _measure_deadlines(tl: Timeline, m: Measure, rules: Rules) -> list[Deadline]:
    team, cws = tl.team_of_case(m.case_id), tl.assignments_of_case(m.case_id)

    def make(kind: str, started: datetime, due: datetime, met: datetime | None) -> Deadline:
        return Deadline(kind, started, due, met, m.ended_at, team, m.case_id, cws, measure_id=m.id)

    profile = rules.cadence
    fus = m.follow_ups
    out = [make("first_follow_up", m.started_at, first_follow_up_due(m, profile),
                fus[0].at if fus else None)]
    exempt = False
    for i, fu in enumerate(fus):
        exempt = exempt or (fu.exemption and m.measure_type in FOSTER_FAMILY_TYPES)
        due = next_follow_up_due(m, local_date(fu.at), fu.next_due, exempt, profile)
        out.append(make("follow_up", fu.at, due, fus[i + 1].at if i + 1 < len(fus) else None))
    if m.placement:
        starts = [m.started_at, *m.visits]
        for i, base in enumerate(starts):
            met = m.visits[i] if i < len(m.visits) else None
            out.append(make("supervision_visit", base, end_of_day(add_months(local_date(base), 6)), met))
        case = tl.case(m.case_id)
        plans = case.plans if case else []
        before = [p for p in plans if p <= m.started_at]
        after = [p for p in plans if p > m.started_at]
        plan_met = before[-1] if before else (after[0] if after else None)
        out.append(make("child_plan", m.started_at, end_of_day(local_date(m.started_at)), plan_met))
    return out


def child_deadlines(tl: Timeline, rules: Rules = DEFAULT_RULES) -> list[Deadline]:
    """Every deadline of the child, whatever its state."""
    out: list[Deadline] = []
    for u in tl.underretninger:
        out.extend(_underretning_deadlines(tl, u, rules))
    for inv in tl.investigations:
        if inv.kind == "boernefaglig_undersoegelse" and inv.started_at is not None:
            out.append(Deadline(
                "investigation", inv.started_at, investigation_due(inv.started_at), inv.completed_at,
                inv.ended_at, tl.team_of_case(inv.case_id), inv.case_id,
                tl.assignments_of_case(inv.case_id),
            ))
    for m in tl.measures:
        out.extend(_measure_deadlines(tl, m, rules))
    return out
