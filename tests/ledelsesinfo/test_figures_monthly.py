"""One hand-computed test per monthly figure id (domain.md §6.2). November 2026 has 30 days."""

from __future__ import annotations

import pytest

from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child

NOV = "2026-11"


def _measures_scenario(h: Harness) -> None:
    a, b, c, d = Child("a"), Child("b"), Child("c"), Child("d")
    for ch in (a, b, c, d):
        ch.opened("s", "2026-09-01 09:00")
    a.measure("s", "m1", "plejefamilie", "2026-09-14 13:00", cost=42000)  # all of November: 30 days
    b.measure("s", "m2", "plejefamilie", "2026-11-16 10:00", cost=30000)  # 16..30 Nov: 15 days
    c.measure("s", "m3", "familiebehandling", "2026-11-09 09:00", cost=18600)  # starts and ends 9 Nov: 1 day
    c.measure_ended("s", "m3", "2026-11-09 15:00")
    d.measure("s", "m4", "raadgivning", "2026-10-20 09:00")  # no cost given; 1..10 Nov: 10 days
    d.measure_ended("s", "m4", "2026-11-10 09:00")
    h.feed(a, b, c, d)


def test_helaarspersoner_by_measure_type(h: Harness) -> None:
    _measures_scenario(h)
    got = h.monthly(NOV)["helaarspersoner_by_measure_type"]
    # plejefamilie (30 + 15) / 30 = 1.5; familiebehandling 1 / 30; raadgivning 10 / 30; others 0
    assert got["plejefamilie"] == pytest.approx(1.5)
    assert got["familiebehandling"] == pytest.approx(1 / 30)
    assert got["raadgivning"] == pytest.approx(10 / 30)
    assert got["opholdssted"] == 0
    # December: m1 and m2 run all 31 days -> 62 / 31 = 2.0; m3 and m4 ended
    dec = h.monthly("2026-12")["helaarspersoner_by_measure_type"]
    assert dec["plejefamilie"] == pytest.approx(2.0)
    assert dec["raadgivning"] == 0


def test_cost_dkk_by_measure_type(h: Harness) -> None:
    _measures_scenario(h)
    got = h.monthly(NOV)["cost_dkk_by_measure_type"]
    # plejefamilie 42000 x 30/30 + 30000 x 15/30 = 57000; familiebehandling 18600 x 1/30 = 620;
    # raadgivning has no monthly_cost_dkk -> 0
    assert got["plejefamilie"] == pytest.approx(57000)
    assert got["familiebehandling"] == pytest.approx(620)
    assert got["raadgivning"] == 0


def test_unit_cost_dkk_per_helaarsperson(h: Harness) -> None:
    _measures_scenario(h)
    got = h.monthly(NOV)["unit_cost_dkk_per_helaarsperson"]
    # plejefamilie 57000 x 12 / 1.5 = 456000; familiebehandling 620 x 12 / (1/30) = 223200 (= 18600 x 12);
    # raadgivning 0 x 12 / (1/3) = 0; opholdssted: no helårspersoner -> null
    assert got["plejefamilie"] == pytest.approx(456000)
    assert got["familiebehandling"] == pytest.approx(223200)
    assert got["raadgivning"] == 0
    assert got["opholdssted"] is None


def _waitlist_scenario(h: Harness) -> None:
    a, b, c, d, e = (Child(x) for x in "abcde")
    for ch in (a, b, c, d, e):
        ch.opened("s", "2026-10-01 09:00")
    a.wait_in("s", "familiebehandling", "2026-10-30 12:30")  # still waiting: 30 Nov - 30 Oct = 31 days
    b.wait_in("s", "familiebehandling", "2026-11-20 10:00")  # 30 Nov - 20 Nov = 10 days
    c.wait_in("s", "familiebehandling", "2026-11-05 10:00")  # left before month end: not counted
    c.wait_out("s", "familiebehandling", "2026-11-25 10:00")
    d.wait_in("s", "aflastning", "2026-11-30 08:00")  # entered on the last day: 0 days
    e.wait_in("s", "aflastning", "2026-11-01 10:00")  # the case closed: off the list
    e.closed("s", "2026-11-15 10:00")
    h.feed(a, b, c, d, e)


def test_waitlist_count_by_offer(h: Harness) -> None:
    _waitlist_scenario(h)
    # familiebehandling: a, b = 2; aflastning: d = 1
    assert h.monthly(NOV)["waitlist_count_by_offer"] == {"aflastning": 1, "familiebehandling": 2}
    # end of October: a only
    assert h.monthly("2026-10")["waitlist_count_by_offer"] == {"familiebehandling": 1}


def test_waitlist_days_mean_by_offer(h: Harness) -> None:
    _waitlist_scenario(h)
    # familiebehandling (31 + 10) / 2 = 20.5; aflastning 0 / 1 = 0.0
    assert h.monthly(NOV)["waitlist_days_mean_by_offer"] == {"aflastning": 0.0, "familiebehandling": 20.5}
    # December (31 days later for both): (62 + 41) / 2 = 51.5 and 31.0
    assert h.monthly("2026-12")["waitlist_days_mean_by_offer"] == {
        "aflastning": 31.0,
        "familiebehandling": 51.5,
    }


