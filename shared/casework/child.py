"""The follow-up picture of one child: cases, underretninger, measures and every deadline.

`project_child` is a pure function of the SET of a child's events: it sorts them by
(`occurred_at`, `recorded_at`, `event_id`) itself and then derives everything from the sorted facts,
so the order in which events arrive (a DUBU backfill delivers late) cannot change the result.

Rules that the spec leaves to the implementation (documented here, tested in tests/followup):

- Of repeated facts the first in time wins: the first `UnderretningReceived` / `UnderretningAssessed`
  / `ReceiptSent` of an underretning, the first `CaseOpened` of a case, the first `CaseClosed` at or
  after its opening, the first `MeasureStarted` / `MeasureEnded` of a measure.
- A deadline's end is the end of its measure (or the case's closing, whichever is first); an
  underretning's deadlines end when the case it belongs to closes. An end before the deadline
  started does not end it (an underretning naming an already-closed case must still be handled).
- `FollowUpHeld` / `SupervisionVisitHeld` count for a measure from its start until its end.
- `InvestigationCompleted` completes the earliest open investigation of the same kind on the case.
- `WaitlistLeft` closes the earliest open entry of the same `offer_type` on the case.
- `child_plan` is due at the end of the placement's start date; it is met by the latest
  `ChildPlanMade` on the case up to then (on time), else by the first one after (late).
- A `ChildConversationHeld` naming an underretning meets that underretning's `child_conversation`
  (whenever held); one naming only a case meets those of the case's underretninger received at or
  before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.casework.cadence import ProfileLookup, default_lookup, exemption_applies
from shared.casework.calendar import as_utc
from shared.casework.deadlines import Deadline
from shared.casework.model import (
    Assignment,
    Case,
    ChildPicture,
    FollowUp,
    Investigation,
    Measure,
    Underretning,
    WaitlistEntry,
)
from shared.casework.rules import DefaultRules, RuleSettings, case_deadlines, underretning_deadlines
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

# --------------------------------------------------------------------------- the builder


def sort_key(env: EventEnvelope) -> tuple[datetime, datetime, str]:
    return (as_utc(env.occurred_at), as_utc(env.recorded_at), env.event_id)


@dataclass
class _Facts:
    """Everything a child's events say, collected in time order (first = earliest)."""

    received: dict[str, tuple[datetime, UnderretningReceived]] = field(default_factory=dict)
    assessed: dict[str, tuple[datetime, UnderretningAssessed]] = field(default_factory=dict)
    receipts: dict[str, datetime] = field(default_factory=dict)
    conversations: list[tuple[datetime, ChildConversationHeld]] = field(default_factory=list)
    opened: dict[str, tuple[datetime, CaseOpened]] = field(default_factory=dict)
    closed: defaultdict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    assigned: defaultdict[str, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    inv_started: defaultdict[str, list[tuple[datetime, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    inv_completed: defaultdict[str, list[tuple[datetime, InvestigationCompleted]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    plans: defaultdict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    measure_started: dict[str, tuple[datetime, MeasureStarted]] = field(default_factory=dict)
    measure_ended: defaultdict[str, list[tuple[datetime, MeasureEnded]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    follow_ups: defaultdict[str, list[tuple[datetime, FollowUpHeld]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    visits: defaultdict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    waitlist: defaultdict[str, list[tuple[datetime, WaitlistEntered | WaitlistLeft]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    case_ids: dict[str, None] = field(default_factory=dict)

    def see_case(self, case_id: str | None) -> None:
        if case_id is not None:
            self.case_ids.setdefault(case_id, None)

    def add(self, at: datetime, p: object) -> None:
        handler = _HANDLERS.get(type(p))
        if handler is None:  # a subclass of a payload type (the exact types are looked up directly)
            handler = next((h for t, h in _HANDLERS.items() if isinstance(p, t)), None)
        if handler is not None:
            handler(self, at, p)

    def _received(self, at: datetime, p: UnderretningReceived) -> None:
        self.received.setdefault(p.underretning_id, (at, p))
        self.see_case(p.case_id)

    def _assessed(self, at: datetime, p: UnderretningAssessed) -> None:
        self.assessed.setdefault(p.underretning_id, (at, p))

    def _receipt(self, at: datetime, p: ReceiptSent) -> None:
        self.receipts.setdefault(p.underretning_id, at)

    def _conversation(self, at: datetime, p: ChildConversationHeld) -> None:
        self.conversations.append((at, p))
        self.see_case(p.case_id)

    def _opened(self, at: datetime, p: CaseOpened) -> None:
        self.opened.setdefault(p.case_id, (at, p))
        self.see_case(p.case_id)

    def _closed(self, at: datetime, p: CaseClosed) -> None:
        self.closed[p.case_id].append(at)
        self.see_case(p.case_id)

    def _assigned(self, at: datetime, p: CaseworkerAssigned) -> None:
        self.assigned[p.case_id].append((at, p.caseworker_id))
        self.see_case(p.case_id)

    def _inv_started(self, at: datetime, p: InvestigationStarted) -> None:
        self.inv_started[p.case_id].append((at, p.kind))
        self.see_case(p.case_id)

    def _inv_completed(self, at: datetime, p: InvestigationCompleted) -> None:
        self.inv_completed[p.case_id].append((at, p))
        self.see_case(p.case_id)

    def _plan(self, at: datetime, p: ChildPlanMade) -> None:
        self.plans[p.case_id].append(at)
        self.see_case(p.case_id)

    def _measure_started(self, at: datetime, p: MeasureStarted) -> None:
        self.measure_started.setdefault(p.measure_id, (at, p))
        self.see_case(p.case_id)

    def _measure_ended(self, at: datetime, p: MeasureEnded) -> None:
        self.measure_ended[p.measure_id].append((at, p))

    def _follow_up(self, at: datetime, p: FollowUpHeld) -> None:
        self.follow_ups[p.measure_id].append((at, p))

    def _visit(self, at: datetime, p: SupervisionVisitHeld) -> None:
        self.visits[p.measure_id].append(at)

    def _waitlist(self, at: datetime, p: WaitlistEntered | WaitlistLeft) -> None:
        self.waitlist[p.case_id].append((at, p))
        self.see_case(p.case_id)


_HANDLERS: dict[type, Callable[[_Facts, datetime, Any], None]] = {
    UnderretningReceived: _Facts._received,
    UnderretningAssessed: _Facts._assessed,
    ReceiptSent: _Facts._receipt,
    ChildConversationHeld: _Facts._conversation,
    CaseOpened: _Facts._opened,
    CaseClosed: _Facts._closed,
    CaseworkerAssigned: _Facts._assigned,
    InvestigationStarted: _Facts._inv_started,
    InvestigationCompleted: _Facts._inv_completed,
    ChildPlanMade: _Facts._plan,
    MeasureStarted: _Facts._measure_started,
    MeasureEnded: _Facts._measure_ended,
    FollowUpHeld: _Facts._follow_up,
    SupervisionVisitHeld: _Facts._visit,
    WaitlistEntered: _Facts._waitlist,
    WaitlistLeft: _Facts._waitlist,
}
"""Payload type -> what it adds to the facts (payloads of other types add nothing)."""


def _first_at_or_after(times: Iterable[datetime], start: datetime | None) -> datetime | None:
    for at in times:
        if start is None or at >= start:
            return at
    return None


def project_child(
    events: Iterable[EventEnvelope],
    profile_lookup: ProfileLookup = default_lookup,
    settings: RuleSettings | None = None,
) -> ChildPicture:
    """The follow-up picture of one child (one stream) from the set of its events."""
    rules: RuleSettings = settings if settings is not None else DefaultRules()
    # a set (by event id), in time order; each instant converted to UTC once
    keyed = sorted(
        (as_utc(env.occurred_at), as_utc(env.recorded_at), event_id, env)
        for event_id, env in {env.event_id: env for env in events}.items()
    )
    ordered = [k[3] for k in keyed]
    if not ordered:
        raise ValueError("project_child needs at least one event")
    streams = {env.stream_id for env in ordered}
    if len(streams) != 1:
        raise ValueError("project_child takes the events of exactly one child stream")
    municipality = ordered[0].municipality
    child_id = ordered[0].child_id

    facts = _Facts()
    for occurred_at, _recorded_at, _event_id, env in keyed:
        facts.add(occurred_at, env.payload)

    spans = _case_spans(facts)
    underretninger = _build_underretninger(facts, spans)
    by_case: defaultdict[str, list[str]] = defaultdict(list)
    for u in sorted(underretninger.values(), key=lambda u: (u.received_at, u.underretning_id)):
        if u.case_id is not None:
            by_case[u.case_id].append(u.underretning_id)
    cases = _build_cases(facts, spans, by_case, municipality, child_id, profile_lookup)

    deadlines: list[Deadline] = []
    for u in underretninger.values():
        deadlines.extend(underretning_deadlines(u, cases, municipality, child_id, profile_lookup, rules))
    for case in cases.values():
        deadlines.extend(case_deadlines(case, municipality, child_id, profile_lookup))
    deadlines.sort(key=lambda d: (d.due, d.key))

    return ChildPicture(
        municipality=municipality,
        child_id=child_id,
        stream_id=ordered[0].stream_id,
        cases=cases,
        underretninger=underretninger,
        deadlines=tuple(deadlines),
        last_occurred_at=keyed[-1][0],
    )


CaseSpan = tuple[datetime | None, datetime | None]
"""(opened_at, closed_at) of a case."""


def _case_spans(facts: _Facts) -> dict[str, CaseSpan]:
    spans: dict[str, CaseSpan] = {}
    for case_id in facts.case_ids:
        opened = facts.opened.get(case_id)
        opened_at = opened[0] if opened else None
        spans[case_id] = (opened_at, _first_at_or_after(facts.closed.get(case_id, ()), opened_at))
    return spans


def _build_cases(
    facts: _Facts,
    spans: Mapping[str, CaseSpan],
    underretning_ids: Mapping[str, list[str]],
    municipality: str,
    child_id: str,
    profile_lookup: ProfileLookup,
) -> dict[str, Case]:
    measures_by_case: defaultdict[str, list[Measure]] = defaultdict(list)
    for measure_id, (started_at, started) in facts.measure_started.items():
        measures_by_case[started.case_id].append(
            _build_measure(
                facts,
                measure_id,
                started_at,
                started,
                profile_lookup,
                municipality,
                case_closed_at=spans.get(started.case_id, (None, None))[1],
            )
        )

    cases: dict[str, Case] = {}
    for case_id, (opened_at, closed_at) in spans.items():
        opened = facts.opened.get(case_id)
        team_id = opened[1].team_id if opened else None
        if team_id is None:  # no CaseOpened (yet): the team of an underretning naming the case
            team_id = next(
                (p.team_id for _, p in facts.received.values() if p.case_id == case_id),
                None,
            )
        cases[case_id] = Case(
            case_id=case_id,
            municipality=municipality,
            child_id=child_id,
            team_id=team_id,
            opened_at=opened_at,
            closed_at=closed_at,
            opened_for_underretning_id=opened[1].underretning_id if opened else None,
            underretning_ids=tuple(underretning_ids.get(case_id, ())),
            assignments=_build_assignments(facts.assigned.get(case_id, [])),
            investigations=_build_investigations(
                facts.inv_started.get(case_id, []), facts.inv_completed.get(case_id, [])
            ),
            measures=tuple(
                sorted(measures_by_case.get(case_id, []), key=lambda m: (m.started_at, m.measure_id))
            ),
            waitlist=_build_waitlist(facts.waitlist.get(case_id, [])),
            child_plans=tuple(facts.plans.get(case_id, [])),
        )
    return cases


def _build_assignments(assigned: list[tuple[datetime, str]]) -> tuple[Assignment, ...]:
    result: list[Assignment] = []
    previous: str | None = None
    for at, caseworker_id in assigned:
        result.append(
            Assignment(caseworker_id, at, change=previous is not None and caseworker_id != previous)
        )
        previous = caseworker_id
    return tuple(result)


def _build_investigations(
    started: list[tuple[datetime, str]], completed: list[tuple[datetime, InvestigationCompleted]]
) -> tuple[Investigation, ...]:
    result: list[Investigation] = []
    used: set[int] = set()
    for started_at, kind in started:
        match = next(
            (
                i
                for i, (at, p) in enumerate(completed)
                if i not in used and p.kind == kind and at >= started_at
            ),
            None,
        )
        if match is None:
            result.append(Investigation(kind, started_at))
        else:
            used.add(match)
            at, p = completed[match]
            result.append(Investigation(kind, started_at, at, p.outcome))
    for i, (at, p) in enumerate(completed):
        if i not in used:  # completed without a known start
            result.append(Investigation(p.kind, None, at, p.outcome))
    return tuple(result)


def _build_waitlist(
    entries: list[tuple[datetime, WaitlistEntered | WaitlistLeft]],
) -> tuple[WaitlistEntry, ...]:
    result: list[WaitlistEntry] = []
    open_by_offer: defaultdict[str, list[int]] = defaultdict(list)
    for at, p in entries:
        if isinstance(p, WaitlistEntered):
            open_by_offer[p.offer_type].append(len(result))
            result.append(WaitlistEntry(p.offer_type, at, p.measure_id))
        elif open_by_offer[p.offer_type]:
            index = open_by_offer[p.offer_type].pop(0)
            entry = result[index]
            result[index] = WaitlistEntry(entry.offer_type, entry.entered_at, entry.measure_id, at)
    return tuple(result)


def _build_measure(
    facts: _Facts,
    measure_id: str,
    started_at: datetime,
    started: MeasureStarted,
    profile_lookup: ProfileLookup,
    municipality: str,
    *,
    case_closed_at: datetime | None = None,
) -> Measure:
    ended = next(((at, p) for at, p in facts.measure_ended.get(measure_id, []) if at >= started_at), None)
    ended_at = ended[0] if ended else None
    end_reason = ended[1].reason if ended else None
    if case_closed_at is not None and (ended_at is None or case_closed_at < ended_at):
        # A measure ends with its case at the latest (spec: a closed case has nothing running).
        ended_at, end_reason = max(case_closed_at, started_at), "case_closed"

    def in_run(at: datetime) -> bool:
        return at >= started_at and (ended_at is None or at <= ended_at)

    follow_ups = tuple(
        FollowUp(at, p.next_due, p.stable_placement_exemption)
        for at, p in facts.follow_ups.get(measure_id, [])
        if in_run(at)
    )
    visits = tuple(at for at in facts.visits.get(measure_id, []) if in_run(at))
    exempt_since = next(
        (
            f.held_at
            for f in follow_ups
            if f.stable_placement_exemption
            and exemption_applies(
                profile_lookup(municipality, f.held_at), started.placement, started.measure_type
            )
        ),
        None,
    )
    return Measure(
        measure_id=measure_id,
        case_id=started.case_id,
        measure_type=started.measure_type,
        step=started.step,
        placement=started.placement,
        started_at=started_at,
        provider=started.provider,
        monthly_cost_dkk=started.monthly_cost_dkk,
        ended_at=ended_at,
        end_reason=end_reason,
        follow_ups=follow_ups,
        supervision_visits=visits,
        exempt_since=exempt_since,
    )


def _build_underretninger(facts: _Facts, spans: Mapping[str, CaseSpan]) -> dict[str, Underretning]:
    """Spec section 3: its own `case_id`; else the case whose `CaseOpened` names it; else the
    child's case open when it is received; else none (yet)."""
    named_by_opening: dict[str, tuple[datetime, str]] = {}
    for opened_case_id, (at, opened) in facts.opened.items():
        if opened.underretning_id is not None:
            current = named_by_opening.get(opened.underretning_id)
            if current is None or (at, opened_case_id) < current:
                named_by_opening[opened.underretning_id] = (at, opened_case_id)

    result: dict[str, Underretning] = {}
    for uid, (received_at, p) in facts.received.items():
        case_id = p.case_id
        if case_id is None and uid in named_by_opening:
            case_id = named_by_opening[uid][1]
        if case_id is None:
            open_then = sorted(
                (opened_at, cid)
                for cid, (opened_at, closed_at) in spans.items()
                if opened_at is not None
                and opened_at <= received_at
                and (closed_at is None or closed_at > received_at)
            )
            case_id = open_then[-1][1] if open_then else None
        assessed = facts.assessed.get(uid)
        result[uid] = Underretning(
            underretning_id=uid,
            received_at=received_at,
            notifier=p.notifier,
            professional=p.professional,
            reasons=tuple(p.reasons),
            severity=p.severity,
            team_id=p.team_id,
            named_case_id=p.case_id,
            case_id=case_id,
            assessed_at=assessed[0] if assessed else None,
            acute=assessed[1].acute if assessed else None,
            decision=assessed[1].decision if assessed else None,
            receipt_sent_at=facts.receipts.get(uid),
            child_conversation_at=_conversation_for(facts, uid, case_id, received_at),
        )
    return result


def _conversation_for(facts: _Facts, uid: str, case_id: str | None, received_at: datetime) -> datetime | None:
    for at, p in facts.conversations:  # in time order: the first that fits
        if p.underretning_id is not None:
            if p.underretning_id == uid:
                return at
        elif case_id is not None and p.case_id == case_id and at >= received_at:
            return at
    return None
