"""JSON views of a child's picture: a case as of a moment, a deadline with its state. Pure, no I/O.

Instants are rendered in Europe/Copenhagen with their UTC offset. `case_view(picture, case_id, t)`
shows the case as it was known to have been at `t` (facts that happened after `t` are left out)
with every deadline's state at `t`; with `t=None` it shows everything known, without states (the
form stored in the projection).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.casework.calendar import as_utc
from shared.casework.deadlines import DEADLINE_LABELS_DA, Deadline
from shared.casework.isotext import copenhagen_iso
from shared.casework.model import (
    PHASE_LABELS_DA,
    Case,
    ChildPicture,
    Investigation,
    Measure,
    Underretning,
    WaitlistEntry,
)


class _IsoMemo(dict[datetime, str]):
    """Rendered instants, by instant. Only UTC instants are kept (equal UTC values are the same
    instant); a lookup with another zone finds the same instant's text, or renders it. Bounded."""

    def __missing__(self, at: datetime) -> str:
        text = copenhagen_iso(at)
        if at.tzinfo is UTC:
            if len(self) >= 65536:
                self.clear()
            self[at] = text
        return text


_ISO = _IsoMemo()
ISO: Mapping[datetime, str] = _ISO
"""`ISO[at]` is `iso(at)` for an instant `at` (not None), without the call (a memo, for hot paths)."""


def iso(at: datetime | None) -> str | None:
    """The instant in Copenhagen time with its offset, e.g. `2026-11-20T12:00:00+01:00`."""
    return None if at is None else _ISO[at]


def _upto(at: datetime | None, t: datetime | None) -> datetime | None:
    """`at` if it had happened by `t` (always, when `t` is None)."""
    if at is None or t is None or at <= t:
        return at
    return None


def _seen(at: datetime | None, t: datetime | None) -> bool:
    return at is not None and (t is None or at <= t)


def deadline_view(d: Deadline, t: datetime | None, caseworker_id: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "deadline": d.deadline,
        "label": DEADLINE_LABELS_DA.get(d.deadline, d.deadline),
        "case_id": d.case_id,
        "underretning_id": d.underretning_id,
        "measure_id": d.measure_id,
        "child_id": d.child_id,
        "seq": d.seq,
        "starts_at": iso(d.starts_at),
        "due": iso(d.due),
        "met_at": iso(_upto(d.met_at, t)),
        "ended_at": iso(_upto(d.ended_at, t)),
        "caseworker_id": caseworker_id,
        "team_id": d.team_id,
    }
    if t is not None:
        doc["state"] = d.state_at(t)
    return doc


def _underretning_view(u: Underretning, t: datetime | None) -> dict[str, Any]:
    assessed = _seen(u.assessed_at, t)
    return {
        "underretning_id": u.underretning_id,
        "received_at": iso(u.received_at),
        "notifier": u.notifier,
        "professional": u.professional,
        "reasons": list(u.reasons),
        "severity": u.severity,
        "team_id": u.team_id,
        "assessed_at": iso(u.assessed_at) if assessed else None,
        "acute": u.acute if assessed else None,
        "decision": u.decision if assessed else None,
        "receipt_sent_at": iso(_upto(u.receipt_sent_at, t)),
        "child_conversation_at": iso(_upto(u.child_conversation_at, t)),
        "open": not assessed,
    }


def _investigation_view(inv: Investigation, t: datetime | None) -> dict[str, Any]:
    completed = _seen(inv.completed_at, t)
    return {
        "kind": inv.kind,
        "started_at": iso(inv.started_at),
        "completed_at": iso(inv.completed_at) if completed else None,
        "outcome": inv.outcome if completed else None,
        "open": inv.started_at is not None and not completed,
    }


def _measure_view(m: Measure, t: datetime | None) -> dict[str, Any]:
    ended = _seen(m.ended_at, t)
    return {
        "measure_id": m.measure_id,
        "measure_type": m.measure_type,
        "step": m.step,
        "placement": m.placement,
        "provider": m.provider,
        "monthly_cost_dkk": m.monthly_cost_dkk,
        "started_at": iso(m.started_at),
        "ended_at": iso(m.ended_at) if ended else None,
        "end_reason": m.end_reason if ended else None,
        "running": not ended,
        "follow_ups": [
            {
                "held_at": iso(f.held_at),
                "next_due": f.next_due.isoformat() if f.next_due else None,
                "stable_placement_exemption": f.stable_placement_exemption,
            }
            for f in m.follow_ups
            if _seen(f.held_at, t)
        ],
        "supervision_visits": [iso(v) for v in m.supervision_visits if _seen(v, t)],
        "stable_placement_exempt_since": iso(_upto(m.exempt_since, t)),
    }


def _waitlist_view(w: WaitlistEntry, t: datetime | None) -> dict[str, Any]:
    left = _upto(w.left_at, t)
    return {
        "offer_type": w.offer_type,
        "measure_id": w.measure_id,
        "entered_at": iso(w.entered_at),
        "left_at": iso(left),
        "waiting": left is None,
    }


