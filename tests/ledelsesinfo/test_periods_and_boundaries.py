"""Period arithmetic in Europe/Copenhagen and the boundary cases of the issue."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.ledelsesinfo.domain import fenwick
from services.ledelsesinfo.domain.periods import (
    BadPeriod,
    days_in_month,
    month_end,
    month_from_index,
    month_index,
    month_of,
    month_start,
    months_ending,
    parse_week,
    previous_month,
    previous_week,
    week_end,
    week_from_index,
    week_index,
    week_of,
    week_start,
)
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import CPH, Child, t


def test_sunday_2330_local_belongs_to_that_iso_week() -> None:
    # Sunday 22 Nov 2026 23:30 in Copenhagen is 22:30 UTC: W47
    assert week_of(t("2026-11-22 23:30")) == "2026-W47"
    # Monday 00:30 local is still Sunday 23:30 in UTC, but it is the next week here
    monday = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    assert week_of(monday) == "2026-W48"
    # in summer time too: Sunday 23:30 CEST = 21:30 UTC
    assert week_of(t("2026-06-28 23:30")) == "2026-W26"


def test_report_counts_sunday_2330_in_its_week(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-11-22 23:30")
    h.feed(c)
    assert h.weekly("2026-W47")["underretninger_received"] == 1
    assert h.weekly("2026-W48")["underretninger_received"] == 0


def test_week_53_and_week_1_across_new_year() -> None:
    # 1 January 2026 is a Thursday, so 2026 has 53 ISO weeks: 2026-W53 = Mon 28 Dec .. Sun 3 Jan 2027
    assert week_of(t("2026-12-31 12:00")) == "2026-W53"
    assert week_of(t("2027-01-03 23:59")) == "2026-W53"
    assert week_of(t("2027-01-04 00:00")) == "2027-W01"
    assert week_of(t("2024-12-30 08:00")) == "2025-W01"  # week 1 of 2025 starts in 2024
    assert parse_week("2026-W53") == date(2026, 12, 28)
    assert previous_week("2027-W01") == "2026-W53"
    assert previous_week("2026-W01") == "2025-W52"
    with pytest.raises(BadPeriod):
        parse_week("2025-W53")  # 2025 has 52 weeks
    with pytest.raises(BadPeriod):
        parse_week("2026-47")


def test_week_53_report(h: Harness) -> None:
    c = Child()
    c.received("u1", "2026-12-31 10:00")
    c.received("u2", "2027-01-03 23:30")
    c.received("u3", "2027-01-04 00:30")
    h.feed(c)
    assert h.weekly("2026-W53")["underretninger_received"] == 2
    assert h.weekly("2027-W01")["underretninger_received"] == 1


def test_week_and_month_bounds_are_local_midnight() -> None:
    assert week_start("2026-W47") == datetime(2026, 11, 16, tzinfo=CPH)
    assert week_end("2026-W47") == datetime(2026, 11, 23, tzinfo=CPH)
    assert month_start("2026-03") == datetime(2026, 3, 1, tzinfo=CPH)
    # March 2026 ends on local midnight after the switch to summer time
    assert month_end("2026-03").utcoffset().total_seconds() == 7200  # type: ignore[union-attr]
    assert month_of(datetime(2026, 10, 31, 23, 30, tzinfo=UTC)) == "2026-11"  # 00:30 local on 1 Nov


@pytest.mark.parametrize(
    ("month", "days"), [("2026-02", 28), ("2028-02", 29), ("2026-04", 30), ("2026-01", 31)]
)
def test_days_in_month(month: str, days: int) -> None:
    assert days_in_month(month) == days


@pytest.mark.parametrize(
    ("month", "start", "expected"),
    [
        ("2026-02", "2026-02-15 09:00", 14 / 28),  # 15..28 Feb
        ("2028-02", "2028-02-15 09:00", 15 / 29),  # 15..29 Feb in a leap year
        ("2026-04", "2026-04-16 09:00", 15 / 30),  # 16..30 Apr
        ("2027-01", "2027-01-17 09:00", 15 / 31),  # 17..31 Jan
    ],
)
def test_helaarspersoner_in_months_of_28_to_31_days(
    h: Harness, month: str, start: str, expected: float
) -> None:
    c = Child()
    c.opened("s", "2025-01-01 09:00")
    c.measure("s", "m", "raadgivning", start)
    h.feed(c)
    assert h.monthly(month)["helaarspersoner_by_measure_type"]["raadgivning"] == pytest.approx(expected)


def test_measure_starting_and_ending_the_same_day(h: Harness) -> None:
    c = Child()
    c.opened("s", "2026-11-01 09:00")
    c.measure("s", "m", "plejefamilie", "2026-11-09 09:00", cost=30000)
    c.measure_ended("s", "m", "2026-11-09 17:00")
    h.feed(c)
    got = h.monthly("2026-11")
    # runs one calendar day: 1/30 helårsperson, cost 30000 x 1/30 = 1000; not placed at month end
    assert got["helaarspersoner_by_measure_type"]["plejefamilie"] == pytest.approx(1 / 30)
    assert got["cost_dkk_by_measure_type"]["plejefamilie"] == pytest.approx(1000)
    assert got["placed_children_by_type"]["plejefamilie"] == 0
    assert h.monthly("2026-12")["helaarspersoner_by_measure_type"]["plejefamilie"] == 0
    # in the week it ran, the case was in phase indsats only during the day: afventer at the week's end
    assert h.weekly("2026-W46")["cases_by_phase"]["afventer"] == 1


def test_zero_denominators_give_null(h: Harness) -> None:
    c = Child()
    c.opened("s", "2026-11-02 09:00")  # an open case without caseworker, nothing else
    h.feed(c)
    w = h.weekly("2026-W47")
    for share in ("acute_assessment_on_time_share", "receipt_on_time_share", "investigation_on_time_share"):
        assert w[share] == {"value": None, "numerator": 0, "denominator": 0}
    assert w["reaction_time_hours_median"] is None
    assert w["investigation_days_mean"] is None
    assert w["caseload_mean"] is None
    m = h.monthly("2026-10")  # no case open at the end of October
    assert m["caseworker_changes_per_100_cases"] is None
    assert m["unit_cost_dkk_per_helaarsperson"]["plejefamilie"] is None
    assert m["waitlist_days_mean_by_offer"] == {}


def test_period_numbering_round_trips() -> None:
    for week in ("1970-W01", "2026-W53", "2027-W01", "2099-W52"):
        assert week_from_index(week_index(week)) == week
    for month in ("1970-01", "2026-12", "2027-01"):
        assert month_from_index(month_index(month)) == month
    assert previous_month("2027-01") == "2026-12"
    assert months_ending("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]


def test_fenwick_prefix_reads_a_bounded_number_of_nodes() -> None:
    # every week until 2284 needs at most 14 nodes, every month at most 12: a report does not grow
    # with the years of history
    assert max(len(fenwick.prefix_nodes("W", i)) for i in range(0, 16384, 7)) <= 14
    assert max(len(fenwick.prefix_nodes("M", i)) for i in range(4096)) <= 12
    # a change at i is seen by exactly the prefixes >= i
    for i in (0, 5, 2966, 3000):
        touched = set(fenwick.update_nodes("W", i))
        for j in (i - 1, i, i + 1, i + 100):
            assert (len(touched & set(fenwick.prefix_nodes("W", j))) == 1) == (j >= i)
