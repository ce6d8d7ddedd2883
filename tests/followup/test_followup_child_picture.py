"""Given a child's events, when projected, then cases, phases, attribution and caseworkers are right."""

from __future__ import annotations

import pytest

from shared.casework.child import project_child
from tests.followup.followup_factory import Stream, local


def test_needs_events_of_one_stream() -> None:
    with pytest.raises(ValueError):
        project_child([])
    a, b = Stream(child_id="a"), Stream(child_id="b")
    a.opened("2026-01-05 10:00")
    b.opened("2026-01-05 10:00")
    with pytest.raises(ValueError):
        project_child([*a.events, *b.events])


# --------------------------------------------------------------------------- phase (spec 6.1)


def test_phase_first_that_fits_over_time() -> None:
    s = Stream()
    s.received("2026-10-05 08:40", "U1")
    s.opened("2026-10-05 14:00", uid="U1")
    s.assessed("2026-10-06 09:00", "U1")
    s.inv_started("2026-10-07 10:00")
    s.measure("2026-10-20 10:00")  # while the investigation is still open
    s.inv_completed("2026-10-30 12:00")
    s.received("2026-11-05 10:00", "U2")  # attributed to the open case
    s.assessed("2026-11-06 10:00", "U2")
    s.measure_ended("2026-12-01 10:00")
    s.closed("2026-12-15 10:00")
    p = project_child(s.events)
    phases = {
        "2026-10-05 13:00": None,  # not yet open
        "2026-10-05 15:00": "modtaget",
        "2026-10-06 12:00": "afventer",
        "2026-10-08 12:00": "undersoegelse",
        "2026-10-25 12:00": "undersoegelse",  # investigation beats the running measure
        "2026-11-01 12:00": "indsats",
        "2026-11-05 12:00": "modtaget",
        "2026-11-07 12:00": "indsats",
        "2026-12-05 12:00": "afventer",
        "2026-12-16 12:00": None,  # closed
    }
    for at, phase in phases.items():
        assert p.phase_at("S1", local(at)) == phase, at
    assert p.final_phase("S1") is None
    assert p.cases["S1"].status == "closed"
    assert p.cases["S1"].status_at(local("2026-10-05 13:00")) == "not_opened"


def test_final_phase_of_an_open_case() -> None:
    s = Stream()
    s.opened("2026-10-05 14:00")
    s.measure("2026-10-20 10:00")
    assert project_child(s.events).final_phase("S1") == "indsats"


# --------------------------------------------------------------------------- attribution (spec 3)


def test_attribution_own_case_id_first() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00", "S1")
    s.closed("2026-02-01 10:00", "S1")
    s.opened("2026-03-01 10:00", "S2", uid="U1")  # names U1 ...
    s.received("2026-03-05 10:00", "U1", case_id="S1")  # ... but U1 names S1 itself
    p = project_child(s.events)
    assert p.underretninger["U1"].case_id == "S1"
    assert p.cases["S1"].underretning_ids == ("U1",)
    assert p.cases["S2"].underretning_ids == ()


def test_attribution_case_opened_naming_it() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00", "S1")  # open when U1 arrives
    s.received("2026-01-10 10:00", "U1")
    s.closed("2026-01-11 10:00", "S1")
    s.opened("2026-01-12 10:00", "S2", uid="U1")  # opened later, naming U1: wins over S1
    p = project_child(s.events)
    assert p.underretninger["U1"].case_id == "S2"


def test_attribution_case_open_when_received() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00", "S1")
    s.closed("2026-02-01 10:00", "S1")
    s.opened("2026-03-01 10:00", "S2")
    s.received("2026-01-20 10:00", "U1")  # S1 open then
    s.received("2026-02-15 10:00", "U2")  # nothing open: none (yet)
    s.received("2026-03-01 10:00", "U3")  # at the very moment S2 opens
    s.received("2026-02-01 10:00", "U4")  # at the very moment S1 closes: not open
    p = project_child(s.events)
    assert p.underretninger["U1"].case_id == "S1"
    assert p.underretninger["U2"].case_id is None
    assert p.underretninger["U3"].case_id == "S2"
    assert p.underretninger["U4"].case_id is None
    # deadlines of an unattributed underretning belong to its own team and no case
    d = next(d for d in p.deadlines if d.underretning_id == "U2" and d.deadline == "acute_assessment")
    assert d.case_id is None and d.team_id == "t1"