def _twelve_months(h: Harness) -> None:
    a, b = Child("a"), Child("b")
    a.received("u1", "2025-11-30 23:30", notifier="2", severity="akut")  # before the window
    a.received("u2", "2025-12-01 00:10", notifier="2", severity="bekymring")  # first minute-ish of the window
    a.received("u3", "2026-06-10 09:00", notifier="2", severity="alvorlig")
    b.received("u4", "2026-11-30 22:00", notifier="8", severity="bekymring")  # last day of November
    b.received("u5", "2026-12-01 00:05", notifier="8", severity="akut")  # after the window
    h.feed(a, b)


def test_underretninger_by_notifier_12m(h: Harness) -> None:
    _twelve_months(h)
    got = h.monthly(NOV)["underretninger_by_notifier_12m"]
    # window Dec 2025 .. Nov 2026: u2, u3 (school "2") and u4 (anonymous "8")
    assert got["2"] == 2 and got["8"] == 1
    assert sum(got.values()) == 3
    assert set(got) >= {"1", "2", "8", "12", "13", "99"}  # every notifier code is listed


def test_underretninger_by_severity_12m(h: Harness) -> None:
    _twelve_months(h)
    # u2 bekymring, u3 alvorlig, u4 bekymring
    assert h.monthly(NOV)["underretninger_by_severity_12m"] == {
        "akut": 0,
        "alvorlig": 1,
        "bekymring": 2,
        "ukendt": 0,
    }


def test_placed_children_by_type(h: Harness) -> None:
    a, b, c, d, e = (Child(x) for x in "abcde")
    for ch in (a, b, c, d, e):
        ch.opened("s", "2026-01-05 09:00")
    a.measure("s", "m1", "plejefamilie", "2026-03-01 09:00")
    b.measure("s", "m2", "plejefamilie", "2026-03-01 09:00")  # two overlapping foster placements: one child
    b.measure("s", "m3", "plejefamilie", "2026-10-01 09:00")
    c.measure("s", "m4", "opholdssted", "2026-03-01 09:00")
    c.measure_ended("s", "m4", "2026-11-30 10:00")  # runs on its end date, the month's last day
    d.measure("s", "m5", "doegninstitution", "2026-03-01 09:00")
    d.measure_ended("s", "m5", "2026-11-29 10:00")  # ended before the last day
    e.measure("s", "m6", "raadgivning", "2026-03-01 09:00")  # not a placement
    h.feed(a, b, c, d, e)
    got = h.monthly(NOV)["placed_children_by_type"]
    # plejefamilie: a, b = 2; opholdssted: c = 1; doegninstitution 0; raadgivning is no placement
    assert (got["plejefamilie"], got["opholdssted"], got["doegninstitution"], got["raadgivning"]) == (
        2,
        1,
        0,
        0,
    )


def test_early_intervention_children(h: Harness) -> None:
    a, b, c, d = (Child(x) for x in "abcd")
    for ch in (a, b, c, d):
        ch.opened("s", "2026-10-01 09:00")
    a.measure("s", "m1", "raadgivning", "2026-11-03 09:00")  # step 1 ..
    a.measure("s", "m2", "stoette_i_hjemmet", "2026-11-20 09:00")  # .. and step 2: still one child
    b.measure("s", "m3", "familiebehandling", "2026-11-05 09:00")  # step 3: not early
    c.measure("s", "m4", "raadgivning", "2026-10-30 09:00")  # October
    d.measure("s", "m5", "stoette_i_hjemmet", "2026-11-30 23:00")  # last evening of November
    h.feed(a, b, c, d)
    # a + d = 2; October: c = 1
    assert h.monthly(NOV)["early_intervention_children"] == 2
    assert h.monthly("2026-10")["early_intervention_children"] == 1


def test_repeat_notification_children_12m(h: Harness) -> None:
    a, b, c, d = (Child(x) for x in "abcd")
    a.received("u1", "2025-12-05 09:00")
    a.received("u2", "2026-11-10 09:00")  # two within Dec 2025 .. Nov 2026 -> counts
    b.received("u3", "2025-11-20 09:00")  # outside the window
    b.received("u4", "2026-11-10 09:00")
    for i, day in enumerate(("2026-02-01", "2026-05-01", "2026-09-01")):
        c.received(f"c{i}", f"{day} 09:00")  # three: counts once
    d.received("u5", "2026-11-11 09:00")  # one only
    h.feed(a, b, c, d)
    # November: a, c = 2; December (window Jan .. Dec 2026): a has only u2 left, c = 1
    assert h.monthly(NOV)["repeat_notification_children_12m"] == 2
    assert h.monthly("2026-12")["repeat_notification_children_12m"] == 1


