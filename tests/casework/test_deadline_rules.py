"""The deadline rules of domain.md §4 in the shared case-work engine, as both the follow-up worklists
and the ledelsesinfo figures use them (moved here from tests/ledelsesinfo/test_deadlines.py, which
tested ledelsesinfo's former duplicate of these rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.casework.calendar import end_of_day, is_working_day
from shared.casework.child import project_child
from shared.casework.deadlines import Deadline
from shared.casework.rules import acute_assessment_due, investigation_due, receipt_due
from tests.ledelsesinfo.factory import CPH, Child, t

LATER = datetime(2031, 1, 1, tzinfo=UTC)


def _deadlines(c: Child) -> list[Deadline]:
    return list(project_child(c.events).deadlines)


def _one(c: Child, kind: str) -> Deadline:
    found = [d for d in _deadlines(c) if d.deadline == kind]
    assert len(found) == 1, found
    return found[0]


def test_working_days() -> None:
    assert not is_working_day(date(2026, 6, 5))  # Grundlovsdag
    assert not is_working_day(date(2026, 12, 24)) and not is_working_day(date(2026, 12, 31))
    assert not is_working_day(date(2026, 5, 14))  # Kristi himmelfartsdag 2026
    assert not is_working_day(date(2023, 5, 5))  # Store Bededag 2023
    assert is_working_day(date(2024, 4, 26))  # Store Bededag was abolished from 2024
    assert not is_working_day(date(2026, 11, 21))  # a Saturday


def test_receipt_is_due_at_the_end_of_the_sixth_working_day() -> None:
    # Thu 17 Dec 2026: Fri 18 (1), Mon 21 (2), Tue 22 (3), Wed 23 (4), [24, 25, 26, 27 off],
    # Mon 28 (5), Tue 29 (6)
    assert receipt_due(t("2026-12-17 15:00")) == end_of_day(date(2026, 12, 29))
    # Mon 1 Jun 2026: Tue 2, Wed 3, Thu 4, [Fri 5 June off], Mon 8, Tue 9, Wed 10
    assert receipt_due(t("2026-06-01 09:00")) == end_of_day(date(2026, 6, 10))
    # Mon 24 Apr 2023 (Store Bededag Fri 5 May not in range) vs Mon 1 May 2023 (it is)
    assert receipt_due(t("2023-05-01 09:00")) == end_of_day(date(2023, 5, 10))
    assert receipt_due(t("2024-04-22 09:00")) == end_of_day(date(2024, 4, 30))
    # received on a Sunday 23:30: the day of receipt is that Sunday
    assert receipt_due(t("2026-11-22 23:30")) == end_of_day(date(2026, 11, 30))


def test_receipt_deadline_of_a_professional_underretning_uses_the_rule() -> None:
    c = Child()
    c.received("u1", "2026-12-17 15:00", notifier="2")  # school: professional
    c.received("u2", "2026-12-17 15:00", notifier="8")  # anonymous: no receipt deadline
    receipts = [d for d in _deadlines(c) if d.deadline == "receipt"]
    assert [(d.underretning_id, d.due) for d in receipts] == [("u1", end_of_day(date(2026, 12, 29)))]


def test_acute_assessment_is_24_real_hours_across_summer_time_ending() -> None:
    received = t("2026-10-24 10:00")  # CEST; clocks go back on 25 Oct
    due = acute_assessment_due(received)
    assert due.astimezone(UTC) - received.astimezone(UTC) == timedelta(hours=24)
    assert due.astimezone(CPH).hour == 9  # 09:00 CET on 25 Oct


def test_investigation_four_months_clamped_to_month_end() -> None:
    assert investigation_due(t("2026-10-31 09:00")) == end_of_day(date(2027, 2, 28))
    assert investigation_due(t("2027-10-31 09:00")) == end_of_day(date(2028, 2, 29))
    assert investigation_due(t("2026-07-10 09:00")) == end_of_day(date(2026, 11, 10))


def test_child_conversation_case_only_meets_open_ones() -> None:
    c = Child()
    c.opened("s", "2026-11-01 09:00")
    c.received("u1", "2026-11-02 09:00", case_id="s", reasons=("overgreb_foraeldre",))
    c.conversation("2026-11-05 09:00", case="s")  # meets u1's (open at the time)
    c.received("u2", "2026-11-06 09:00", case_id="s", reasons=("overgreb_andre",))  # after it: still open
    ds = {d.underretning_id: d for d in _deadlines(c) if d.deadline == "child_conversation"}
    assert ds["u1"].met_at == t("2026-11-05 09:00") and ds["u1"].state_at(LATER) == "met_on_time"
    assert ds["u1"].due == end_of_day(date(2026, 11, 9))
    assert ds["u2"].met_at is None


def test_first_follow_up_and_cadence() -> None:
    c = Child()
    c.opened("s", "2026-01-01 09:00")
    c.measure("s", "p", "plejefamilie", "2026-01-05 09:00")
    c.measure("s", "n", "raadgivning", "2026-01-05 09:00")
    c.follow_up("s", "p", "2026-01-15 09:00")  # first year: +6 weeks -> 26 Feb
    c.follow_up("s", "p", "2026-02-20 09:00", next_due="2026-03-10")  # next_due earlier than 3 Apr
    c.follow_up("s", "p", "2027-02-01 09:00")  # after the first year, foster family: +3 months
    c.follow_up("s", "p", "2027-03-01 09:00", exemption=True)  # legal cadence alone: +6 months
    ds = _deadlines(c)
    first = {d.measure_id: d for d in ds if d.deadline == "first_follow_up"}
    assert first["p"].due == end_of_day(date(2026, 1, 19))  # placement: 2 weeks
    assert first["n"].due == end_of_day(date(2026, 2, 2))  # non-placement: 4 weeks
    assert first["p"].met_at == t("2026-01-15 09:00")
    follow_ups = [d for d in ds if d.deadline == "follow_up" and d.measure_id == "p"]
    dues = [d.due for d in sorted(follow_ups, key=lambda d: d.seq)]
    assert dues == [
        end_of_day(date(2026, 2, 26)),
        end_of_day(date(2026, 3, 10)),
        end_of_day(date(2027, 5, 1)),
        end_of_day(date(2027, 9, 1)),
    ]


def test_supervision_visits_and_child_plan() -> None:
    c = Child()
    c.opened("s", "2026-01-01 09:00")
    c.measure("s", "p", "opholdssted", "2026-01-05 09:00")
    c.visit("s", "p", "2026-06-30 09:00")
    c.plan("s", "2026-01-20 09:00")  # made after the start: met late
    ds = _deadlines(c)
    visits = sorted((d for d in ds if d.deadline == "supervision_visit"), key=lambda d: d.seq)
    assert [(v.due, v.met_at) for v in visits] == [
        (end_of_day(date(2026, 7, 5)), t("2026-06-30 09:00")),
        (end_of_day(date(2026, 12, 30)), None),
    ]
    plan = _one(c, "child_plan")
    assert plan.due == end_of_day(date(2026, 1, 5)) and plan.met_at == t("2026-01-20 09:00")
    assert plan.state_at(LATER) == "met_late"


def test_deadlines_end_with_their_measure() -> None:
    c = Child()
    c.opened("s", "2026-01-01 09:00")
    c.measure("s", "n", "raadgivning", "2026-01-05 09:00")
    c.measure_ended("s", "n", "2026-01-20 09:00")
    d = _one(c, "first_follow_up")
    assert d.ended_at == t("2026-01-20 09:00")
    assert d.overdue_span() is None  # ended before it was due: never overdue
