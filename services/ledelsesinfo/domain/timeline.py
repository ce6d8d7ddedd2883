"""One child's timeline: the facts the figures need, built from the SET of the child's events.

Events are sorted inside by (occurred_at, recorded_at, event_id), so the order they arrived in never
matters. Everything is resolved against the whole set: an underretning whose case is opened later
still belongs to it (domain.md §3: its own `case_id`; else the case whose `CaseOpened` names it;
else the child's case open when it is received; else none).

Conventions: a fact holds on the half-open interval [start, end) of instants. A case closing ends
its investigations, measures and waiting-list stays (a closed case runs nothing).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from shared.events.catalogue import (
    CaseClosed,
    CaseOpened,
    CaseworkerAssigned,
    ChildConversationHeld,
    ChildPlanMade,
    FollowUpHeld,
    InvestigationCompleted,
    InvestigationStarted,
    MeasureEnded,
    MeasureStarted,
    ReceiptSent,
    SupervisionVisitHeld,
    UnderretningAssessed,
    UnderretningReceived,
    WaitlistEntered,
    WaitlistLeft,
)
from shared.events.envelope import EventEnvelope

Assignments = tuple[tuple[datetime, str], ...]


def earliest(*instants: datetime | None) -> datetime | None:
    present = [t for t in instants if t is not None]
    return min(present) if present else None


def caseworker_at(assignments: Sequence[tuple[datetime, str]], at: datetime) -> str | None:
    """The caseworker of the last assignment at or before `at` (assignments sorted by time)."""
    i = bisect_right([t for t, _ in assignments], at)
    return assignments[i - 1][1] if i else None


def caseworker_segments(
    assignments: Sequence[tuple[datetime, str]], start: datetime, end: datetime | None
) -> list[tuple[datetime, datetime | None, str | None]]:
    """Split [start, end) where the caseworker changes: [(from, to, caseworker or None)]."""
    cuts = [t for t, _ in assignments if t > start and (end is None or t < end)]
    bounds: list[datetime] = [start, *cuts]
    out: list[tuple[datetime, datetime | None, str | None]] = []
    for i, s in enumerate(bounds):
        e = bounds[i + 1] if i + 1 < len(bounds) else end
        out.append((s, e, caseworker_at(assignments, s)))
    return out


@dataclass
class Underretning:
    id: str
    received_at: datetime
    team_id: str
    notifier: str
    severity: str
    professional: bool
    reasons: tuple[str, ...]
    named_case: str | None
    case_id: str | None = None
    assessed_at: datetime | None = None
    receipt_at: datetime | None = None


@dataclass
class Case:
    id: str
    team_id: str
    opened_at: datetime
    named_underretning: str | None
    closed_at: datetime | None = None
    assignments: Assignments = ()
    plans: list[datetime] = field(default_factory=list)

    def is_open_at(self, at: datetime) -> bool:
        return self.opened_at <= at and (self.closed_at is None or at < self.closed_at)

    def caseworker_changes(self) -> list[datetime]:
        """Instants of assignments that give the case another caseworker (not the first one)."""
        out: list[datetime] = []
        previous: str | None = None
        for at, cw in self.assignments:
            if previous is not None and cw != previous:
                out.append(at)
            previous = cw
        return out


@dataclass
class Investigation:
    case_id: str
    kind: str
    started_at: datetime | None  # None: a completion without a known start
    completed_at: datetime | None = None
    ended_at: datetime | None = None  # the case closed


@dataclass
class FollowUp:
    at: datetime
    next_due: date | None
    exemption: bool


@dataclass
class Measure:
    id: str
    case_id: str
    measure_type: str
    step: int
    placement: bool
    monthly_cost_dkk: float | None
    started_at: datetime
    ended_at: datetime | None = None  # MeasureEnded, or the case closing, whichever is first
    follow_ups: list[FollowUp] = field(default_factory=list)
    visits: list[datetime] = field(default_factory=list)


@dataclass
class WaitlistStay:
    case_id: str
    offer_type: str
    entered_at: datetime
    left_at: datetime | None = None


@dataclass(frozen=True)
class Conversation:
    at: datetime
    case_id: str | None
    underretning_id: str | None


@dataclass
class Timeline:
    municipality: str
    child_id: str
    underretninger: list[Underretning]
    cases: dict[str, Case]
    investigations: list[Investigation]
    measures: list[Measure]
    waitlist: list[WaitlistStay]
    conversations: list[Conversation]

    def case(self, case_id: str | None) -> Case | None:
        return self.cases.get(case_id) if case_id is not None else None

    def team_of_case(self, case_id: str | None) -> str | None:
        case = self.case(case_id)
        return case.team_id if case else None

    def assignments_of_case(self, case_id: str | None) -> Assignments:
        case = self.case(case_id)
        return case.assignments if case else ()


def sort_key(env: EventEnvelope) -> tuple[datetime, datetime, str]:
    return (env.occurred_at.astimezone(UTC), env.recorded_at.astimezone(UTC), env.event_id)


def build_timeline(events: Iterable[EventEnvelope]) -> Timeline:
    ordered = sorted(events, key=sort_key)
    municipality = ordered[0].municipality if ordered else ""
    child_id = ordered[0].child_id if ordered else ""
    unds: dict[str, Underretning] = {}
    cases: dict[str, Case] = {}
    assignments: dict[str, list[tuple[datetime, str]]] = {}
    plans: dict[str, list[datetime]] = {}
    closes: dict[str, datetime] = {}
    investigations: list[Investigation] = []
    measures: dict[str, Measure] = {}
    measure_ends: dict[str, datetime] = {}
    follow_ups: dict[str, list[FollowUp]] = {}
    visits: dict[str, list[datetime]] = {}
    stays: list[WaitlistStay] = []
    open_stays: dict[tuple[str, str], WaitlistStay] = {}
    conversations: list[Conversation] = []
    assessed: dict[str, datetime] = {}
    receipts: dict[str, datetime] = {}

    for env in ordered:
        # instants in UTC: Python compares and subtracts datetimes that share a tzinfo by wall time
        p, at = env.payload, env.occurred_at.astimezone(UTC)
        if isinstance(p, UnderretningReceived):
            if p.underretning_id not in unds:
                unds[p.underretning_id] = Underretning(
                    p.underretning_id, at, p.team_id, p.notifier, p.severity, p.professional,
                    tuple(p.reasons), p.case_id,
                )
        elif isinstance(p, UnderretningAssessed):
            assessed.setdefault(p.underretning_id, at)
        elif isinstance(p, ReceiptSent):
            receipts.setdefault(p.underretning_id, at)
        elif isinstance(p, CaseOpened):
            if p.case_id not in cases:
                cases[p.case_id] = Case(p.case_id, p.team_id, at, p.underretning_id)
        elif isinstance(p, CaseClosed):
            closes.setdefault(p.case_id, at)
        elif isinstance(p, CaseworkerAssigned):
            assignments.setdefault(p.case_id, []).append((at, p.caseworker_id))
        elif isinstance(p, ChildPlanMade):
            plans.setdefault(p.case_id, []).append(at)
        elif isinstance(p, InvestigationStarted):
            investigations.append(Investigation(p.case_id, p.kind, at))
        elif isinstance(p, InvestigationCompleted):
            match = next(
                (i for i in investigations
                 if i.case_id == p.case_id and i.kind == p.kind and i.completed_at is None
                 and i.started_at is not None),
                None,
            )
            if match is not None:
                match.completed_at = at
            else:
                investigations.append(Investigation(p.case_id, p.kind, None, at))
        elif isinstance(p, MeasureStarted):
            if p.measure_id not in measures:
                measures[p.measure_id] = Measure(
                    p.measure_id, p.case_id, p.measure_type, p.step, p.placement, p.monthly_cost_dkk, at
                )
        elif isinstance(p, MeasureEnded):
            measure_ends.setdefault(p.measure_id, at)
        elif isinstance(p, FollowUpHeld):
            follow_ups.setdefault(p.measure_id, []).append(
                FollowUp(at, p.next_due, p.stable_placement_exemption)
            )
        elif isinstance(p, SupervisionVisitHeld):
            visits.setdefault(p.measure_id, []).append(at)
        elif isinstance(p, WaitlistEntered):
            key = (p.case_id, p.offer_type)
            if key not in open_stays:
                stay = WaitlistStay(p.case_id, p.offer_type, at)
                open_stays[key] = stay
                stays.append(stay)
        elif isinstance(p, WaitlistLeft):
            left = open_stays.pop((p.case_id, p.offer_type), None)
            if left is not None:
                left.left_at = at
        elif isinstance(p, ChildConversationHeld):
            conversations.append(Conversation(at, p.case_id, p.underretning_id))

    for case_id, case in cases.items():
        case.closed_at = closes.get(case_id)
        case.assignments = tuple(assignments.get(case_id, ()))
        case.plans = plans.get(case_id, [])
    for inv in investigations:
        closed = cases[inv.case_id].closed_at if inv.case_id in cases else None
        inv.ended_at = closed
    for m in measures.values():
        closed = cases[m.case_id].closed_at if m.case_id in cases else None
        m.ended_at = earliest(measure_ends.get(m.id), closed)
        m.follow_ups = follow_ups.get(m.id, [])
        m.visits = visits.get(m.id, [])
    for stay in stays:
        closed = cases[stay.case_id].closed_at if stay.case_id in cases else None
        stay.left_at = earliest(stay.left_at, closed)

    named = {c.named_underretning: c.id for c in cases.values() if c.named_underretning}
    for u in unds.values():
        u.assessed_at = assessed.get(u.id)
        u.receipt_at = receipts.get(u.id)
        if u.named_case is not None:
            u.case_id = u.named_case
        elif u.id in named:
            u.case_id = named[u.id]
        else:
            u.case_id = next((c.id for c in cases.values() if c.is_open_at(u.received_at)), None)

    return Timeline(
        municipality=municipality,
        child_id=child_id,
        underretninger=list(unds.values()),
        cases=cases,
        investigations=investigations,
        measures=list(measures.values()),
        waitlist=stays,
        conversations=conversations,
    )
