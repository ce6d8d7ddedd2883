"""One hand-computed test per weekly figure id (domain.md §6.1).

Calendar used below (Europe/Copenhagen, November 2026):
  2026-W45 = Mon 2 Nov .. Sun 8 Nov     2026-W46 = Mon 9 .. Sun 15 Nov
  2026-W47 = Mon 16 .. Sun 22 Nov       2026-W48 = Mon 23 .. Sun 29 Nov
"""

from __future__ import annotations

import pytest

from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child, t

W47 = "2026-W47"


def test_underretninger_received(h: Harness) -> None:
    a, b = Child("a"), Child("b")
    a.received("u1", "2026-11-16 08:00", team="syd")  # Monday of W47            -> W47
    a.received("u2", "2026-11-22 23:30", team="nord")  # Sunday 23:30 of W47     -> W47
    a.received("u3", "2026-11-23 00:10", team="syd")  # Monday 00:10 after it    -> W48
    b.received("u4", "2026-11-15 23:59", team="syd")  # Sunday of W46            -> W46
    h.feed(a, b)
    # W47: u1 + u2 = 2; team syd: u1 only = 1; W48: u3 = 1; W46: u4 = 1
    assert h.weekly(W47)["underretninger_received"] == 2
    assert h.weekly(W47, team="syd")["underretninger_received"] == 1
    assert h.weekly("2026-W48")["underretninger_received"] == 1
    assert h.weekly("2026-W46")["underretninger_received"] == 1


