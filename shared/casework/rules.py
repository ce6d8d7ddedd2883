"""Deadline rules of spec section 4: from a child's cases and underretninger to its deadlines.

Pure, no I/O. Called by `project_child`; the module doc of `child.py` lists the rules the spec
leaves open and how they are decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from shared.casework.cadence import (
    ProfileLookup,
    exemption_applies,
    first_follow_up_due,
    next_follow_up_due,
)
from shared.casework.calendar import (
    add_months,
    end_of_day,
    local_date,
    nth_working_day_after,
    plus_hours,
)
from shared.casework.deadlines import Deadline
from shared.casework.model import Case, Measure, Underretning
from shared.events.codes import ABUSE_REASONS

ACUTE_ASSESSMENT_HOURS = 24
RECEIPT_WORKING_DAYS = 6
INVESTIGATION_MONTHS = 4
SUPERVISION_MONTHS = 6
BOERNEFAGLIG = "boernefaglig_undersoegelse"


# --------------------------------------------------------------------------- due instants
# One function per rule of the deadline table (spec section 4), so the figures can ask the same rule.


def acute_assessment_due(received_at: datetime) -> datetime:
    """24 elapsed hours after receipt (a daylight-saving night does not shift it)."""
    return plus_hours(received_at, ACUTE_ASSESSMENT_HOURS)


def receipt_due(received_at: datetime) -> datetime:
    """The end of the 6th working day after the (Copenhagen) day of receipt."""
    return end_of_day(nth_working_day_after(local_date(received_at), RECEIPT_WORKING_DAYS))


def child_conversation_due(received_at: datetime, days: int) -> datetime:
    """The end of the day `days` days after the day of receipt."""
    return end_of_day(local_date(received_at) + timedelta(days=days))


def investigation_due(started_at: datetime) -> datetime:
    """The end of the same day of month 4 months after the start, clamped to the month's end."""
    return end_of_day(add_months(local_date(started_at), INVESTIGATION_MONTHS))


def supervision_visit_due(since: datetime) -> datetime:
    """The end of the same day of month 6 months after the placement's start or the last visit."""
    return end_of_day(add_months(local_date(since), SUPERVISION_MONTHS))


def child_plan_due(placement_started_at: datetime) -> datetime:
    """The end of the placement's start date."""
    return end_of_day(local_date(placement_started_at))


