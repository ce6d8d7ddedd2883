"""Builders for the follow-up tests: envelopes of one child's stream, with readable defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
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
from shared.events.codes import DEFAULT_MEASURE_TYPES, is_professional
from shared.events.envelope import EventEnvelope, stream_id_for_child

CPH = ZoneInfo("Europe/Copenhagen")


def local(text: str) -> datetime:
    """'2026-11-02 09:15' (Copenhagen wall clock) -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=CPH)


def child_ref(child_id: str) -> ChildRef:
    return ChildRef(child_id=child_id, sex="P", birth_date=date(2015, 4, 24))


@dataclass
class Stream:
    """One child's event stream. `add` returns the envelope (and keeps it in `events`)."""

    municipality: str = "657"
    child_id: str = "c-1"
    events: list[EventEnvelope] = field(default_factory=list)

    @property
    def stream_id(self) -> str:
        return stream_id_for_child(self.municipality, self.child_id)

    def add(self, when: str | datetime, payload: EventPayload) -> EventEnvelope:
        at = local(when) if isinstance(when, str) else when
        version = len(self.events) + 1
        env = EventEnvelope(
            event_id=f"{self.child_id}-e{version:04d}",
            stream_id=self.stream_id,
            version=version,
            municipality=self.municipality,
            record_id=f"{self.child_id}-r{version:04d}",
            occurred_at=at,
            recorded_at=at + timedelta(minutes=5),
            correlation_id=f"corr-{version}",
            payload=payload,
        )
        self.events.append(env)
        return env

    # --- record-shaped helpers -----------------------------------------------------------

    def received(
        self,
        when: str,
        uid: str = "U1",
        *,
        notifier: str = "2",
        reasons: tuple[str, ...] = ("barn_skole",),
        severity: str = "bekymring",
        team_id: str = "t1",
        case_id: str | None = None,
        professional: bool | None = None,
    ) -> EventEnvelope:
        return self.add(
            when,
            UnderretningReceived(
                underretning_id=uid,
                child=child_ref(self.child_id),
                notifier=notifier,
                professional=is_professional(notifier, professional),
                reasons=reasons,
                severity=severity,
                team_id=team_id,
                case_id=case_id,
            ),
        )

    def assessed(
        self, when: str, uid: str = "U1", decision: str = "boernefaglig_undersoegelse", acute: bool = False
    ) -> EventEnvelope:
        return self.add(when, UnderretningAssessed(underretning_id=uid, acute=acute, decision=decision))

    def receipt(self, when: str, uid: str = "U1") -> EventEnvelope:
        return self.add(when, ReceiptSent(underretning_id=uid))

    def opened(
        self, when: str, case_id: str = "S1", team_id: str = "t1", uid: str | None = None
    ) -> EventEnvelope:
        return self.add(
            when,
            CaseOpened(case_id=case_id, child=child_ref(self.child_id), team_id=team_id, underretning_id=uid),
        )

    def assigned(self, when: str, caseworker_id: str, case_id: str = "S1") -> EventEnvelope:
        return self.add(when, CaseworkerAssigned(case_id=case_id, caseworker_id=caseworker_id))

    def conversation(self, when: str, case_id: str | None = "S1", uid: str | None = None) -> EventEnvelope:
        return self.add(when, ChildConversationHeld(case_id=case_id, underretning_id=uid))

    def inv_started(
        self, when: str, kind: str = "boernefaglig_undersoegelse", case_id: str = "S1"
    ) -> EventEnvelope:
        return self.add(when, InvestigationStarted(case_id=case_id, kind=kind))

    def inv_completed(
        self, when: str, kind: str = "boernefaglig_undersoegelse", case_id: str = "S1"
    ) -> EventEnvelope:
        return self.add(when, InvestigationCompleted(case_id=case_id, kind=kind, outcome="indsats"))

    def plan(self, when: str, case_id: str = "S1") -> EventEnvelope:
        return self.add(when, ChildPlanMade(case_id=case_id))

    def measure(
        self, when: str, measure_id: str = "M1", measure_type: str = "familiebehandling", case_id: str = "S1"
    ) -> EventEnvelope:
        mt = DEFAULT_MEASURE_TYPES[measure_type]
        return self.add(
            when,
            MeasureStarted(
                case_id=case_id,
                measure_id=measure_id,
                measure_type=measure_type,
                step=mt.step,
                placement=mt.placement,
                monthly_cost_dkk=10000.0,
            ),
        )

    def follow_up(
        self,
        when: str,
        measure_id: str = "M1",
        *,
        next_due: date | None = None,
        exempt: bool = False,
        case_id: str = "S1",
    ) -> EventEnvelope:
        return self.add(
            when,
            FollowUpHeld(
                case_id=case_id, measure_id=measure_id, next_due=next_due, stable_placement_exemption=exempt
            ),
        )

    def visit(self, when: str, measure_id: str = "M1", case_id: str = "S1") -> EventEnvelope:
        return self.add(when, SupervisionVisitHeld(case_id=case_id, measure_id=measure_id))

    def measure_ended(self, when: str, measure_id: str = "M1", case_id: str = "S1") -> EventEnvelope:
        return self.add(when, MeasureEnded(case_id=case_id, measure_id=measure_id, reason="afsluttet"))

    def wait(self, when: str, offer_type: str = "familiebehandling", case_id: str = "S1") -> EventEnvelope:
        return self.add(when, WaitlistEntered(case_id=case_id, offer_type=offer_type))

    def wait_left(
        self, when: str, offer_type: str = "familiebehandling", case_id: str = "S1"
    ) -> EventEnvelope:
        return self.add(when, WaitlistLeft(case_id=case_id, offer_type=offer_type))

    def closed(self, when: str, case_id: str = "S1") -> EventEnvelope:
        return self.add(when, CaseClosed(case_id=case_id))


def only(items: list[Any] | tuple[Any, ...]) -> Any:
    assert len(items) == 1, items
    return items[0]