def test_underretninger_unassessed(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-11-16 10:00")
    c.assessed("u1", "2026-11-24 09:00")  # assessed in W48: still unassessed at the end of W47
    c.received("u2", "2026-11-17 10:00")
    c.assessed("u2", "2026-11-18 10:00")  # assessed inside W47
    c.received("u3", "2026-11-12 10:00")  # W46, never assessed
    c.received("u4", "2026-11-23 10:00")  # W48, never assessed
    h.feed(c)
    # end of W46: u3 = 1; end of W47: u1 + u3 = 2; end of W48: u3 + u4 = 2 (u1 assessed);
    # much later the never-assessed ones are still open: u3 + u4 = 2
    assert h.weekly("2026-W46")["underretninger_unassessed"] == 1
    assert h.weekly(W47)["underretninger_unassessed"] == 2
    assert h.weekly("2026-W48")["underretninger_unassessed"] == 2
    assert h.weekly("2027-W20")["underretninger_unassessed"] == 2


def test_acute_assessment_on_time_share(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-11-16 10:00")
    c.assessed("u1", "2026-11-17 09:00")  # 23 h: on time
    c.received("u2", "2026-11-17 10:00")
    c.assessed("u2", "2026-11-18 11:00")  # 25 h: late
    c.received("u3", "2026-11-20 10:00")  # never assessed, due Sat 21 Nov 10:00
    c.received("u4", "2026-11-22 22:00")  # never assessed, due Mon 23 Nov 22:00
    h.feed(c)
    # report made Mon 23 Nov 12:00: u4's 24 hours have not run out -> not in the denominator.
    # numerator u1 = 1; denominator u1, u2 (assessed) + u3 (past due) = 3 -> 1/3
    share = h.weekly(W47, now=t("2026-11-23 12:00"))["acute_assessment_on_time_share"]
    assert share == {"value": pytest.approx(1 / 3), "numerator": 1, "denominator": 3}
    # made after Mon 22:00, u4 joins the denominator: 1/4
    later = h.weekly(W47, now=t("2026-11-23 22:01"))["acute_assessment_on_time_share"]
    assert later == {"value": 0.25, "numerator": 1, "denominator": 4}


def test_reaction_time_hours_median(h: Harness) -> None:
    c = Child()
    # W47: reaction times 2 h, 5 h, 30 h (assessed in W48, still counts for W47); u4 never assessed
    c.received("u1", "2026-11-16 08:00")
    c.assessed("u1", "2026-11-16 10:00")
    c.received("u2", "2026-11-17 08:00")
    c.assessed("u2", "2026-11-17 13:00")
    c.received("u3", "2026-11-22 20:00")
    c.assessed("u3", "2026-11-24 02:00")
    c.received("u4", "2026-11-18 08:00")
    # W48: 1 h, 2 h, 5 h, 30 h -> median of an even count = (2 + 5) / 2 = 3.5
    for uid, assessed in (
        ("v1", "2026-11-25 09:00"),
        ("v2", "2026-11-25 10:00"),
        ("v3", "2026-11-25 13:00"),
        ("v4", "2026-11-26 14:00"),
    ):
        c.received(uid, "2026-11-25 08:00")
        c.assessed(uid, assessed)
    h.feed(c)
    # sorted 2, 5, 30 -> median 5.0
    assert h.weekly(W47)["reaction_time_hours_median"] == 5.0
    assert h.weekly("2026-W48")["reaction_time_hours_median"] == 3.5
    assert h.weekly("2026-W46")["reaction_time_hours_median"] is None


def test_receipt_on_time_share(h: Harness) -> None:
    c = Child()
    # u1 professional (school), Mon 16 Nov: working days Tue17 Wed18 Thu19 Fri20 Mon23 Tue24 -> due end
    # of Tue 24 Nov; receipt Tue 24 Nov 23:00 -> on time
    c.received("u1", "2026-11-16 10:00", notifier="2")
    c.receipt("u1", "2026-11-24 23:00")
    # u2 professional (daycare), Tue 17 Nov: due end of Wed 25 Nov; receipt Thu 26 Nov -> late
    c.received("u2", "2026-11-17 10:00", notifier="3")
    c.receipt("u2", "2026-11-26 09:00")
    # u3 anonymous: not a professional notifier -> not counted at all
    c.received("u3", "2026-11-18 10:00", notifier="8")
    # u4 professional (health), Wed 18 Nov, no receipt; due end of Thu 26 Nov
    c.received("u4", "2026-11-18 10:00", notifier="4")
    h.feed(c)
    # made Wed 25 Nov: u4 not yet due -> 1 / 2
    assert h.weekly(W47, now=t("2026-11-25 12:00"))["receipt_on_time_share"] == {
        "value": 0.5,
        "numerator": 1,
        "denominator": 2,
    }
    # made in December: u4 past due -> 1 / 3
    assert h.weekly(W47, now=t("2026-12-01 12:00"))["receipt_on_time_share"] == {
        "value": pytest.approx(1 / 3),
        "numerator": 1,
        "denominator": 3,
    }


def test_open_cases(h: Harness) -> None:
    a, b, c, d = Child("a"), Child("b"), Child("c"), Child("d")
    a.opened("s1", "2026-11-03 09:00")  # W45, never closed
    b.opened("s2", "2026-11-10 09:00")  # W46 ..
    b.closed("s2", "2026-11-18 09:00")  # .. closed in W47
    c.opened("s3", "2026-11-22 23:00")  # Sunday evening of W47
    d.opened("s4", "2026-11-17 09:00")  # opened and closed inside W47: not open at its end
    d.closed("s4", "2026-11-19 09:00")
    h.feed(a, b, c, d)
    # end W44: 0; end W46: s1 + s2 = 2; end W47: s1 + s3 = 2; years later: s1 + s3 = 2
    assert h.weekly("2026-W44")["open_cases"] == 0
    assert h.weekly("2026-W46")["open_cases"] == 2
    assert h.weekly(W47)["open_cases"] == 2
    assert h.weekly("2029-W10")["open_cases"] == 2


def _caseload_scenario(h: Harness) -> None:
    kids = [Child(f"k{i}") for i in range(1, 7)]
    k1, k2, k3, k4, k5, k6 = kids
    k1.opened("s1", "2026-11-02 09:00")
    k1.assigned("s1", "anna", "2026-11-02 09:05")
    k2.opened("s2", "2026-11-03 09:00")
    k2.assigned("s2", "anna", "2026-11-03 09:05")
    k3.opened("s3", "2026-11-04 09:00")
    k3.assigned("s3", "carl", "2026-11-04 09:05")
    k3.assigned("s3", "anna", "2026-11-18 09:00")  # carl -> anna in W47
    k4.opened("s4", "2026-11-04 09:00")
    k4.assigned("s4", "bo", "2026-11-04 09:05")
    k5.opened("s5", "2026-11-04 09:00")
    k5.assigned("s5", "anna", "2026-11-04 09:05")
    k5.closed("s5", "2026-11-12 09:00")  # closed in W46
    k6.opened("s6", "2026-11-04 09:00")  # nobody assigned: no caseworker's caseload
    h.feed(*kids)


def test_caseload_mean_min_max(h: Harness) -> None:
    _caseload_scenario(h)
    # end W46: anna s1, s2 = 2 (s5 closed); carl s3 = 1; bo s4 = 1 -> mean 4/3, min 1, max 2
    w46 = h.weekly("2026-W46")
    assert (w46["caseload_mean"], w46["caseload_min"], w46["caseload_max"]) == (pytest.approx(4 / 3), 1, 2)
    # end W47: anna s1, s2, s3 = 3; bo 1; carl 0 (not counted) -> mean 2.0, min 1, max 3
    w47 = h.weekly(W47)
    assert (w47["caseload_mean"], w47["caseload_min"], w47["caseload_max"]) == (2.0, 1, 3)
    # a caseworker's own scope: anna alone -> 3, 3, 3
    anna = h.weekly(W47, cw="anna")
    assert (anna["caseload_mean"], anna["caseload_min"], anna["caseload_max"]) == (3.0, 3, 3)
    # no caseworkers with cases before anything happened: null, not 0
    empty = h.weekly("2026-W40")
    assert (empty["caseload_mean"], empty["caseload_min"], empty["caseload_max"]) == (None, None, None)


def test_caseworkers_over_target(h: Harness) -> None:
    _caseload_scenario(h)
    # end W47 caseloads anna 3, bo 1: over a target of 2 -> anna = 1; target 3 -> nobody (exceeds, not equals)
    assert h.weekly_report(W47, target=2).get("caseworkers_over_target").cell.value == 1  # type: ignore[union-attr]
    assert h.weekly_report(W47, target=3).get("caseworkers_over_target").cell.value == 0  # type: ignore[union-attr]
    assert h.weekly(W47)["caseworkers_over_target"] == 0  # default target 25


def _investigation_scenario(h: Harness) -> None:
    a, b, c, d = Child("a"), Child("b"), Child("c"), Child("d")
    for ch, case in ((a, "s1"), (b, "s2"), (c, "s3"), (d, "s4")):
        ch.opened(case, "2026-06-01 09:00")
    a.inv_started("s1", "2026-07-10 09:00")  # due end of 10 Nov 2026
    a.inv_completed("s1", "2026-11-17 12:00")  # W47, late; 130 days
    b.inv_started("s2", "2026-10-31 09:00")  # due end of 28 Feb 2027 (31 Feb clamped)
    b.inv_completed("s2", "2026-11-20 12:00")  # W47, on time; 20 days
    c.inv_started("s3", "2026-11-02 09:00", kind="afdaekning")
    c.inv_completed("s3", "2026-11-18 09:00", kind="afdaekning")  # not a børnefaglig undersøgelse
    d.inv_started("s4", "2026-07-20 09:00")  # due end of 20 Nov
    d.inv_completed("s4", "2026-11-23 09:00")  # W48 (and November), late
    h.feed(a, b, c, d)


def test_investigations_completed(h: Harness) -> None:
    _investigation_scenario(h)
    # W47: s1 and s2 (the afdaekning does not count) = 2; W48: s4 = 1
    assert h.weekly(W47)["investigations_completed"] == 2
    assert h.weekly("2026-W48")["investigations_completed"] == 1


def test_investigation_days_mean(h: Harness) -> None:
    _investigation_scenario(h)
    # s1: 10 Jul -> 17 Nov = 21+31+30+31+17 = 130 days; s2: 31 Oct -> 20 Nov = 20 days; mean 75.0
    assert h.weekly(W47)["investigation_days_mean"] == 75.0
    assert h.weekly("2026-W46")["investigation_days_mean"] is None  # nothing completed: null


def test_investigation_on_time_share(h: Harness) -> None:
    _investigation_scenario(h)
    # W47: s2 on time, s1 late -> 1/2
    assert h.weekly(W47)["investigation_on_time_share"] == {"value": 0.5, "numerator": 1, "denominator": 2}
    # November: s1 late, s2 on time, s4 late -> 1/3
    assert h.monthly("2026-11")["investigation_on_time_share"] == {
        "value": pytest.approx(1 / 3),
        "numerator": 1,
        "denominator": 3,
    }


def test_cases_by_phase(h: Harness) -> None:
    a, b, c, d, e = (Child(x) for x in "abcde")
    # s1: an investigation is open AND an underretning on the case is unassessed -> modtaget comes first
    a.opened("s1", "2026-11-02 09:00")
    a.inv_started("s1", "2026-11-03 09:00")
    a.received("u1", "2026-11-20 09:00", case_id="s1")
    # s2: investigation open -> undersoegelse
    b.opened("s2", "2026-11-02 09:00")
    b.inv_started("s2", "2026-11-10 09:00")
    # s3: measure running -> indsats
    c.opened("s3", "2026-11-02 09:00")
    c.measure("s3", "m3", "raadgivning", "2026-11-10 09:00")
    # s4: nothing going on -> afventer
    d.opened("s4", "2026-11-02 09:00")
    # s5: investigation completed, measure ended within W47 -> afventer at the end of W47
    e.opened("s5", "2026-11-02 09:00")
    e.inv_started("s5", "2026-11-03 09:00")
    e.inv_completed("s5", "2026-11-09 09:00")
    e.measure("s5", "m5", "familiebehandling", "2026-11-10 09:00")
    e.measure_ended("s5", "m5", "2026-11-19 09:00")
    h.feed(a, b, c, d, e)
    assert h.weekly(W47)["cases_by_phase"] == {"modtaget": 1, "undersoegelse": 1, "indsats": 1, "afventer": 2}
    # end W46: s1 undersoegelse (u1 not yet received), s2 undersoegelse, s3 indsats, s4 afventer, s5 indsats
    assert h.weekly("2026-W46")["cases_by_phase"] == {
        "modtaget": 0,
        "undersoegelse": 2,
        "indsats": 2,
        "afventer": 1,
    }


def _overdue_scenario(h: Harness) -> None:
    a, b = Child("a"), Child("b")
    a.received("u3", "2026-11-02 08:00", notifier="2")  # receipt due end of Tue 10 Nov
    a.assessed("u3", "2026-11-02 12:00")
    a.receipt("u3", "2026-11-17 09:00")  # late: overdue at the end of W46, met in W47
    a.opened("s1", "2026-11-02 09:00", uid="u3")
    a.assigned("s1", "anna", "2026-11-02 09:05")
    a.measure("s1", "m1", "plejefamilie", "2026-11-02 10:00")  # no child plan: child_plan due end 2 Nov
    # first follow-up of a placement: +14 days -> due end of 16 Nov (overdue at the end of W47, not W46)
    a.received("u4", "2026-11-10 09:00", case_id="s1", notifier="8", reasons=("overgreb_andre",))
    a.assessed("u4", "2026-11-10 11:00")  # child conversation due end of 17 Nov, never held
    a.received("u1", "2026-11-20 10:00", notifier="8")  # open case s1 -> on s1; acute due 21 Nov 10:00
    b.opened("s2", "2026-06-01 09:00")
    b.assigned("s2", "bo", "2026-06-01 09:05")
    b.inv_started("s2", "2026-07-01 09:00")  # investigation due end of 1 Nov 2026, never completed
    h.feed(a, b)


def test_overdue_deadlines(h: Harness) -> None:
    _overdue_scenario(h)
    zero = dict.fromkeys(
        (
            "acute_assessment",
            "receipt",
            "child_conversation",
            "investigation",
            "first_follow_up",
            "follow_up",
            "supervision_visit",
            "child_plan",
        ),
        0,
    )
    # end of W46 (Mon 16 Nov 00:00): receipt u3, child_plan m1, investigation s2
    assert h.weekly("2026-W46")["overdue_deadlines"] == {
        **zero,
        "receipt": 1,
        "child_plan": 1,
        "investigation": 1,
    }
    # end of W47: acute u1, child_conversation u4, first_follow_up m1, child_plan m1, investigation s2
    # (the receipt was sent in W47; supervision due May 2027 is not overdue)
    assert h.weekly(W47)["overdue_deadlines"] == {
        **zero,
        "acute_assessment": 1,
        "child_conversation": 1,
        "first_follow_up": 1,
        "child_plan": 1,
        "investigation": 1,
    }


def test_caseworkers_behind(h: Harness) -> None:
    _overdue_scenario(h)
    # end of W47: anna holds s1 with 4 overdue (acute u1, conversation u4, first follow-up, child plan);
    # bo holds s2 with 1 (investigation); sorted by most overdue first
    assert h.weekly(W47)["caseworkers_behind"] == [
        {"caseworker_id": "anna", "overdue": 4},
        {"caseworker_id": "bo", "overdue": 1},
    ]
    # a caseworker's own scope: only themselves
    assert h.weekly(W47, cw="bo")["caseworkers_behind"] == [{"caseworker_id": "bo", "overdue": 1}]
    assert h.weekly(W47, cw="bo")["overdue_deadlines"]["investigation"] == 1


def test_caseworkers_behind_follows_who_holds_the_case_then(h: Harness) -> None:
    _overdue_scenario(h)
    b = Child("b")
    b.assigned("s2", "carl", "2026-11-25 09:00")  # bo -> carl in W48
    h.feed(b)
    assert {r["caseworker_id"] for r in h.weekly(W47)["caseworkers_behind"]} == {"anna", "bo"}
    assert {r["caseworker_id"] for r in h.weekly("2026-W48")["caseworkers_behind"]} == {"anna", "carl"}


def test_reaction_time_counts_real_hours_across_summer_time_ending(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-10-24 10:00")  # CEST
    c.assessed("u1", "2026-10-25 10:00")  # CET: 25 real hours later
    h.feed(c)
    w = h.weekly("2026-W43")
    assert w["reaction_time_hours_median"] == 25.0
    assert w["acute_assessment_on_time_share"] == {"value": 0.0, "numerator": 0, "denominator": 1}
