"""Small builders for the ledelsesinfo tests: one child's events written out by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.events.catalogue import (
    CaseClosed,
    CaseOpened,
    CaseworkerAssigned,
    ChildConversationHeld,
    ChildPlanMade,
    ChildRef,
    EventPayload,
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
from shared.events.codes import DEFAULT_MEASURE_TYPES, NOTIFIERS
from shared.events.envelope import EventEnvelope

CPH = ZoneInfo("Europe/Copenhagen")
BFU = "boernefaglig_undersoegelse"
_seq = itertools.count(1)


def t(text: str) -> datetime:
    """'2026-11-02 09:15' -> an aware instant in Copenhagen local time."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CPH)


class Child:
    """Builds the events of one child (stream child-{municipality}-{child_id})."""

    def __init__(self, child_id: str = "c1", municipality: str = "657") -> None:
        self.child_id = child_id
        self.municipality = municipality
        self.ref = ChildRef(child_id=child_id, sex="P", birth_date=datetime(2015, 5, 1).date())
        self.events: list[EventEnvelope] = []
        self.version = 0

    def ev(self, payload: EventPayload, at: str, recorded: str | None = None) -> EventEnvelope:
        self.version += 1
        n = next(_seq)
        env = EventEnvelope(
            event_id=f"ev-{n:06d}",
            stream_id=f"child-{self.municipality}-{self.child_id}",
            version=self.version,
            municipality=self.municipality,
            record_id=f"rec-{n:06d}",
            occurred_at=t(at),
            recorded_at=(t(recorded) if recorded else datetime(2030, 1, 1, tzinfo=UTC)),
            correlation_id=f"corr-{n}",
            payload=payload,
        )
        self.events.append(env)
        return env

    # --- record helpers ---------------------------------------------------------------------
    def received(
        self,
        uid: str,
        at: str,
        *,
        team: str = "syd",
        notifier: str = "2",
        severity: str = "bekymring",
        reasons: tuple[str, ...] = ("andet",),
        case_id: str | None = None,
        professional: bool | None = None,
    ) -> EventEnvelope:
        prof = NOTIFIERS[notifier][1] if professional is None else professional
        return self.ev(
            UnderretningReceived(
                underretning_id=uid,
                child=self.ref,
                notifier=notifier,
                professional=prof,
                reasons=reasons,
                severity=severity,
                team_id=team,
                case_id=case_id,
            ),
            at,
        )

    def assessed(self, uid: str, at: str, decision: str = "afdaekning", acute: bool = False) -> EventEnvelope:
        return self.ev(UnderretningAssessed(underretning_id=uid, acute=acute, decision=decision), at)

    def receipt(self, uid: str, at: str) -> EventEnvelope:
        return self.ev(ReceiptSent(underretning_id=uid), at)

    def opened(self, case: str, at: str, *, team: str = "syd", uid: str | None = None) -> EventEnvelope:
        return self.ev(CaseOpened(case_id=case, child=self.ref, team_id=team, underretning_id=uid), at)

    def assigned(self, case: str, cw: str, at: str) -> EventEnvelope:
        return self.ev(CaseworkerAssigned(case_id=case, caseworker_id=cw), at)

    def closed(self, case: str, at: str) -> EventEnvelope:
        return self.ev(CaseClosed(case_id=case), at)

    def inv_started(self, case: str, at: str, kind: str = BFU) -> EventEnvelope:
        return self.ev(InvestigationStarted(case_id=case, kind=kind), at)

    def inv_completed(self, case: str, at: str, kind: str = BFU) -> EventEnvelope:
        return self.ev(InvestigationCompleted(case_id=case, kind=kind), at)

    def conversation(self, at: str, *, case: str | None = None, uid: str | None = None) -> EventEnvelope:
        return self.ev(ChildConversationHeld(case_id=case, underretning_id=uid), at)

    def plan(self, case: str, at: str) -> EventEnvelope:
        return self.ev(ChildPlanMade(case_id=case), at)

    def measure(self, case: str, mid: str, mtype: str, at: str, cost: float | None = None) -> EventEnvelope:
        mt = DEFAULT_MEASURE_TYPES[mtype]
        return self.ev(
            MeasureStarted(
                case_id=case,
                measure_id=mid,
                measure_type=mtype,
                step=mt.step,
                placement=mt.placement,
                monthly_cost_dkk=cost,
            ),
            at,
        )

    def measure_ended(self, case: str, mid: str, at: str) -> EventEnvelope:
        return self.ev(MeasureEnded(case_id=case, measure_id=mid), at)

    def follow_up(
        self, case: str, mid: str, at: str, next_due: str | None = None, exemption: bool = False
    ) -> EventEnvelope:
        nd = datetime.strptime(next_due, "%Y-%m-%d").date() if next_due else None
        return self.ev(
            FollowUpHeld(case_id=case, measure_id=mid, next_due=nd, stable_placement_exemption=exemption), at
        )

    def visit(self, case: str, mid: str, at: str) -> EventEnvelope:
        return self.ev(SupervisionVisitHeld(case_id=case, measure_id=mid), at)

    def wait_in(self, case: str, offer: str, at: str) -> EventEnvelope:
        return self.ev(WaitlistEntered(case_id=case, offer_type=offer), at)

    def wait_out(self, case: str, offer: str, at: str) -> EventEnvelope:
        return self.ev(WaitlistLeft(case_id=case, offer_type=offer), at)
