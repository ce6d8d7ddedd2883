"""The business rules at the door: a validated record plus a small state snapshot -> an event
payload to append, or a rejection. Pure, no I/O (the adapters read the snapshot and write the
outcome).

Rules:

- references: a case-level record needs its `case_id` (a `CaseOpened` seen); `FollowUpHeld`,
  `SupervisionVisitHeld`, `MeasureEnded` (and a `WaitlistEntered` naming one) need the measure,
  on that case; `ReceiptSent`, `UnderretningAssessed` and a `ChildConversationHeld` naming one
  need the underretning; a `CaseOpened` naming an underretning needs it; an
  `UnderretningReceived` naming a case needs the case. A missing reference is `retry_later`: in a
  bulk import it may still arrive further down the file.
- a case is about one child: an `UnderretningReceived` may name only a case of its own child, a
  `CaseOpened` only an underretning about its own child, and a `ChildConversationHeld` naming both
  a case and an underretning only two of the same child.
- ids are unique within a municipality: a second `CaseOpened` for a case id, `MeasureStarted` for a
  measure id, `UnderretningReceived` for an underretning id is refused.
- a child has at most one open case per municipality: `CaseOpened` is refused while another case
  of the child is open, or was open at the new case's `occurred_at` (`retry_later`: a
  `CaseClosed` further down a bulk file may resolve it). A case opened BEFORE the child's
  currently open one is a backfill and is accepted: its own `CaseClosed` is still to come, so
  the result does not depend on the order the records arrive in.
- a measure cannot start on a case closed at or before the measure's `occurred_at`, and cannot end
  twice; a case cannot be closed twice; nothing ends before it started.
- `CaseworkerAssigned` to the caseworker who already holds the case is accepted but is no change
  (`change=False`); so is the first assignment. An assignment older than the case's current one
  (a backfill) does not replace it, and its `change` is unknown (`None`): projections compute
  changes in `occurred_at` order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.intake.domain.records import (
    CaseClosedRecord,
    CaseOpenedRecord,
    CaseworkerAssignedRecord,
    ChildConversationHeldRecord,
    ChildPlanMadeRecord,
    FollowUpHeldRecord,
    InvestigationCompletedRecord,
    InvestigationStartedRecord,
    MeasureEndedRecord,
    MeasureStartedRecord,
    ReceiptSentRecord,
    RecordBase,
    SupervisionVisitHeldRecord,
    UnderretningAssessedRecord,
    UnderretningReceivedRecord,
    WaitlistEnteredRecord,
    WaitlistLeftRecord,
)
from shared.events import catalogue as ev
from shared.events.catalogue import ChildRef, EventPayload
from shared.events.codes import DEFAULT_MEASURE_TYPES, MeasureType, is_professional

# --- the state snapshot ----------------------------------------------------------------------
# (Plain slotted dataclasses, not frozen: a bulk import makes several for every record, and a frozen
# one costs four times as much to make. Treat them as values all the same: nothing changes them.)


@dataclass(slots=True)
class CaseInfo:
    case_id: str
    child_id: str
    team_id: str
    opened_at: datetime
    closed_at: datetime | None = None
    caseworker_id: str | None = None
    assigned_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def open_at(self, moment: datetime) -> bool:
        return self.opened_at <= moment and (self.closed_at is None or moment < self.closed_at)


@dataclass(slots=True)
class MeasureInfo:
    measure_id: str
    case_id: str
    measure_type: str
    started_at: datetime
    ended_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass(slots=True)
class UnderretningInfo:
    underretning_id: str
    child_id: str
    team_id: str
    received_at: datetime
    case_id: str | None = None


@dataclass(slots=True)
class State:
    """What `decide` may know, read for one record.

    `child`: the record's child as events know it (for the two record types carrying one);
    `case`, `measure`, `underretning`: what the record's `case_id`, `measure_id`,
    `underretning_id` name (None = not seen); `child_cases`: every case of the record's child
    (for `CaseOpened`); `measure_types`: the municipality's staircase.
    """

    child: ChildRef | None = None
    case: CaseInfo | None = None
    measure: MeasureInfo | None = None
    underretning: UnderretningInfo | None = None
    child_cases: tuple[CaseInfo, ...] = ()
    measure_types: Mapping[str, MeasureType] | None = None


# --- the decision ----------------------------------------------------------------------------


@dataclass(slots=True)
class Accept:
    """Append `payload` to the stream of child `child_id`."""

    child_id: str
    payload: EventPayload
    change: bool | None = None


@dataclass(slots=True)
class Reject:
    field: str
    reason: str
    retry_later: bool = False

    @staticmethod
    def of(field: str, why: str, retry_later: bool = False) -> Reject:
        return Reject(field=field, reason=f"{field}: {why}", retry_later=retry_later)


Decision = Accept | Reject


def _ts(moment: datetime) -> str:
    return moment.isoformat()


def _missing_case(case_id: str) -> Reject:
    return Reject.of(
        "data.case_id",
        f"no case {case_id!r} in this municipality (no CaseOpened for it has been accepted)",
        retry_later=True,
    )


def _missing_measure(measure_id: str) -> Reject:
    return Reject.of(
        "data.measure_id",
        f"no measure {measure_id!r} in this municipality (no MeasureStarted for it has been accepted)",
        retry_later=True,
    )


def _missing_underretning(underretning_id: str) -> Reject:
    return Reject.of(
        "data.underretning_id",
        f"no underretning {underretning_id!r} in this municipality "
        "(no UnderretningReceived for it has been accepted)",
        retry_later=True,
    )


def _case(case_id: str, state: State) -> CaseInfo | Reject:
    if state.case is None or state.case.case_id != case_id:
        return _missing_case(case_id)
    return state.case


def _measure_on(case: CaseInfo, measure_id: str, state: State) -> MeasureInfo | Reject:
    measure = state.measure
    if measure is None or measure.measure_id != measure_id:
        return _missing_measure(measure_id)
    if measure.case_id != case.case_id:
        return Reject.of(
            "data.measure_id",
            f"measure {measure_id!r} belongs to case {measure.case_id!r}, not to {case.case_id!r}",
        )
    return measure


def _underretning(underretning_id: str, state: State) -> UnderretningInfo | Reject:
    u = state.underretning
    if u is None or u.underretning_id != underretning_id:
        return _missing_underretning(underretning_id)
    return u


def _another_child(field: str, what: str, other: str) -> Reject:
    return Reject.of(field, f"{what} is about another child than {other} (a case is about one child)")


def _child(state: State) -> ChildRef:
    if state.child is None:
        raise ValueError("decide: the state lacks the record's child")
    return state.child


# --- per record type -------------------------------------------------------------------------


def _underretning_received(r: UnderretningReceivedRecord, state: State) -> Decision:
    d = r.data
    child = _child(state)
    if state.underretning is not None:
        return Reject.of(
            "data.underretning_id",
            f"underretning {d.underretning_id!r} has already been received (by another record)",
        )
    if d.case_id is not None:
        case = _case(d.case_id, state)
        if isinstance(case, Reject):
            return case
        if case.child_id != child.child_id:
            return _another_child("data.case_id", f"case {d.case_id!r}", "the child of this underretning")
    return Accept(
        child.child_id,
        ev.UnderretningReceived(
            underretning_id=d.underretning_id,
            child=child,
            notifier=d.notifier,
            professional=is_professional(d.notifier, d.professional),
            reasons=tuple(dict.fromkeys(d.reasons)),
            severity=d.severity,
            team_id=d.team_id,
            case_id=d.case_id,
        ),
    )


def _on_underretning(underretning_id: str, state: State, payload: EventPayload) -> Decision:
    u = _underretning(underretning_id, state)
    if isinstance(u, Reject):
        return u
    return Accept(u.child_id, payload)


def _case_opened(r: CaseOpenedRecord, state: State) -> Decision:
    d = r.data
    child = _child(state)
    if state.case is not None:
        return Reject.of("data.case_id", f"case {d.case_id!r} already exists (opened by another record)")
    if d.underretning_id is not None:
        u = _underretning(d.underretning_id, state)
        if isinstance(u, Reject):
            return u
        if u.child_id != child.child_id:
            return _another_child(
                "data.underretning_id", f"underretning {d.underretning_id!r}", "the child of this case"
            )
    for other in state.child_cases:
        if other.case_id == d.case_id:
            continue
        if other.is_open and other.opened_at > r.occurred_at:
            # A backfill: this case was opened before the child's current one, so it must have
            # closed before that one opened; its CaseClosed may simply not have arrived yet.
            continue
        if other.is_open:
            return Reject.of(
                "data.child",
                f"the child already has an open case {other.case_id!r} in this municipality "
                "(a child has at most one open case; close it first)",
                retry_later=True,
            )
        if other.open_at(r.occurred_at):
            assert other.closed_at is not None
            return Reject.of(
                "data.child",
                f"the child's case {other.case_id!r} was open at that time "
                f"({_ts(other.opened_at)} to {_ts(other.closed_at)}); a child has at most one open case",
            )
    return Accept(
        child.child_id,
        ev.CaseOpened(case_id=d.case_id, child=child, team_id=d.team_id, underretning_id=d.underretning_id),
    )


def _caseworker_assigned(r: CaseworkerAssignedRecord, state: State) -> Decision:
    d = r.data
    case = _case(d.case_id, state)
    if isinstance(case, Reject):
        return case
    change: bool | None
    if case.caseworker_id is None:
        change = False  # the first assignment is not a change
    elif case.assigned_at is not None and r.occurred_at < case.assigned_at:
        change = None  # a backfilled older assignment: the projections order it
    else:
        change = case.caseworker_id != d.caseworker_id
    payload = ev.CaseworkerAssigned(case_id=d.case_id, caseworker_id=d.caseworker_id)
    return Accept(case.child_id, payload, change)


def _measure_started(r: MeasureStartedRecord, state: State) -> Decision:
    d = r.data
    case = _case(d.case_id, state)
    if isinstance(case, Reject):
        return case
    if state.measure is not None:
        return Reject.of(
            "data.measure_id", f"measure {d.measure_id!r} already exists (started by another record)"
        )
    if case.closed_at is not None and r.occurred_at >= case.closed_at:
        return Reject.of(
            "data.case_id",
            f"case {d.case_id!r} was closed at {_ts(case.closed_at)}; "
            "a measure cannot start on a closed case",
        )
    types = state.measure_types if state.measure_types is not None else DEFAULT_MEASURE_TYPES
    mtype = types.get(d.measure_type)
    if mtype is None:
        return Reject.of(
            "data.measure_type", f"unknown measure type {d.measure_type!r} for this municipality"
        )
    return Accept(
        case.child_id,
        ev.MeasureStarted(
            case_id=d.case_id,
            measure_id=d.measure_id,
            measure_type=d.measure_type,
            step=mtype.step,
            placement=mtype.placement,
            provider=d.provider,
            monthly_cost_dkk=d.monthly_cost_dkk,
        ),
    )


def _measure_ended(r: MeasureEndedRecord, state: State) -> Decision:
    d = r.data
    case = _case(d.case_id, state)
    if isinstance(case, Reject):
        return case
    measure = _measure_on(case, d.measure_id, state)
    if isinstance(measure, Reject):
        return measure
    if measure.ended_at is not None:
        return Reject.of(
            "data.measure_id", f"measure {d.measure_id!r} already ended at {_ts(measure.ended_at)}"
        )
    if r.occurred_at < measure.started_at:
        return Reject.of(
            "occurred_at", f"is before measure {d.measure_id!r} started ({_ts(measure.started_at)})"
        )
    return Accept(case.child_id, ev.MeasureEnded(case_id=d.case_id, measure_id=d.measure_id, reason=d.reason))


def _on_measure(case_id: str, measure_id: str, state: State, payload: EventPayload) -> Decision:
    case = _case(case_id, state)
    if isinstance(case, Reject):
        return case
    measure = _measure_on(case, measure_id, state)
    if isinstance(measure, Reject):
        return measure
    return Accept(case.child_id, payload)


def _on_case(case_id: str, state: State, payload: EventPayload) -> Decision:
    case = _case(case_id, state)
    if isinstance(case, Reject):
        return case
    return Accept(case.child_id, payload)


def _child_conversation(r: ChildConversationHeldRecord, state: State) -> Decision:
    d = r.data
    payload = ev.ChildConversationHeld(case_id=d.case_id, underretning_id=d.underretning_id)
    stream_child: str | None = None
    if d.case_id is not None:
        case = _case(d.case_id, state)
        if isinstance(case, Reject):
            return case
        stream_child = case.child_id
    if d.underretning_id is not None:
        u = _underretning(d.underretning_id, state)
        if isinstance(u, Reject):
            return u
        if stream_child is not None and u.child_id != stream_child:
            return _another_child(
                "data.underretning_id", f"underretning {d.underretning_id!r}", f"case {d.case_id!r}"
            )
        stream_child = u.child_id  # the underretning's deadline is what this meets first
    assert stream_child is not None  # the record model demands one of the two
    return Accept(stream_child, payload)


def _waitlist_entered(r: WaitlistEnteredRecord, state: State) -> Decision:
    d = r.data
    payload = ev.WaitlistEntered(case_id=d.case_id, offer_type=d.offer_type, measure_id=d.measure_id)
    if d.measure_id is None:
        return _on_case(d.case_id, state, payload)
    return _on_measure(d.case_id, d.measure_id, state, payload)


def _case_closed(r: CaseClosedRecord, state: State) -> Decision:
    d = r.data
    case = _case(d.case_id, state)
    if isinstance(case, Reject):
        return case
    if case.closed_at is not None:
        return Reject.of("data.case_id", f"case {d.case_id!r} is already closed (at {_ts(case.closed_at)})")
    if r.occurred_at < case.opened_at:
        return Reject.of("occurred_at", f"is before case {d.case_id!r} was opened ({_ts(case.opened_at)})")
    return Accept(case.child_id, ev.CaseClosed(case_id=d.case_id))


def decide(record: RecordBase, state: State) -> Decision:
    """The event to append for `record` given `state`, or why it is refused."""
    match record:
        case UnderretningReceivedRecord():
            return _underretning_received(record, state)
        case ReceiptSentRecord(data=d):
            return _on_underretning(
                d.underretning_id, state, ev.ReceiptSent(underretning_id=d.underretning_id)
            )
        case UnderretningAssessedRecord(data=d):
            return _on_underretning(
                d.underretning_id,
                state,
                ev.UnderretningAssessed(
                    underretning_id=d.underretning_id, acute=d.acute, decision=d.decision
                ),
            )
        case CaseOpenedRecord():
            return _case_opened(record, state)
        case CaseworkerAssignedRecord():
            return _caseworker_assigned(record, state)
        case InvestigationStartedRecord(data=d):
            return _on_case(d.case_id, state, ev.InvestigationStarted(case_id=d.case_id, kind=d.kind))
        case ChildConversationHeldRecord():
            return _child_conversation(record, state)
        case InvestigationCompletedRecord(data=d):
            return _on_case(
                d.case_id,
                state,
                ev.InvestigationCompleted(case_id=d.case_id, kind=d.kind, outcome=d.outcome),
            )
        case ChildPlanMadeRecord(data=d):
            return _on_case(d.case_id, state, ev.ChildPlanMade(case_id=d.case_id))
        case MeasureStartedRecord():
            return _measure_started(record, state)
        case FollowUpHeldRecord(data=d):
            return _on_measure(
                d.case_id,
                d.measure_id,
                state,
                ev.FollowUpHeld(
                    case_id=d.case_id,
                    measure_id=d.measure_id,
                    next_due=d.next_due,
                    stable_placement_exemption=bool(d.stable_placement_exemption),
                ),
            )
        case SupervisionVisitHeldRecord(data=d):
            return _on_measure(
                d.case_id,
                d.measure_id,
                state,
                ev.SupervisionVisitHeld(case_id=d.case_id, measure_id=d.measure_id),
            )
        case MeasureEndedRecord():
            return _measure_ended(record, state)
        case WaitlistEnteredRecord():
            return _waitlist_entered(record, state)
        case WaitlistLeftRecord(data=d):
            return _on_case(d.case_id, state, ev.WaitlistLeft(case_id=d.case_id, offer_type=d.offer_type))
        case CaseClosedRecord():
            return _case_closed(record, state)
    raise TypeError(f"no rule for record type {type(record).__name__}")