class RuleSettings(Protocol):
    """What the rules need from the service's settings."""

    @property
    def child_conversation_days(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DefaultRules:
    child_conversation_days: int = 7


def _earliest_end(*ends: datetime | None) -> datetime | None:
    present = [e for e in ends if e is not None]
    return min(present) if present else None


def _deadline(
    deadline: str,
    *,
    child_id: str,
    starts_at: datetime,
    due: datetime,
    met_at: datetime | None,
    ended_at: datetime | None,
    team_id: str | None,
    case_id: str | None = None,
    underretning_id: str | None = None,
    measure_id: str | None = None,
    seq: int = 0,
) -> Deadline:
    # An end before the start does not end it; a meeting after the end does not meet it.
    if ended_at is not None and ended_at < starts_at:
        ended_at = None
    if met_at is not None and ended_at is not None and met_at > ended_at:
        met_at = None
    # positional: a frozen dataclass is built noticeably faster so, and a child has many deadlines
    return Deadline(
        deadline,
        child_id,
        starts_at,
        due,
        case_id,
        underretning_id,
        measure_id,
        seq,
        team_id,
        met_at,
        ended_at,
    )


def underretning_deadlines(
    u: Underretning,
    cases: Mapping[str, Case],
    municipality: str,
    child_id: str,
    profile_lookup: ProfileLookup,
    rules: RuleSettings,
) -> list[Deadline]:
    case = cases.get(u.case_id) if u.case_id is not None else None
    ended_at = case.closed_at if case is not None else None
    team_id = (case.team_id if case is not None else None) or u.team_id
    make = partial(
        _deadline, child_id=child_id, team_id=team_id, case_id=u.case_id, underretning_id=u.underretning_id
    )
    result = [
        make(
            "acute_assessment",
            starts_at=u.received_at,
            due=acute_assessment_due(u.received_at),
            met_at=u.assessed_at,
            ended_at=ended_at,
        )
    ]
    if u.professional:
        result.append(
            make(
                "receipt",
                starts_at=u.received_at,
                due=receipt_due(u.received_at),
                met_at=u.receipt_sent_at,
                ended_at=ended_at,
            )
        )
    if ABUSE_REASONS.intersection(u.reasons):
        profile = profile_lookup(municipality, u.received_at)
        days = profile.child_conversation_days
        if days is None:
            days = rules.child_conversation_days
        result.append(
            make(
                "child_conversation",
                starts_at=u.received_at,
                due=child_conversation_due(u.received_at, days),
                met_at=u.child_conversation_at,
                ended_at=ended_at,
            )
        )
    return result


def case_deadlines(
    case: Case, municipality: str, child_id: str, profile_lookup: ProfileLookup
) -> list[Deadline]:
    result: list[Deadline] = []
    seq = 0
    for inv in case.investigations:
        if inv.kind != BOERNEFAGLIG or inv.started_at is None:
            continue
        result.append(
            _deadline(
                "investigation",
                child_id=child_id,
                starts_at=inv.started_at,
                due=investigation_due(inv.started_at),
                met_at=inv.completed_at,
                ended_at=case.closed_at,
                team_id=case.team_id,
                case_id=case.case_id,
                seq=seq,
            )
        )
        seq += 1
    for measure in case.measures:
        result.extend(_measure_deadlines(case, measure, municipality, child_id, profile_lookup))
    return result


def _measure_deadlines(
    case: Case, m: Measure, municipality: str, child_id: str, profile_lookup: ProfileLookup
) -> list[Deadline]:
    end = _earliest_end(m.ended_at, case.closed_at)
    start_day = local_date(m.started_at)
    make = partial(
        _deadline, child_id=child_id, team_id=case.team_id, case_id=case.case_id, measure_id=m.measure_id
    )
    result: list[Deadline] = []

    profile = profile_lookup(municipality, m.started_at)
    follow_ups = [f for f in m.follow_ups if end is None or f.held_at <= end]
    result.append(
        make(
            "first_follow_up",
            starts_at=m.started_at,
            due=end_of_day(first_follow_up_due(profile, start_day, m.placement)),
            met_at=follow_ups[0].held_at if follow_ups else None,
            ended_at=end,
        )
    )
    exempt = False
    for k, f in enumerate(follow_ups):
        profile_then = profile_lookup(municipality, f.held_at)
        if f.stable_placement_exemption and exemption_applies(profile_then, m.placement, m.measure_type):
            exempt = True
        due_day = next_follow_up_due(
            profile_then,
            measure_start=start_day,
            held=local_date(f.held_at),
            placement=m.placement,
            measure_type=m.measure_type,
            next_due=f.next_due,
            exempt=exempt,
        )
        result.append(
            make(
                "follow_up",
                starts_at=f.held_at,
                due=end_of_day(due_day),
                met_at=follow_ups[k + 1].held_at if k + 1 < len(follow_ups) else None,
                ended_at=end,
                seq=k,
            )
        )

    if m.placement:
        visits = [v for v in m.supervision_visits if end is None or v <= end]
        starts = [m.started_at, *visits]
        for k, starts_at in enumerate(starts):
            result.append(
                make(
                    "supervision_visit",
                    starts_at=starts_at,
                    due=supervision_visit_due(starts_at),
                    met_at=visits[k] if k < len(visits) else None,
                    ended_at=end,
                    seq=k,
                )
            )
        due = child_plan_due(m.started_at)
        on_time = [p for p in case.child_plans if p <= due]
        late = [p for p in case.child_plans if p > due]
        result.append(
            make(
                "child_plan",
                starts_at=m.started_at,
                due=due,
                met_at=on_time[-1] if on_time else (late[0] if late else None),
                ended_at=end,
            )
        )
    return result
