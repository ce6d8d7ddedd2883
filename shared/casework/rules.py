"""Deadline rules of spec section 4: from a child's cases and underretninger to its deadlines.

Pure, no I/O. Called by `project_child`; the module doc of `child.py` lists the rules the spec
leaves open and how they are decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from shared.casework.deadlines import Deadline, new_deadline
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
    child_id: str,
    starts_at: datetime,
    due: datetime,
    met_at: datetime | None,
    ended_at: datetime | None,
    team_id: str | None,
    case_id: str | None,
    underretning_id: str | None,
    measure_id: str | None,
    seq: int,
) -> Deadline:
    # An end before the start does not end it; a meeting after the end does not meet it.
    if ended_at is not None and ended_at < starts_at:
        ended_at = None
    if met_at is not None and ended_at is not None and met_at > ended_at:
        met_at = None
    # a child has many deadlines: `new_deadline` is `Deadline(...)`, built faster
    return new_deadline(
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
    case_id, uid, received_at = u.case_id, u.underretning_id, u.received_at
    result = [
        _deadline(
            "acute_assessment",
            child_id,
            received_at,
            acute_assessment_due(received_at),
            u.assessed_at,
            ended_at,
            team_id,
            case_id,
            uid,
            None,
            0,
        )
    ]
    if u.professional:
        result.append(
            _deadline(
                "receipt",
                child_id,
                received_at,
                receipt_due(received_at),
                u.receipt_sent_at,
                ended_at,
                team_id,
                case_id,
                uid,
                None,
                0,
            )
        )
    if ABUSE_REASONS.intersection(u.reasons):
        profile = profile_lookup(municipality, received_at)
        days = profile.child_conversation_days
        if days is None:
            days = rules.child_conversation_days
        result.append(
            _deadline(
                "child_conversation",
                child_id,
                received_at,
                child_conversation_due(received_at, days),
                u.child_conversation_at,
                ended_at,
                team_id,
                case_id,
                uid,
                None,
                0,
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
                child_id,
                inv.started_at,
                investigation_due(inv.started_at),
                inv.completed_at,
                case.closed_at,
                case.team_id,
                case.case_id,
                None,
                None,
                seq,
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
    team_id, case_id, measure_id = case.team_id, case.case_id, m.measure_id
    result: list[Deadline] = []

    profile = profile_lookup(municipality, m.started_at)
    follow_ups = [f for f in m.follow_ups if end is None or f.held_at <= end]
    result.append(
        _deadline(
            "first_follow_up",
            child_id,
            m.started_at,
            end_of_day(first_follow_up_due(profile, start_day, m.placement)),
            follow_ups[0].held_at if follow_ups else None,
            end,
            team_id,
            case_id,
            None,
            measure_id,
            0,
        )
    )
    exempt = False
    last = len(follow_ups) - 1
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
            _deadline(
                "follow_up",
                child_id,
                f.held_at,
                end_of_day(due_day),
                follow_ups[k + 1].held_at if k < last else None,
                end,
                team_id,
                case_id,
                None,
                measure_id,
                k,
            )
        )

    if m.placement:
        visits = [v for v in m.supervision_visits if end is None or v <= end]
        starts = [m.started_at, *visits]
        for k, starts_at in enumerate(starts):
            result.append(
                _deadline(
                    "supervision_visit",
                    child_id,
                    starts_at,
                    supervision_visit_due(starts_at),
                    visits[k] if k < len(visits) else None,
                    end,
                    team_id,
                    case_id,
                    None,
                    measure_id,
                    k,
                )
            )
        due = child_plan_due(m.started_at)
        on_time = [p for p in case.child_plans if p <= due]
        late = [p for p in case.child_plans if p > due]
        result.append(
            _deadline(
                "child_plan",
                child_id,
                m.started_at,
                due,
                on_time[-1] if on_time else (late[0] if late else None),
                end,
                team_id,
                case_id,
                None,
                measure_id,
                0,
            )
        )
    return result
