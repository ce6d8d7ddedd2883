"""A few children with rich histories, shared by the projection and API tests."""

from __future__ import annotations

from datetime import date

from tests.followup.followup_factory import Stream


def anna_child() -> Stream:
    """Investigation, waiting list, family treatment, a follow-up with next_due, a caseworker change."""
    s = Stream(municipality="657", child_id="c-anna")
    s.received("2026-10-05 08:40", "UR-1001", notifier="3", reasons=("barn_adfaerd",), team_id="syd")
    s.assessed("2026-10-05 13:10", "UR-1001")
    s.receipt("2026-10-06 09:00", "UR-1001")
    s.opened("2026-10-05 14:00", "S-2001", team_id="syd", uid="UR-1001")
    s.assigned("2026-10-05 14:05", "sr-anna", case_id="S-2001")
    s.inv_started("2026-10-06 10:00", case_id="S-2001")
    s.inv_completed("2026-10-30 12:00", case_id="S-2001")
    s.wait("2026-10-30 12:30", case_id="S-2001")
    s.wait_left("2026-11-09 09:00", case_id="S-2001")
    s.measure("2026-11-09 09:00", "I-3001", "familiebehandling", case_id="S-2001")
    s.follow_up("2026-11-16 10:00", "I-3001", next_due=date(2026, 12, 14), case_id="S-2001")
    s.assigned("2026-11-17 08:00", "sr-bo", case_id="S-2001")
    return s


def carl_child() -> Stream:
    """An acute placement in a foster family: plan, follow-ups, a visit, the exemption, end, closing."""
    s = Stream(municipality="657", child_id="c-carl")
    s.received("2026-09-14 09:00", "UR-0990", notifier="6", reasons=("overgreb_foraeldre",), team_id="nord")
    s.assessed("2026-09-14 10:00", "UR-0990", decision="akut_indsats", acute=True)
    s.opened("2026-09-14 10:30", "S-1990", team_id="nord", uid="UR-0990")
    s.assigned("2026-09-14 10:35", "sr-carl", case_id="S-1990")
    s.plan("2026-09-14 12:00", case_id="S-1990")
    s.measure("2026-09-14 13:00", "I-2990", "plejefamilie", case_id="S-1990")
    s.follow_up("2026-09-28 10:00", "I-2990", case_id="S-1990")
    s.visit("2026-11-10 10:00", "I-2990", case_id="S-1990")
    s.follow_up("2026-11-09 10:00", "I-2990", exempt=True, case_id="S-1990")
    s.measure_ended("2026-11-20 10:00", "I-2990", case_id="S-1990")
    s.closed("2026-11-20 12:00", case_id="S-1990")
    return s


def dora_child() -> Stream:
    """An open case in team syd with overdue work, held by sr-anna, then an unattributed underretning."""
    s = Stream(municipality="657", child_id="c-dora")
    s.opened("2026-08-03 10:00", "S-3001", team_id="syd")
    s.assigned("2026-08-03 10:05", "sr-anna", case_id="S-3001")
    s.measure("2026-08-10 10:00", "I-4001", "opholdssted", case_id="S-3001")
    s.closed("2026-12-01 10:00", case_id="S-3001")
    s.received("2026-12-10 10:00", "UR-2001", notifier="8", reasons=("overgreb_andre",), team_id="modtag")
    return s


def other_municipality_child() -> Stream:
    s = Stream(municipality="167", child_id="c-hvid")
    s.opened("2026-08-03 10:00", "S-3001", team_id="syd")  # same case id, another municipality
    s.assigned("2026-08-03 10:05", "sr-anna", case_id="S-3001")
    return s


def all_streams() -> list[Stream]:
    return [anna_child(), carl_child(), dora_child(), other_municipality_child()]
