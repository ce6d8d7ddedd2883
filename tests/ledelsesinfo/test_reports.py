"""Report shapes (JSON, CSV, XLSX) and the small-count suppression of §6.4."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from services.ledelsesinfo.domain.figures import MONTHLY_IDS, WEEKLY_IDS
from services.ledelsesinfo.export import CSV_HEADER, to_csv, to_xlsx
from services.ledelsesinfo.reports import report_json, suppress
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child
from tests.ledelsesinfo.test_projection import rich_events

SPEC_WEEKLY = {
    "underretninger_received",
    "underretninger_unassessed",
    "acute_assessment_on_time_share",
    "reaction_time_hours_median",
    "receipt_on_time_share",
    "open_cases",
    "caseload_mean",
    "caseload_min",
    "caseload_max",
    "caseworkers_over_target",
    "investigations_completed",
    "investigation_days_mean",
    "investigation_on_time_share",
    "cases_by_phase",
    "overdue_deadlines",
    "caseworkers_behind",
}
SPEC_MONTHLY = {
    "helaarspersoner_by_measure_type",
    "waitlist_count_by_offer",
    "waitlist_days_mean_by_offer",
    "underretninger_by_notifier_12m",
    "underretninger_by_severity_12m",
    "placed_children_by_type",
    "early_intervention_children",
    "repeat_notification_children_12m",
    "staircase_moves_down",
    "staircase_moves_up",
    "caseworker_changes_per_100_cases",
    "cost_dkk_by_measure_type",
    "unit_cost_dkk_per_helaarsperson",
    "investigation_on_time_share",
    "acute_assessment_on_time_share",
}


def test_figure_ids_are_exactly_the_spec_ids() -> None:
    assert set(WEEKLY_IDS) == SPEC_WEEKLY
    assert set(MONTHLY_IDS) == SPEC_MONTHLY


def test_weekly_json_shape(h: Harness) -> None:
    h.feed(rich_events())
    doc = report_json(h.weekly_report("2026-W47", team="syd"))
    assert {"municipality", "period", "scope", "generated_at", "figures"} <= set(doc)
    assert doc["municipality"] == "657" and doc["period"] == "2026-W47"
    assert doc["scope"] == {"level": "team", "team_id": "syd", "caseworker_id": None}
    datetime.fromisoformat(doc["generated_at"])
    figures = doc["figures"]
    assert set(figures) == SPEC_WEEKLY
    assert set(figures["receipt_on_time_share"]) == {"value", "numerator", "denominator"}
    assert isinstance(figures["underretninger_received"], int)
    assert isinstance(figures["cases_by_phase"], dict) and set(figures["cases_by_phase"]) == {
        "modtaget",
        "undersoegelse",
        "indsats",
        "afventer",
    }
    assert isinstance(figures["caseworkers_behind"], list)


def test_monthly_json_shape(h: Harness) -> None:
    h.feed(rich_events())
    doc = report_json(h.monthly_report("2026-11"))
    assert doc["scope"]["level"] == "municipality"
    assert set(doc["figures"]) == SPEC_MONTHLY
    assert doc["figures"]["helaarspersoner_by_measure_type"]["plejefamilie"] > 0


def test_csv_has_danish_labels_beside_ids(h: Harness) -> None:
    h.feed(rich_events())
    text = to_csv(h.weekly_report("2026-W47"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == CSV_HEADER
    by_key = {(r[0], r[2]): r for r in rows[1:]}
    received = by_key[("underretninger_received", "")]
    assert received[1] == "Modtagne underretninger" and received[4] == "2"  # ua2 (Fri) + uc1 (Sun 23:30)
    phase = by_key[("cases_by_phase", "indsats")]
    assert phase[3] == "Indsats"
    share = by_key[("acute_assessment_on_time_share", "")]
    assert share[5] != "" and share[6] != ""  # numerator and denominator columns
    monthly = list(csv.reader(io.StringIO(to_csv(h.monthly_report("2026-11")))))
    notifier = {(r[0], r[2]): r for r in monthly[1:]}[("underretninger_by_notifier_12m", "3")]
    assert notifier[3] == "Dagpleje, daginstitution, SFO, klub" and notifier[4] == "1"


def test_xlsx_has_a_summary_and_one_sheet_per_breakdown(h: Harness) -> None:
    h.feed(rich_events())
    wb = load_workbook(io.BytesIO(to_xlsx(h.monthly_report("2026-11"))))
    breakdowns = [
        fid
        for fid in MONTHLY_IDS
        if fid.endswith(("_type", "_offer", "_12m", "_helaarsperson"))
        and fid not in ("repeat_notification_children_12m",)
    ]
    assert wb.sheetnames[0] == "Oversigt"
    assert len(wb.sheetnames) == 1 + len(breakdowns)
    assert all(len(name) <= 31 for name in wb.sheetnames)
    summary = wb["Oversigt"]
    ids = [row[0] for row in summary.iter_rows(values_only=True)]
    assert "early_intervention_children" in ids and "acute_assessment_on_time_share" in ids
    sheet = wb["Helårspersoner"]
    values = {row[0]: row[2] for row in sheet.iter_rows(min_row=5, values_only=True)}
    assert values["plejefamilie"] > 0
    weekly = load_workbook(io.BytesIO(to_xlsx(h.weekly_report("2026-W47"))))
    assert {"Oversigt", "Sager pr. fase", "Overskredne frister", "Sagsbehandlere bagud"} == set(
        weekly.sheetnames
    )


def _received(h: Harness, n: int, week_day: str = "2026-11-17") -> None:
    kids = [Child(f"k{i}") for i in range(n)]
    for i, k in enumerate(kids):
        k.received(f"u{i}", f"{week_day} 09:00", notifier="2")
        k.assessed(f"u{i}", f"{week_day} 10:00")  # all on time
    h.feed(*kids)


def test_suppression_at_4(h: Harness) -> None:
    _received(h, 4)
    doc = report_json(suppress(h.weekly_report("2026-W47")))
    f = doc["figures"]
    assert f["underretninger_received"] == {"value": None, "suppressed": True}
    assert f["acute_assessment_on_time_share"] == {
        "value": None,
        "numerator": None,
        "denominator": None,
        "suppressed": True,
    }
    assert f["underretninger_unassessed"] == 0  # 0 is not suppressed
    assert "caseworkers_behind" not in f
    assert doc["suppressed_small_counts"] is True
    monthly = report_json(suppress(h.monthly_report("2026-11")))["figures"]
    assert monthly["underretninger_by_notifier_12m"]["2"] == {"value": None, "suppressed": True}
    assert monthly["underretninger_by_notifier_12m"]["3"] == 0
    # the CSV marks it too and shows no number
    rows = {(r[0], r[2]): r for r in csv.reader(io.StringIO(to_csv(suppress(h.weekly_report("2026-W47")))))}
    assert rows[("underretninger_received", "")][4] == "" and rows[("underretninger_received", "")][7] == "ja"


def test_no_suppression_at_5(h: Harness) -> None:
    _received(h, 5)
    f = report_json(suppress(h.weekly_report("2026-W47")))["figures"]
    assert f["underretninger_received"] == 5
    assert f["acute_assessment_on_time_share"] == {"value": 1.0, "numerator": 5, "denominator": 5}


@pytest.mark.parametrize("cases", [4, 5])
def test_caseload_lowest_and_highest_are_counts_suppressed_at_1_to_4(h: Harness, cases: int) -> None:
    """One caseworker holding `cases` open cases at the end of W47: the lowest and highest caseload
    are that count (of cases), hidden from the committee at 4 and shown at 5; the mean is not a
    count and keeps its value."""
    kids = [Child(f"k{i}") for i in range(cases)]
    for i, k in enumerate(kids):
        k.opened(f"S-{i}", "2026-11-16 09:00")
        k.assigned(f"S-{i}", "sr-anna", "2026-11-16 10:00")
    h.feed(*kids)
    exact = report_json(h.weekly_report("2026-W47"))["figures"]
    assert (exact["caseload_min"], exact["caseload_max"]) == (cases, cases)
    f = report_json(suppress(h.weekly_report("2026-W47")))["figures"]
    hidden = {"value": None, "suppressed": True}
    expected = hidden if cases <= 4 else cases
    assert (f["caseload_min"], f["caseload_max"], f["open_cases"]) == (expected, expected, expected)
    assert f["caseload_mean"] == float(cases)


def test_share_suppressed_when_numerator_small(h: Harness) -> None:
    kids = [Child(f"k{i}") for i in range(6)]
    for i, k in enumerate(kids):
        k.received(f"u{i}", "2026-11-17 09:00")
        k.assessed(f"u{i}", "2026-11-17 10:00" if i < 2 else "2026-11-19 10:00")  # 2 of 6 on time
    h.feed(*kids)
    f = report_json(suppress(h.weekly_report("2026-W47")))["figures"]
    assert f["underretninger_received"] == 6
    assert f["acute_assessment_on_time_share"]["suppressed"] is True
    exact = report_json(h.weekly_report("2026-W47"))["figures"]["acute_assessment_on_time_share"]
    assert exact == {"value": 2 / 6, "numerator": 2, "denominator": 6}


def test_generated_at_is_the_report_time(h: Harness) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert report_json(h.weekly_report("2026-W47", now=now))["generated_at"] == now.isoformat()
