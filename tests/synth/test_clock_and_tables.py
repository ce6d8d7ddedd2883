"""The generator's time helpers agree with zoneinfo, and the municipality table is the 98."""

from __future__ import annotations

import json
import random
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synth.__main__ import main
from synth.clock import TZ, add_months, at_work, iso, local_date, on_day_at_work
from synth.municipalities import MUNICIPALITIES, NATIONAL_CHILDREN, parse_codes

INSTANTS = st.integers(
    min_value=int(datetime(2015, 1, 1, tzinfo=TZ).timestamp()),
    max_value=int(datetime(2035, 1, 1, tzinfo=TZ).timestamp()),
)


@given(INSTANTS)
def test_iso_and_local_date_match_zoneinfo(t: int) -> None:
    assert iso(t) == datetime.fromtimestamp(t, TZ).isoformat()
    assert local_date(t) == datetime.fromtimestamp(t, TZ).date()


@given(INSTANTS, st.integers(0, 2**32))
def test_at_work_is_office_hours_and_never_earlier(t: int, seed: int) -> None:
    moved = at_work(t, random.Random(seed))
    local = datetime.fromtimestamp(moved, TZ)
    assert moved >= t
    assert local.weekday() < 5 and 8 <= local.hour < 16
    assert moved - t < 4 * 86_400


def test_daylight_saving_days() -> None:
    rng = random.Random(1)
    for day in (date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25), date(2026, 10, 26)):
        moment = datetime.fromtimestamp(on_day_at_work(day, rng), TZ)
        assert moment.date() == day and 8 <= moment.hour < 16
    assert iso(int(datetime(2026, 3, 29, 1, 59, tzinfo=TZ).timestamp())).endswith("01:59:00+01:00")
    assert iso(int(datetime(2026, 3, 29, 3, 0, tzinfo=TZ).timestamp())).endswith("03:00:00+02:00")


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2026, 10, 15), 4, date(2027, 2, 15)),
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
    ],
)
def test_add_months_clamps(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


def test_the_98_municipalities() -> None:
    assert len(MUNICIPALITIES) == 98
    assert all(len(c) == 3 and c.isdigit() for c in MUNICIPALITIES)
    assert {"101", "657", "167", "510", "751"} <= set(MUNICIPALITIES)
    assert MUNICIPALITIES["101"].name == "København" and MUNICIPALITIES["657"].name == "Herning"
    assert "411" not in MUNICIPALITIES  # Christiansø is no municipality
    assert 1_100_000 < NATIONAL_CHILDREN < 1_250_000
    assert max(MUNICIPALITIES.values(), key=lambda m: m.children).code == "101"
    assert parse_codes("all") == list(MUNICIPALITIES)
    assert parse_codes("657, 101,657") == ["657", "101"]
    with pytest.raises(ValueError):
        parse_codes("999")


def test_cli_split_files_and_manifest(tmp_path: Path) -> None:
    rc = main(
        [
            "--seed",
            "3",
            "--start",
            "2025-06-01",
            "--municipalities",
            "657,167",
            "--scale",
            "0.05",
            "--out",
            str(tmp_path / "syn-{municipality}.ndjson"),
            "--manifest",
            str(tmp_path / "m.json"),
            "--quiet",
        ]
    )
    assert rc == 0
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["start"] == "2025-06-01" and manifest["end"] == "2026-06-01"
    for code in ("657", "167"):
        lines = (tmp_path / f"syn-{code}.ndjson").read_text().splitlines()
        doc = manifest["municipalities"][code]
        assert doc["lines"] == len(lines) == sum(doc["records_by_type"].values())
        workers = [w for ws in doc["teams"].values() for w in ws]
        assert workers and set(doc["caseload_at_end"]) == set(workers)
        assert {json.loads(line)["municipality"] for line in lines} == {code}


def test_cli_refuses_bad_arguments(tmp_path: Path) -> None:
    out = str(tmp_path / "x.ndjson")
    assert main(["--start", "2025-01-01", "--municipalities", "999", "--out", out, "--quiet"]) == 2
    assert main(["--start", "2025-01-01", "--scale", "0", "--out", out, "--quiet"]) == 2
    assert main(["--start", "2025-01-01", "--years", "0", "--out", out, "--quiet"]) == 2