def test_underretning_deadlines_take_the_cases_team() -> None:
    s = Stream()
    s.received("2026-01-20 10:00", "U1", team_id="modtag")
    s.opened("2026-01-20 12:00", "S1", team_id="bagland", uid="U1")
    p = project_child(s.events)
    assert {d.team_id for d in p.deadlines} == {"bagland"}


def test_case_known_only_by_later_events_is_not_opened() -> None:
    s = Stream()
    s.assigned("2026-01-05 10:00", "sr-a", case_id="S7")
    p = project_child(s.events)
    assert p.cases["S7"].status == "not_opened"
    assert p.cases["S7"].opened_at is None
    assert p.final_phase("S7") is None


# --------------------------------------------------------------------------- caseworkers (spec 5)


def test_caseworker_changes_counted() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.assigned("2026-01-05 10:05", "sr-a")  # the first: not a change
    s.assigned("2026-02-01 10:00", "sr-a")  # the same again: not a change
    s.assigned("2026-03-01 10:00", "sr-b")  # a change
    s.assigned("2026-04-01 10:00", "sr-a")  # a change back
    case = project_child(s.events).cases["S1"]
    assert case.caseworker_id == "sr-a"
    assert case.caseworker_changes == 2
    assert [a.change for a in case.assignments] == [False, False, True, True]
    assert case.caseworker_at(local("2026-01-05 10:00")) is None
    assert case.caseworker_at(local("2026-03-15 10:00")) == "sr-b"
    assert case.caseworker_at(local("2026-04-01 10:00")) == "sr-a"


def test_late_arriving_assignment_is_placed_in_time() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.assigned("2026-03-01 10:00", "sr-b")
    s.assigned("2026-01-05 10:05", "sr-a")  # backfilled: happened first
    case = project_child(s.events).cases["S1"]
    assert case.caseworker_id == "sr-b"
    assert case.caseworker_changes == 1


# --------------------------------------------------------------------------- the rest of a case


def test_measures_running_and_ended() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-02-01 10:00", "M1", "familiebehandling")
    s.measure("2026-03-01 10:00", "M2", "plejefamilie")
    s.measure_ended("2026-04-01 10:00", "M1")
    case = project_child(s.events).cases["S1"]
    m1, m2 = case.measures
    assert (m1.measure_id, m1.step, m1.placement, m1.end_reason) == ("M1", 3, False, "afsluttet")
    assert (m2.measure_id, m2.step, m2.placement, m2.ended_at) == ("M2", 5, True, None)
    assert m1.running_at(local("2026-03-15 10:00")) and not m1.running_at(local("2026-04-01 10:00"))


def test_waitlist_entries_paired_by_offer_type() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.wait("2026-01-10 10:00", "familiebehandling")
    s.wait("2026-01-11 10:00", "plejefamilie")
    s.wait_left("2026-02-01 10:00", "familiebehandling")
    s.wait_left("2026-02-02 10:00", "ukendt")  # nothing to leave: ignored
    waitlist = project_child(s.events).cases["S1"].waitlist
    assert [(w.offer_type, w.left_at) for w in waitlist] == [
        ("familiebehandling", local("2026-02-01 10:00")),
        ("plejefamilie", None),
    ]


def test_investigation_completed_without_start_is_kept() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.inv_completed("2026-02-01 10:00", kind="screening")
    inv = project_child(s.events).cases["S1"].investigations
    assert len(inv) == 1 and inv[0].started_at is None
    assert not inv[0].open_at(local("2026-03-01 10:00"))


def test_repeated_facts_first_wins() -> None:
    s = Stream()
    s.received("2026-01-05 10:00", "U1")
    s.assessed("2026-01-05 12:00", "U1", decision="afdaekning")
    s.assessed("2026-01-05 11:00", "U1", decision="ingen_videre")  # earlier in time, arrived later
    s.opened("2026-01-06 10:00")
    s.closed("2026-02-01 10:00")
    s.closed("2026-01-20 10:00")
    p = project_child(s.events)
    assert p.underretninger["U1"].decision == "ingen_videre"
    assert p.cases["S1"].closed_at == local("2026-01-20 10:00")