def _staircase(h: Harness) -> None:
    a, b, c, d, e = (Child(x) for x in "abcde")
    for ch in (a, b, c, d, e):
        ch.opened("s", "2026-01-05 09:00")
    a.measure("s", "a1", "opholdssted", "2026-05-01 09:00")  # step 6 at the end of October ..
    a.measure_ended("s", "a1", "2026-11-09 09:00")
    a.measure("s", "a2", "plejefamilie", "2026-11-10 09:00")  # .. step 5 at the end of November: down
    b.measure("s", "b1", "raadgivning", "2026-05-01 09:00")  # step 1 ..
    b.measure("s", "b2", "familiebehandling", "2026-11-15 09:00")  # .. highest 3 at November's end: up
    c.measure("s", "c1", "plejefamilie", "2026-11-03 09:00")  # nothing at the end of October: no move
    d.measure("s", "d1", "plejefamilie", "2026-05-01 09:00")  # 5 and 5 (raadgivning added): no move
    d.measure("s", "d2", "raadgivning", "2026-11-03 09:00")
    e.measure("s", "e1", "stoette_i_hjemmet", "2026-05-01 09:00")  # ends on 30 Nov, runs that day: no move
    e.measure_ended("s", "e1", "2026-11-30 16:00")
    h.feed(a, b, c, d, e)


def test_staircase_moves_down(h: Harness) -> None:
    _staircase(h)
    assert h.monthly(NOV)["staircase_moves_down"] == 1  # a
    assert h.monthly("2026-12")["staircase_moves_down"] == 0  # e's measure ended, nothing runs: not both ends


def test_staircase_moves_up(h: Harness) -> None:
    _staircase(h)
    assert h.monthly(NOV)["staircase_moves_up"] == 1  # b
    assert h.monthly("2026-10")["staircase_moves_up"] == 0


def test_caseworker_changes_per_100_cases(h: Harness) -> None:
    a, b, c, d = (Child(x) for x in "abcd")
    a.opened("s1", "2026-10-01 09:00")
    a.assigned("s1", "anna", "2026-10-01 09:05")
    a.assigned("s1", "bo", "2026-11-10 09:00")  # a change
    a.assigned("s1", "bo", "2026-11-12 09:00")  # the same caseworker again: not a change
    b.opened("s2", "2026-11-05 09:00")
    b.assigned("s2", "anna", "2026-11-05 09:05")  # the first assignment: not a change
    c.opened("s3", "2026-10-01 09:00")
    c.assigned("s3", "anna", "2026-10-01 09:05")
    c.assigned("s3", "carl", "2026-11-20 09:00")  # a change (the case closes later: still a change)
    c.closed("s3", "2026-11-25 09:00")
    d.opened("s4", "2026-10-01 09:00")
    h.feed(a, b, c, d)
    # 2 changes; open at month end s1, s2, s4 = 3 -> 2 x 100 / 3 = 66.67
    assert h.monthly(NOV)["caseworker_changes_per_100_cases"] == pytest.approx(200 / 3)
    cell = h.monthly_report(NOV).get("caseworker_changes_per_100_cases").cell
    assert cell is not None and (cell.numerator, cell.denominator) == (2, 3)
    # October: no changes over 3 open cases (s1, s3, s4) -> 0.0
    assert h.monthly("2026-10")["caseworker_changes_per_100_cases"] == 0.0


def test_acute_assessment_on_time_share_monthly(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-11-01 00:30")  # first minutes of November; assessed within 24 h
    c.assessed("u1", "2026-11-01 20:00")
    c.received("u2", "2026-11-30 23:00")  # assessed 25 h later, in December: late, still November's
    c.assessed("u2", "2026-12-02 00:00")
    c.received("u3", "2026-10-31 23:59")  # October
    c.assessed("u3", "2026-11-01 08:00")
    h.feed(c)
    # November: 1 on time of 2 -> 0.5; October: 1/1
    assert h.monthly(NOV)["acute_assessment_on_time_share"] == {
        "value": 0.5,
        "numerator": 1,
        "denominator": 2,
    }
    assert h.monthly("2026-10")["acute_assessment_on_time_share"]["value"] == 1.0


def test_monthly_team_scope(h: Harness) -> None:
    a, b = Child("a"), Child("b")
    a.opened("s1", "2026-10-01 09:00", team="syd")
    a.measure("s1", "m1", "plejefamilie", "2026-10-01 09:00")
    b.opened("s2", "2026-10-01 09:00", team="nord")
    b.measure("s2", "m2", "plejefamilie", "2026-10-01 09:00")
    h.feed(a, b)
    assert h.monthly(NOV)["placed_children_by_type"]["plejefamilie"] == 2
    assert h.monthly(NOV, team="syd")["placed_children_by_type"]["plejefamilie"] == 1
    assert h.monthly(NOV, team="syd")["helaarspersoner_by_measure_type"]["plejefamilie"] == pytest.approx(1.0)
