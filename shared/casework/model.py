"""The follow-up picture of a child: what `project_child` returns. Pure, no I/O.

All instants are aware datetimes in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from shared.casework.calendar import as_utc
from shared.casework.deadlines import Deadline

Phase = Literal["modtaget", "undersoegelse", "indsats", "afventer"]
PHASES: tuple[str, ...] = ("modtaget", "undersoegelse", "indsats", "afventer")
PHASE_LABELS_DA: dict[str, str] = {
    "modtaget": "Modtaget",
    "undersoegelse": "Undersøgelse",
    "indsats": "Indsats",
    "afventer": "Afventer",
}

# --------------------------------------------------------------------------- the picture


@dataclass(frozen=True, slots=True)
class Underretning:
    underretning_id: str
    received_at: datetime
    notifier: str
    professional: bool
    reasons: tuple[str, ...]
    severity: str
    team_id: str
    named_case_id: str | None
    case_id: str | None
    """The case it belongs to (spec section 3 attribution), or None (yet)."""
    assessed_at: datetime | None = None
    acute: bool | None = None
    decision: str | None = None
    receipt_sent_at: datetime | None = None
    child_conversation_at: datetime | None = None

    def assessed_by(self, t: datetime) -> bool:
        return self.assessed_at is not None and self.assessed_at <= t


@dataclass(frozen=True, slots=True)
class Assignment:
    caseworker_id: str
    assigned_at: datetime
    change: bool
    """A change of caseworker: not the first assignment, and another caseworker than before."""


@dataclass(frozen=True, slots=True)
class Investigation:
    kind: str
    started_at: datetime | None
    completed_at: datetime | None = None
    outcome: str | None = None

    def open_at(self, t: datetime) -> bool:
        return (
            self.started_at is not None
            and self.started_at <= t
            and (self.completed_at is None or self.completed_at > t)
        )


@dataclass(frozen=True, slots=True)
class FollowUp:
    held_at: datetime
    next_due: date | None
    stable_placement_exemption: bool


@dataclass(frozen=True, slots=True)
class Measure:
    measure_id: str
    case_id: str
    measure_type: str
    step: int
    placement: bool
    started_at: datetime
    provider: str | None = None
    monthly_cost_dkk: float | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    follow_ups: tuple[FollowUp, ...] = ()
    supervision_visits: tuple[datetime, ...] = ()
    exempt_since: datetime | None = None
    """When a stable-placement exemption took the measure to the legal cadence alone."""

    def running_at(self, t: datetime) -> bool:
        return self.started_at <= t and (self.ended_at is None or self.ended_at > t)


@dataclass(frozen=True, slots=True)
class WaitlistEntry:
    offer_type: str
    entered_at: datetime
    measure_id: str | None = None
    left_at: datetime | None = None

    def waiting_at(self, t: datetime) -> bool:
        return self.entered_at <= t and (self.left_at is None or self.left_at > t)


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str
    municipality: str
    child_id: str
    team_id: str | None
    opened_at: datetime | None
    closed_at: datetime | None
    opened_for_underretning_id: str | None = None
    assignments: tuple[Assignment, ...] = ()
    underretning_ids: tuple[str, ...] = ()
    investigations: tuple[Investigation, ...] = ()
    measures: tuple[Measure, ...] = ()
    waitlist: tuple[WaitlistEntry, ...] = ()
    child_plans: tuple[datetime, ...] = ()

    @property
    def caseworker_id(self) -> str | None:
        """The caseworker the case has after every known event."""
        return self.assignments[-1].caseworker_id if self.assignments else None

    @property
    def caseworker_changes(self) -> int:
        return sum(1 for a in self.assignments if a.change)

    def caseworker_at(self, t: datetime) -> str | None:
        current = None
        for assignment in self.assignments:
            if assignment.assigned_at > t:
                break
            current = assignment.caseworker_id
        return current

    def is_open_at(self, t: datetime) -> bool:
        return (
            self.opened_at is not None
            and self.opened_at <= t
            and (self.closed_at is None or self.closed_at > t)
        )

    def status_at(self, t: datetime) -> str:
        if self.closed_at is not None and self.closed_at <= t:
            return "closed"
        if self.opened_at is not None and self.opened_at <= t:
            return "open"
        return "not_opened"

    @property
    def status(self) -> str:
        """After every known event: `open`, `closed`, or `not_opened` (only later events known)."""
        if self.closed_at is not None:
            return "closed"
        return "open" if self.opened_at is not None else "not_opened"


@dataclass(frozen=True, slots=True)
class ChildPicture:
    municipality: str
    child_id: str
    stream_id: str
    cases: Mapping[str, Case]
    underretninger: Mapping[str, Underretning]
    deadlines: tuple[Deadline, ...]
    last_occurred_at: datetime

    def phase_at(self, case_id: str, t: datetime) -> Phase | None:
        """Spec 6.1: the first that fits of `modtaget`, `undersoegelse`, `indsats`, `afventer`
        for a case open at `t`; `None` when it is not open then."""
        t = as_utc(t)
        case = self.cases[case_id]
        if not case.is_open_at(t):
            return None
        for uid in case.underretning_ids:
            u = self.underretninger[uid]
            if u.received_at <= t and not u.assessed_by(t):
                return "modtaget"
        if any(inv.open_at(t) for inv in case.investigations):
            return "undersoegelse"
        if any(m.running_at(t) for m in case.measures):
            return "indsats"
        return "afventer"

    def final_phase(self, case_id: str) -> Phase | None:
        """The phase after every known event (the case's state at its latest event)."""
        case = self.cases[case_id]
        if case.closed_at is not None:
            return None
        latest = max(self.last_occurred_at, case.opened_at or self.last_occurred_at)
        return self.phase_at(case_id, latest)

    def deadlines_of_case(self, case_id: str) -> tuple[Deadline, ...]:
        return tuple(d for d in self.deadlines if d.case_id == case_id)
