"""CPR form, date and century rule, sex, and the keyed pseudonym (spec section 2)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.dk import cpr as stdnum_cpr

from services.intake.domain.cpr import (
    ChildIdentity,
    CprError,
    birth_date,
    child_id_for_cpr,
    child_id_for_unborn,
    normalize_cpr,
    sex_of,
    validate_cpr,
)

KEY = b"k" * 32
TODAY = date(2026, 11, 23)


def test_a_hyphen_after_six_digits_is_accepted_and_dropped() -> None:
    assert validate_cpr("240419-4012", TODAY) == "2404194012"
    assert validate_cpr("2404194012", TODAY) == "2404194012"


@pytest.mark.parametrize(
    "bad",
    [
        "240419401",
        "24041940123",
        "2404-194012",
        "240419 4012",
        "24041-94012",
        "abcdefghij",
        "",
        " 2404194012",
    ],
)
def test_wrong_form_is_refused(bad: str) -> None:
    with pytest.raises(CprError, match="10 digits"):
        normalize_cpr(bad)


def test_modulus_11_is_not_required() -> None:
    assert stdnum_cpr.checksum("2404194012") != 0  # fails the old check ...
    assert validate_cpr("2404194012", TODAY) == "2404194012"  # ... and is valid all the same


@pytest.mark.parametrize(
    ("cpr", "born"),
    [
        ("2404194012", date(2019, 4, 24)),  # digit 7 = 4, year < 37 -> 2000s
        ("0101374001", date(1937, 1, 1)),  # digit 7 = 4, year >= 37 -> 1900s
        ("0101369001", date(2036, 1, 1)),  # digit 7 = 9, year < 37 -> 2000s
        ("0101379001", date(1937, 1, 1)),  # digit 7 = 9, year >= 37 -> 1900s
        ("0101991001", date(1999, 1, 1)),  # digits 0-3 -> 1900s
        ("0101105001", date(2010, 1, 1)),  # digits 5-8, year < 58 -> 2000s
        ("0101585001", date(1858, 1, 1)),  # digits 5-8, year >= 58 -> 1800s
    ],
)
def test_century_follows_digit_seven_and_the_year(cpr: str, born: date) -> None:
    assert birth_date(cpr) == born


def test_29_february_only_in_leap_years_of_the_right_century() -> None:
    assert validate_cpr("2902004001", TODAY) == "2902004001"  # 2000 is a leap year
    with pytest.raises(CprError, match="not a real date"):
        validate_cpr("2902001001", TODAY)  # 1900 is not
    assert birth_date("2902965001") == date(1896, 2, 29)  # 1896 is
    with pytest.raises(CprError, match="not a real date"):
        validate_cpr("2902234001", TODAY)  # 2023 is not


@pytest.mark.parametrize("cpr", ["3204194012", "0013194012", "2413194012", "3104194012", "0000004012"])
def test_impossible_dates_are_refused(cpr: str) -> None:
    with pytest.raises(CprError, match="not a real date"):
        validate_cpr(cpr, TODAY)


def test_a_birth_date_in_the_future_is_refused() -> None:
    with pytest.raises(CprError, match="future"):
        validate_cpr("0101364001", TODAY)  # 2036
    assert validate_cpr("2311264001", TODAY) == "2311264001"  # born today


def test_errors_never_quote_the_number() -> None:
    for bad in ("3204194012", "0101364001", "24041940123"):
        with pytest.raises(CprError) as info:
            validate_cpr(bad, TODAY)
        assert bad not in str(info.value) and bad[:6] not in str(info.value)


def test_sex_from_the_last_digit() -> None:
    assert sex_of("2404194011") == "D"
    assert sex_of("2404194012") == "P"
    assert sex_of("2404194019") == "D"
    assert sex_of("2404194010") == "P"


def test_pseudonym_is_keyed_stable_and_reveals_nothing() -> None:
    a = child_id_for_cpr(KEY, "2404194012")
    assert a == child_id_for_cpr(KEY, "2404194012")
    assert len(a) == 32 and int(a, 16) >= 0
    assert a != child_id_for_cpr(b"other-key" * 4, "2404194012")
    assert a != child_id_for_cpr(KEY, "2404194013")
    assert "2404194012" not in a


def test_unborn_pseudonym_depends_on_mother_and_expected_birth() -> None:
    a = child_id_for_unborn(KEY, "1208994321", date(2027, 2, 1))
    assert a != child_id_for_unborn(KEY, "1208994321", date(2027, 2, 2))
    assert a != child_id_for_unborn(KEY, "1208994322", date(2027, 2, 1))
    assert a != child_id_for_cpr(KEY, "1208994321")


def test_child_ref_of_a_born_and_an_unborn_child() -> None:
    born = ChildIdentity(cpr="2404194012").to_ref(KEY)
    assert (born.sex, born.birth_date, born.unborn, born.expected_birth) == (
        "P",
        date(2019, 4, 24),
        False,
        None,
    )
    unborn = ChildIdentity(mother_cpr="1208994321", expected_birth=date(2027, 2, 1)).to_ref(KEY)
    assert (unborn.sex, unborn.birth_date, unborn.unborn, unborn.expected_birth) == (
        "U",
        None,
        True,
        date(2027, 2, 1),
    )
    assert "1208994321" not in unborn.model_dump_json()
    assert "2404194012" not in repr(ChildIdentity(cpr="2404194012"))


@given(st.dates(min_value=date(1858, 1, 1), max_value=date(2057, 12, 31)), st.integers(0, 999))
def test_every_real_date_round_trips_through_its_century_digit(born: date, serial: int) -> None:
    yy = born.year % 100
    if born.year < 1900:
        digit = 5  # 5-8 with year >= 58: 1858-1899
    elif born.year < 2000:
        digit = 0  # 0-3: 1900-1999
    elif yy < 37:
        digit = 4  # 4 or 9 with year < 37: 2000-2036
    else:
        digit = 5  # 5-8 with year < 58: 2000-2057
    cpr = f"{born:%d%m}{yy:02d}{digit}{serial:03d}"
    assert birth_date(cpr) == born