def case_view(picture: ChildPicture, case_id: str, t: datetime | None = None) -> dict[str, Any]:
    """The case as of `t` (see module doc). Raises `KeyError` for an unknown case."""
    t = as_utc(t) if t is not None else None
    doc = case_summary(picture, case_id, t)
    case = picture.cases[case_id]
    own = picture.deadlines_of_case(case_id)
    if t is None:
        doc["deadlines"] = [deadline_view(d, None, case.caseworker_id) for d in own]
        return doc
    caseworker_id = doc["caseworker_id"]
    doc["at"] = iso(t)
    doc["deadlines"] = [deadline_view(d, t, caseworker_id) for d in own if d.state_at(t) is not None]
    doc["ended_deadlines"] = [deadline_view(d, t, caseworker_id) for d in own if d.ended_unmet_at(t)]
    return doc


def case_summary(picture: ChildPicture, case_id: str, t: datetime | None = None) -> dict[str, Any]:
    """`case_view` without its deadlines (the members it has before `at` and `deadlines`)."""
    t = as_utc(t) if t is not None else None
    case: Case = picture.cases[case_id]
    if t is None:
        return _summary_of_everything(picture, case)
    assignments = [a for a in case.assignments if _seen(a.assigned_at, t)]
    caseworker_id = assignments[-1].caseworker_id if assignments else None
    underretninger = [
        _underretning_view(picture.underretninger[uid], t)
        for uid in case.underretning_ids
        if _seen(picture.underretninger[uid].received_at, t)
    ]
    measures = [_measure_view(m, t) for m in case.measures if _seen(m.started_at, t)]
    phase = picture.phase_at(case_id, t)
    return {
        "case_id": case.case_id,
        "municipality": case.municipality,
        "child_id": case.child_id,
        "team_id": case.team_id,
        "caseworker_id": caseworker_id,
        "caseworker_history": [
            {"caseworker_id": a.caseworker_id, "assigned_at": iso(a.assigned_at), "change": a.change}
            for a in assignments
        ],
        "caseworker_changes": sum(1 for a in assignments if a.change),
        "status": case.status_at(t),
        "phase": phase,
        "phase_label": PHASE_LABELS_DA.get(phase) if phase else None,
        "opened_at": iso(_upto(case.opened_at, t)),
        "closed_at": iso(_upto(case.closed_at, t)),
        "opened_for_underretning_id": case.opened_for_underretning_id,
        "underretninger": underretninger,
        "open_underretninger": [u["underretning_id"] for u in underretninger if u["open"]],
        "investigations": [
            _investigation_view(inv, t)
            for inv in case.investigations
            if _seen(inv.started_at, t) or _seen(inv.completed_at, t)
        ],
        "running_measures": [m for m in measures if m["running"]],
        "ended_measures": [m for m in measures if not m["running"]],
        "waitlist": [_waitlist_view(w, t) for w in case.waitlist if _seen(w.entered_at, t)],
        "child_plans": [iso(p) for p in case.child_plans if _seen(p, t)],
    }


def _summary_of_everything(picture: ChildPicture, case: Case) -> dict[str, Any]:
    """`case_summary` with `t=None` (everything known: the form the projection stores), the same
    members built without asking for every fact whether it had happened by then."""
    underretninger = [_underretning_view(picture.underretninger[uid], None) for uid in case.underretning_ids]
    measures = [_measure_view(m, None) for m in case.measures]
    assignments = case.assignments
    phase = picture.final_phase(case.case_id)
    return {
        "case_id": case.case_id,
        "municipality": case.municipality,
        "child_id": case.child_id,
        "team_id": case.team_id,
        "caseworker_id": assignments[-1].caseworker_id if assignments else None,
        "caseworker_history": [
            {"caseworker_id": a.caseworker_id, "assigned_at": _ISO[a.assigned_at], "change": a.change}
            for a in assignments
        ],
        "caseworker_changes": sum(1 for a in assignments if a.change),
        "status": case.status,
        "phase": phase,
        "phase_label": PHASE_LABELS_DA.get(phase) if phase else None,
        "opened_at": iso(case.opened_at),
        "closed_at": iso(case.closed_at),
        "opened_for_underretning_id": case.opened_for_underretning_id,
        "underretninger": underretninger,
        "open_underretninger": [u["underretning_id"] for u in underretninger if u["open"]],
        "investigations": [
            _investigation_view(inv, None)
            for inv in case.investigations
            if inv.started_at is not None or inv.completed_at is not None
        ],
        "running_measures": [m for m in measures if m["running"]],
        "ended_measures": [m for m in measures if not m["running"]],
        "waitlist": [_waitlist_view(w, None) for w in case.waitlist],
        "child_plans": [_ISO[p] for p in case.child_plans],
    }
