"""Given a child's events, when projected, then every deadline of spec section 4 is as the table says.

Due moments are compared as instants; `local("YYYY-MM-DD 24:00")` is written as the next midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pytest

from shared.casework.cadence import CadenceProfile, ProfileLookup, default_lookup
from shared.casework.calendar import Period, end_of_day
from shared.casework.child import project_child
from shared.casework.deadlines import Deadline
from shared.casework.model import ChildPicture
from tests.followup.followup_factory import Stream, local, only


def _next_midnight(day: str) -> datetime:
    """24:00 local at the end of `day`."""
    return end_of_day(date.fromisoformat(day))


def picture(s: Stream, lookup: ProfileLookup = default_lookup, **rules: int) -> ChildPicture:
    @dataclass
    class Rules:
        child_conversation_days: int = rules.get("child_conversation_days", 7)

    return project_child(s.events, lookup, Rules())


def deadlines(p: ChildPicture, deadline_id: str, **match: object) -> list[Deadline]:
    return [
        d
        for d in p.deadlines
        if d.deadline == deadline_id and all(getattr(d, k) == v for k, v in match.items())
    ]


def one(p: ChildPicture, deadline_id: str, **match: object) -> Deadline:
    return only(deadlines(p, deadline_id, **match))


# --------------------------------------------------------------------------- acute_assessment


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ("2026-11-02 09:15", "2026-11-03T09:15:00+01:00"),
        ("2026-03-28 10:00", "2026-03-29T11:00:00+02:00"),  # spring-forward night: 24 h elapsed
        ("2026-10-24 10:00", "2026-10-25T09:00:00+01:00"),  # fall-back night
        ("2026-12-24 18:00", "2026-12-25T18:00:00+01:00"),  # hours ignore holidays
        ("2028-02-28 12:00", "2028-02-29T12:00:00+01:00"),
        ("2026-11-06 16:00", "2026-11-07T16:00:00+01:00"),  # Friday: due on Saturday all the same
        ("2026-04-02 10:00", "2026-04-03T10:00:00+02:00"),  # Easter
        ("2026-06-04 10:00", "2026-06-05T10:00:00+02:00"),  # 5 June
        ("2026-01-31 23:30", "2026-02-01T23:30:00+01:00"),  # month end
    ],
)
def test_acute_assessment_is_due_24_hours_later(received: str, due: str) -> None:
    s = Stream()
    s.received(received)
    d = one(picture(s), "acute_assessment")
    assert d.due == datetime.fromisoformat(due)
    assert d.starts_at == local(received)


@pytest.mark.parametrize(
    ("assessed", "state"),
    [
        ("2026-03-29 10:59", "met_on_time"),  # 23h59m elapsed across the short night
        ("2026-03-29 11:00", "met_on_time"),
        ("2026-03-29 11:01", "met_late"),
    ],
)
def test_acute_assessment_met_by_assessment(assessed: str, state: str) -> None:
    s = Stream()
    s.received("2026-03-28 10:00")
    s.assessed(assessed)
    assert one(picture(s), "acute_assessment").state_at(local("2026-04-01 12:00")) == state


def test_acute_assessment_overdue_and_due_soon() -> None:
    s = Stream()
    s.received("2026-11-02 09:15")
    d = one(picture(s), "acute_assessment")
    assert d.state_at(local("2026-11-02 09:14")) is None
    assert d.state_at(local("2026-11-02 12:00")) == "due_soon"
    assert d.state_at(local("2026-11-03 09:16")) == "overdue"


# --------------------------------------------------------------------------- receipt


@pytest.mark.parametrize(
    ("received", "due_day"),
    [
        ("2026-11-06 15:00", "2026-11-16"),  # Friday
        ("2026-11-07 11:00", "2026-11-16"),  # Saturday
        ("2026-11-06 23:30", "2026-11-16"),  # late Friday evening, still Friday locally
        ("2026-04-01 10:00", "2026-04-14"),  # Easter
        ("2026-06-01 10:00", "2026-06-10"),  # 5 June
        ("2026-12-23 10:00", "2027-01-06"),  # Christmas and New Year
        ("2026-02-20 10:00", "2026-03-02"),  # end of February
        ("2026-03-27 10:00", "2026-04-09"),  # DST night and Easter
        ("2026-10-23 10:00", "2026-11-02"),  # fall-back night
        ("2023-05-01 10:00", "2023-05-10"),  # Store Bededag 2023
        ("2024-04-22 10:00", "2024-04-30"),  # none in 2024
        ("2026-07-31 10:00", "2026-08-10"),  # month end on a Friday
        ("2028-02-25 10:00", "2028-03-06"),  # leap February
    ],
)
def test_receipt_due_end_of_sixth_working_day(received: str, due_day: str) -> None:
    s = Stream()
    s.received(received, notifier="2")
    assert one(picture(s), "receipt").due == _next_midnight(due_day)


@pytest.mark.parametrize(
    ("notifier", "override", "expected"),
    [
        ("2", None, 1),
        ("6", None, 1),
        ("8", None, 0),  # anonymous
        ("13", None, 0),  # family
        ("2", False, 0),  # the record overrides the column
        ("11", True, 1),
    ],
)
def test_receipt_only_for_professional_notifiers(notifier: str, override: bool | None, expected: int) -> None:
    s = Stream()
    s.received("2026-11-02 10:00", notifier=notifier, professional=override)
    assert len(deadlines(picture(s), "receipt")) == expected


@pytest.mark.parametrize(
    ("sent", "state"),
    [
        ("2026-11-10 23:59", "met_on_time"),
        ("2026-11-11 00:00", "met_on_time"),
        ("2026-11-11 00:01", "met_late"),
    ],
)
def test_receipt_met_by_receipt_sent(sent: str, state: str) -> None:
    s = Stream()
    s.received("2026-11-02 10:00")
    s.receipt(sent)
    assert one(picture(s), "receipt").state_at(local("2026-12-01 00:00")) == state


# --------------------------------------------------------------------------- child_conversation


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        (("overgreb_foraeldre",), 1),
        (("barn_skole", "overgreb_andre"), 1),
        (("omsorgssvigt", "vold_konflikt"), 0),
    ],
)
def test_child_conversation_only_for_abuse(reasons: tuple[str, ...], expected: int) -> None:
    s = Stream()
    s.received("2026-11-02 10:00", reasons=reasons)
    assert len(deadlines(picture(s), "child_conversation")) == expected


@pytest.mark.parametrize(
    ("received", "days", "due_day"),
    [
        ("2026-11-02 10:00", 7, "2026-11-09"),
        ("2026-03-22 10:00", 7, "2026-03-29"),  # due on the spring-forward day
        ("2026-10-18 23:30", 7, "2026-10-25"),  # due on the fall-back day
        ("2026-02-22 10:00", 7, "2026-03-01"),
        ("2028-02-22 10:00", 7, "2028-02-29"),
        ("2026-12-20 10:00", 7, "2026-12-27"),  # calendar days, holidays count
        ("2026-03-30 10:00", 7, "2026-04-06"),  # due on 2. påskedag
        ("2026-05-29 10:00", 7, "2026-06-05"),  # due on 5 June
        ("2026-11-07 10:00", 7, "2026-11-14"),  # received and due on a Saturday
        ("2026-01-28 10:00", 7, "2026-02-04"),  # across a month end
        ("2026-11-02 10:00", 3, "2026-11-05"),  # configurable
    ],
)
def test_child_conversation_due(received: str, days: int, due_day: str) -> None:
    s = Stream()
    s.received(received, reasons=("overgreb_andre",))
    assert one(picture(s, child_conversation_days=days), "child_conversation").due == _next_midnight(due_day)


def test_child_conversation_days_from_the_municipal_profile() -> None:
    s = Stream()
    s.received("2026-11-02 10:00", reasons=("overgreb_andre",))
    profile = CadenceProfile(child_conversation_days=10)
    p = picture(s, lambda _m, _t: profile)
    assert one(p, "child_conversation").due == _next_midnight("2026-11-12")


def test_conversation_naming_an_underretning_meets_only_that_one() -> None:
    s = Stream()
    s.opened("2026-11-01 10:00")
    s.received("2026-11-02 10:00", "U1", reasons=("overgreb_andre",))
    s.received("2026-11-02 11:00", "U2", reasons=("overgreb_foraeldre",))
    s.conversation("2026-11-04 10:00", case_id=None, uid="U2")
    p = picture(s)
    t = local("2026-11-20 00:00")
    assert one(p, "child_conversation", underretning_id="U1").state_at(t) == "overdue"
    assert one(p, "child_conversation", underretning_id="U2").state_at(t) == "met_on_time"


def test_conversation_naming_the_case_meets_every_open_one_of_the_case() -> None:
    s = Stream()
    s.opened("2026-11-01 10:00")
    s.received("2026-11-02 10:00", "U1", reasons=("overgreb_andre",))
    s.received("2026-11-06 11:00", "U2", reasons=("overgreb_foraeldre",))
    s.conversation("2026-11-12 10:00", case_id="S1")
    s.received("2026-11-13 11:00", "U3", reasons=("overgreb_foraeldre",))  # after the conversation
    p = picture(s)
    t = local("2026-12-01 00:00")
    assert one(p, "child_conversation", underretning_id="U1").state_at(t) == "met_late"
    assert one(p, "child_conversation", underretning_id="U2").state_at(t) == "met_on_time"
    assert one(p, "child_conversation", underretning_id="U3").state_at(t) == "overdue"


def test_conversation_on_another_case_does_not_count() -> None:
    s = Stream()
    s.received("2026-11-02 10:00", "U1", reasons=("overgreb_andre",), case_id="S1")
    s.conversation("2026-11-03 10:00", case_id="S9")
    assert one(picture(s), "child_conversation").met_at is None


# --------------------------------------------------------------------------- investigation


@pytest.mark.parametrize(
    ("started", "due_day"),
    [
        ("2026-10-06 10:00", "2027-02-06"),
        ("2026-10-31 10:00", "2027-02-28"),  # clamped to the end of February
        ("2027-10-31 10:00", "2028-02-29"),  # leap year
        ("2026-11-29 23:30", "2027-03-29"),  # due on the spring-forward day
        ("2026-06-25 00:30", "2026-10-25"),  # due on the fall-back day; started just after midnight
        ("2026-08-31 10:00", "2026-12-31"),
        ("2026-09-30 10:00", "2027-01-30"),
        ("2026-08-24 10:00", "2026-12-24"),  # due on Christmas Eve (calendar months)
        ("2025-12-05 10:00", "2026-04-05"),  # due on Easter Sunday
        ("2026-07-04 10:00", "2026-11-04"),  # started on a Saturday
        ("2026-06-05 10:00", "2026-10-05"),
    ],
)
def test_investigation_due_after_four_months(started: str, due_day: str) -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.inv_started(started)
    assert one(picture(s), "investigation").due == _next_midnight(due_day)


def test_only_boernefaglig_undersoegelse_has_a_deadline() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.inv_started("2026-02-01 10:00", kind="screening")
    s.inv_started("2026-02-02 10:00", kind="afdaekning")
    assert deadlines(picture(s), "investigation") == []


def test_investigations_are_matched_with_their_completion() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.inv_started("2026-01-10 10:00")
    s.inv_completed("2026-05-11 10:00")  # late (due end of 10 May)
    s.inv_started("2026-06-01 10:00")
    s.inv_completed("2026-07-01 10:00", kind="afdaekning")  # another kind: does not complete it
    p = picture(s)
    t = local("2026-12-01 00:00")
    assert one(p, "investigation", seq=0).state_at(t) == "met_late"
    assert one(p, "investigation", seq=1).state_at(t) == "overdue"
    assert one(p, "investigation", seq=1).due == _next_midnight("2026-10-01")


# --------------------------------------------------------------------------- first_follow_up


@pytest.mark.parametrize(
    ("measure_type", "started", "due_day"),
    [
        ("familiebehandling", "2026-11-09 09:00", "2026-12-07"),  # Herning: 4 weeks
        ("raadgivning", "2026-12-24 09:00", "2027-01-21"),
        ("plejefamilie", "2026-11-09 09:00", "2026-11-23"),  # Herning placements: 2 weeks
        ("doegninstitution", "2026-03-20 09:00", "2026-04-03"),
        ("netvaerksanbringelse", "2026-02-20 09:00", "2026-03-06"),
        ("opholdssted", "2026-03-15 09:00", "2026-03-29"),  # due on the spring-forward day
        ("plejefamilie", "2026-10-11 09:00", "2026-10-25"),  # due on the fall-back day
        ("plejefamilie", "2026-05-22 09:00", "2026-06-05"),  # due on 5 June
        ("stoette_i_hjemmet", "2026-03-09 09:00", "2026-04-06"),  # due on 2. påskedag
        ("familiebehandling", "2026-02-01 09:00", "2026-03-01"),  # 4 weeks over a short February
    ],
)
def test_first_follow_up_herning(measure_type: str, started: str, due_day: str) -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure(started, measure_type=measure_type)
    assert one(picture(s), "first_follow_up").due == _next_midnight(due_day)


@pytest.mark.parametrize(
    ("first", "started", "due_day"),
    [
        (None, "2026-11-30 09:00", "2027-02-28"),  # the law alone: +3 months, clamped
        (Period(4, "months"), "2026-11-30 09:00", "2027-02-28"),  # a laxer profile: the law wins
        (Period(10, "days"), "2026-11-30 09:00", "2026-12-10"),
        (None, "2026-12-29 09:00", "2027-03-29"),  # due on the spring-forward day
    ],
)
def test_first_follow_up_earlier_of_three_months_and_profile(
    first: Period | None, started: str, due_day: str
) -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure(started, measure_type="stoette_i_hjemmet")
    profile = CadenceProfile(non_placement_first=first)
    assert one(picture(s, lambda _m, _t: profile), "first_follow_up").due == _next_midnight(due_day)


def test_first_follow_up_met_by_the_first_follow_up() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-11-09 09:00")
    s.follow_up("2026-12-08 10:00")  # one day late
    s.follow_up("2026-12-20 10:00")
    assert one(picture(s), "first_follow_up").state_at(local("2027-01-01 00:00")) == "met_late"


# --------------------------------------------------------------------------- follow_up


@pytest.mark.parametrize(
    ("measure_type", "started", "held", "next_due", "due_day"),
    [
        # non-placement: every 3 months
        ("familiebehandling", "2026-11-09 09:00", "2026-11-30 10:00", None, "2027-02-28"),
        # the caseworker's next_due is earlier
        ("familiebehandling", "2026-11-09 09:00", "2026-11-16 10:00", date(2026, 12, 14), "2026-12-14"),
        # a later next_due does not postpone the profile's date
        ("familiebehandling", "2026-11-09 09:00", "2026-11-16 10:00", date(2027, 6, 1), "2027-02-16"),
        # placement during the first year: 6 weeks
        ("plejefamilie", "2026-01-15 09:00", "2026-02-01 10:00", None, "2026-03-15"),
        # held on the day before the anniversary: still the first year
        ("plejefamilie", "2026-01-15 09:00", "2027-01-14 10:00", None, "2027-02-25"),
        # on the anniversary: foster family every 3 months
        ("plejefamilie", "2026-01-15 09:00", "2027-01-15 10:00", None, "2027-04-15"),
        ("netvaerksanbringelse", "2026-01-15 09:00", "2027-02-10 10:00", None, "2027-05-10"),
        # other placements stay at 6 weeks after the first year
        ("opholdssted", "2026-01-15 09:00", "2027-02-10 10:00", None, "2027-03-24"),
        ("eget_vaerelse", "2026-01-15 09:00", "2027-02-10 10:00", None, "2027-03-24"),
        # a leap-day start: the first year ends on 28 Feb 2029
        ("plejefamilie", "2028-02-29 09:00", "2029-02-27 10:00", None, "2029-04-10"),
        ("plejefamilie", "2028-02-29 09:00", "2029-02-28 10:00", None, "2029-05-28"),
        # the daylight-saving days, Christmas, 5 June
        ("opholdssted", "2026-01-15 09:00", "2026-02-15 10:00", None, "2026-03-29"),
        ("plejefamilie", "2026-01-15 09:00", "2026-09-13 10:00", None, "2026-10-25"),
        ("familiebehandling", "2026-01-15 09:00", "2026-09-24 10:00", None, "2026-12-24"),
        ("familiebehandling", "2026-01-15 09:00", "2026-03-05 10:00", None, "2026-06-05"),
        # a month end: +3 months clamped
        ("familiebehandling", "2026-01-15 09:00", "2026-05-31 10:00", None, "2026-08-31"),
        ("familiebehandling", "2026-01-15 09:00", "2026-03-31 10:00", None, "2026-06-30"),
    ],
)
def test_follow_up_cadence_herning(
    measure_type: str, started: str, held: str, next_due: date | None, due_day: str
) -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure(started, measure_type=measure_type)
    s.follow_up(held, next_due=next_due)
    assert one(picture(s), "follow_up").due == _next_midnight(due_day)


def test_follow_up_six_month_ceiling_without_profile() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-02-10 09:00", measure_type="familiebehandling")
    s.follow_up("2026-08-31 10:00")
    profile = CadenceProfile(non_placement_then=None)
    assert one(picture(s, lambda _m, _t: profile), "follow_up").due == _next_midnight("2027-02-28")


def test_follow_up_chain_each_met_by_the_next() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-11-09 09:00")
    s.follow_up("2026-12-01 10:00")
    s.follow_up("2027-03-05 10:00")  # due end of 1 March: late
    s.follow_up("2027-04-01 10:00")
    p = picture(s)
    t = local("2027-04-02 00:00")
    assert one(p, "follow_up", seq=0).state_at(t) == "met_late"
    assert one(p, "follow_up", seq=1).state_at(t) == "met_on_time"
    assert one(p, "follow_up", seq=2).state_at(t) == "upcoming"
    assert one(p, "follow_up", seq=2).due == _next_midnight("2027-07-01")


def test_stable_placement_exemption_drops_to_the_legal_cadence_from_then_on() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-01-15 09:00", measure_type="plejefamilie")
    s.follow_up("2026-02-01 10:00")  # 6 weeks
    s.follow_up("2026-03-10 10:00", exempt=True)  # 6 months
    s.follow_up("2026-09-01 10:00")  # still exempt: 6 months
    s.follow_up("2026-10-01 10:00", next_due=date(2026, 12, 1))  # exempt: next_due earlier
    p = picture(s)
    assert one(p, "follow_up", seq=0).due == _next_midnight("2026-03-15")
    assert one(p, "follow_up", seq=1).due == _next_midnight("2026-09-10")
    assert one(p, "follow_up", seq=2).due == _next_midnight("2027-03-01")
    assert one(p, "follow_up", seq=3).due == _next_midnight("2026-12-01")
    assert p.cases["S1"].measures[0].exempt_since == local("2026-03-10 10:00")


def test_stable_placement_exemption_ignored_outside_foster_families() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-01-15 09:00", measure_type="opholdssted")
    s.follow_up("2026-03-10 10:00", exempt=True)
    p = picture(s)
    assert one(p, "follow_up").due == _next_midnight("2026-04-21")  # 6 weeks
    assert p.cases["S1"].measures[0].exempt_since is None


def test_profile_change_applies_from_its_moment() -> None:
    tighter = CadenceProfile(non_placement_then=Period(1, "months"))
    changed_at = local("2026-12-15 12:00")

    def lookup(_m: str, t: datetime) -> CadenceProfile:
        return tighter if t >= changed_at else CadenceProfile()

    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-11-09 09:00")
    s.follow_up("2026-12-01 10:00")  # before the change: 3 months
    s.follow_up("2026-12-20 10:00")  # after: 1 month
    p = picture(s, lookup)
    assert one(p, "follow_up", seq=0).due == _next_midnight("2027-03-01")
    assert one(p, "follow_up", seq=1).due == _next_midnight("2027-01-20")


# --------------------------------------------------------------------------- supervision_visit


def test_supervision_visits_every_six_months_from_start_then_each_visit() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-08-31 09:00", measure_type="plejefamilie")
    s.visit("2026-11-10 10:00")
    s.visit("2027-05-12 10:00")  # due end of 10 May 2027: late
    p = picture(s)
    t = local("2027-06-01 00:00")
    assert one(p, "supervision_visit", seq=0).due == _next_midnight("2027-02-28")
    assert one(p, "supervision_visit", seq=0).state_at(t) == "met_on_time"
    assert one(p, "supervision_visit", seq=1).due == _next_midnight("2027-05-10")
    assert one(p, "supervision_visit", seq=1).state_at(t) == "met_late"
    assert one(p, "supervision_visit", seq=2).due == _next_midnight("2027-11-12")
    assert one(p, "supervision_visit", seq=2).state_at(t) == "upcoming"


@pytest.mark.parametrize(
    ("started", "due_day"),
    [
        ("2026-09-29 10:00", "2027-03-29"),  # due on the spring-forward day
        ("2026-04-25 10:00", "2026-10-25"),  # due on the fall-back day
        ("2026-06-24 10:00", "2026-12-24"),  # Christmas Eve
        ("2025-12-05 10:00", "2026-06-05"),  # 5 June
        ("2027-08-29 10:00", "2028-02-29"),  # leap day
        ("2026-08-30 10:00", "2027-02-28"),  # clamped
        ("2026-04-05 10:00", "2026-10-05"),  # started on Easter Sunday
        ("2026-05-31 23:30", "2026-11-30"),  # late on a month end
    ],
)
def test_first_supervision_visit_six_months_after_start(started: str, due_day: str) -> None:
    s = Stream()
    s.opened("2025-01-05 10:00")
    s.measure(started, measure_type="doegninstitution")
    assert one(picture(s), "supervision_visit").due == _next_midnight(due_day)


def test_no_supervision_visit_or_child_plan_without_placement() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-08-31 09:00", measure_type="familiebehandling")
    p = picture(s)
    assert deadlines(p, "supervision_visit") == []
    assert deadlines(p, "child_plan") == []


# --------------------------------------------------------------------------- child_plan


@pytest.mark.parametrize(
    ("plan", "state"),
    [
        ("2026-09-14 12:00", "met_on_time"),  # before the start
        ("2026-03-01 12:00", "met_on_time"),  # long before
        ("2026-09-14 20:00", "met_on_time"),  # later on the start date
        ("2026-09-15 00:01", "met_late"),
        (None, "overdue"),
    ],
)
def test_child_plan_for_placements(plan: str | None, state: str) -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    if plan:
        s.plan(plan)
    s.measure("2026-09-14 13:00", measure_type="plejefamilie")
    d = one(picture(s), "child_plan")
    assert d.due == _next_midnight("2026-09-14")
    assert d.state_at(local("2026-10-01 00:00")) == state


@pytest.mark.parametrize(
    ("started", "due_utc"),
    [
        ("2026-03-29 10:00", "2026-03-29T22:00:00+00:00"),  # spring-forward day ends in summer time
        ("2026-10-25 10:00", "2026-10-25T23:00:00+00:00"),  # fall-back day ends in winter time
        ("2026-12-24 10:00", "2026-12-24T23:00:00+00:00"),
        ("2028-02-29 10:00", "2028-02-29T23:00:00+00:00"),
        ("2026-06-05 10:00", "2026-06-05T22:00:00+00:00"),
    ],
)
def test_child_plan_due_at_the_end_of_the_start_date(started: str, due_utc: str) -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure(started, measure_type="netvaerksanbringelse")
    assert one(picture(s), "child_plan").due == datetime.fromisoformat(due_utc)


def test_child_plan_due_on_the_start_date() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-09-14 13:00", measure_type="opholdssted")
    d = one(picture(s), "child_plan")
    assert d.state_at(local("2026-09-14 12:59")) is None
    assert d.state_at(local("2026-09-14 13:00")) == "due_soon"
    assert d.state_at(local("2026-09-15 00:01")) == "overdue"


# --------------------------------------------------------------------------- ends


def test_measure_end_ends_its_deadlines() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-08-31 09:00", measure_type="plejefamilie")
    s.measure_ended("2026-10-20 10:00")
    p = picture(s)
    before, after = local("2026-10-19 00:00"), local("2026-10-21 00:00")
    assert one(p, "first_follow_up").state_at(before) == "overdue"
    assert one(p, "first_follow_up").state_at(after) is None
    assert one(p, "supervision_visit").state_at(after) is None
    assert one(p, "supervision_visit").ended_at == local("2026-10-20 10:00")
    assert one(p, "child_plan").state_at(after) is None


def test_follow_up_after_the_end_does_not_count() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.measure("2026-08-31 09:00")
    s.measure_ended("2026-09-10 10:00")
    s.follow_up("2026-09-20 10:00")
    p = picture(s)
    assert one(p, "first_follow_up").met_at is None
    assert deadlines(p, "follow_up") == []


def test_case_closing_ends_its_deadlines_and_its_underretningers() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00", uid="U1")
    s.received("2026-01-05 09:00", "U1")
    s.inv_started("2026-01-10 10:00")
    s.measure("2026-02-01 10:00")
    s.closed("2026-03-01 10:00")
    p = picture(s)
    after = local("2026-12-01 00:00")
    for d in p.deadlines:
        assert d.ended_at == local("2026-03-01 10:00"), d
    assert {d.deadline for d in p.deadlines if d.state_at(after) is not None} == set()


def test_underretning_on_an_already_closed_case_is_still_due() -> None:
    s = Stream()
    s.opened("2026-01-05 10:00")
    s.closed("2026-03-01 10:00")
    s.received("2026-04-01 10:00", "U2", case_id="S1")
    d = one(picture(s), "acute_assessment")
    assert d.case_id == "S1"
    assert d.ended_at is None
    assert d.state_at(local("2026-04-03 00:00")) == "overdue"
