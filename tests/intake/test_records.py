"""Record validation (spec section 3): every rejection reason names the field and says why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.intake.domain.records import RECORD_MODELS, Rejection, parse_record
from services.intake.examples import example_per_type
from shared.events.catalogue import RECORD_TYPES
from shared.events.codes import DEFAULT_MEASURE_TYPES, MeasureType
from tests.intake.conftest import NOW, example, examples

CPR = "2404194012"


def parse(obj: Any, **kwargs: Any) -> Any:
    return parse_record(obj, now=NOW, **kwargs)


def rejected(obj: Any, **kwargs: Any) -> Rejection:
    result = parse(obj, **kwargs)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


def with_(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`record` with the value at a dotted path replaced; value `...` deletes the key."""
    *parents, last = path.split(".")
    node = record
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return record


def test_the_record_models_cover_the_event_catalogue() -> None:
    assert set(RECORD_MODELS) == set(RECORD_TYPES)
    assert len(RECORD_MODELS) == 16
    assert set(example_per_type()) == set(RECORD_TYPES)


@pytest.mark.parametrize("record", examples(), ids=lambda r: r["record_id"])
def test_every_example_record_is_valid(record: dict[str, Any]) -> None:
    parsed = parse(record)
    assert not isinstance(parsed, Rejection), parsed
    assert parsed.record_id == record["record_id"]
    assert type(parsed).__name__ == record["type"] + "Record"


@pytest.mark.parametrize("value", [[], "x", 3, None])
def test_a_record_must_be_an_object(value: Any) -> None:
    r = rejected(value)
    assert r.field == "record" and "JSON object" in r.reason


@pytest.mark.parametrize("missing", ["record_id", "municipality", "occurred_at", "data"])
def test_every_envelope_field_is_required(missing: str) -> None:
    r = rejected(with_(example("ex-03"), missing, ...))
    assert r.field == missing
    assert r.reason == f"{missing}: is required"


def test_type_is_required() -> None:
    r = rejected(with_(example("ex-03"), "type", ...))
    assert (r.field, r.reason, r.record_id) == ("type", "type: is required", "ex-03")


@pytest.mark.parametrize("bad", ["UnderretningRecieved", "underretningreceived", 7, ""])
def test_unknown_type(bad: Any) -> None:
    r = rejected(with_(example("ex-03"), "type", bad))
    assert r.field == "type"
    assert "unknown record type" in r.reason and "UnderretningReceived" in r.reason


def test_unknown_envelope_field() -> None:
    r = rejected(with_(example("ex-03"), "case", "S-1"))
    assert r.field == "case" and "not an envelope field" in r.reason


def test_unknown_data_field() -> None:
    r = rejected(with_(example("ex-03"), "data.comment", "hi"))
    assert r.field == "data.comment" and "not a field of a ReceiptSent record" in r.reason


@pytest.mark.parametrize("bad", ["75", "7510", "abc", "", " 751"])
def test_municipality_must_be_three_digits(bad: str) -> None:
    r = rejected(with_(example("ex-03"), "municipality", bad))
    assert r.field == "municipality" and "three-digit" in r.reason


def test_municipality_must_be_a_string() -> None:
    r = rejected(with_(example("ex-03"), "municipality", 751))
    assert r.field == "municipality" and "string" in r.reason


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2026-10-06T09:00:00", "no UTC offset"),
        ("2026-10-06 09:00:00", "no UTC offset"),
        ("2026-10-06", "not only a date"),
        ("06-10-2026 09:00", "not an ISO 8601 timestamp"),
        ("yesterday", "not an ISO 8601 timestamp"),
        (1760000000, "ISO 8601 timestamp as a JSON string"),
    ],
)
def test_occurred_at_needs_an_offset_and_iso_form(value: Any, words: str) -> None:
    r = rejected(with_(example("ex-03"), "occurred_at", value))
    assert r.field == "occurred_at" and words in r.reason


def test_at_most_24_hours_in_the_future() -> None:
    just_inside = (NOW + timedelta(hours=24)).isoformat()
    assert not isinstance(parse(with_(example("ex-03"), "occurred_at", just_inside)), Rejection)
    too_far = (NOW + timedelta(hours=24, seconds=1)).isoformat()
    r = rejected(with_(example("ex-03"), "occurred_at", too_far))
    assert r.field == "occurred_at" and "more than 24 hours in the future" in r.reason


def test_zulu_and_other_offsets_are_fine() -> None:
    assert not isinstance(parse(with_(example("ex-03"), "occurred_at", "2026-10-06T07:00:00Z")), Rejection)
    assert not isinstance(
        parse(with_(example("ex-03"), "occurred_at", "2026-10-06T02:00:00-05:00")), Rejection
    )


@pytest.mark.parametrize(
    ("record_id", "path"),
    [
        ("ex-01", "data.underretning_id"),
        ("ex-01", "data.child"),
        ("ex-01", "data.notifier"),
        ("ex-01", "data.reasons"),
        ("ex-01", "data.severity"),
        ("ex-01", "data.team_id"),
        ("ex-02", "data.acute"),
        ("ex-02", "data.decision"),
        ("ex-04", "data.case_id"),
        ("ex-04", "data.team_id"),
        ("ex-05", "data.caseworker_id"),
        ("ex-06", "data.kind"),
        ("ex-08", "data.kind"),
        ("ex-11", "data.measure_id"),
        ("ex-11", "data.measure_type"),
        ("ex-12", "data.measure_id"),
        ("ex-23", "data.measure_id"),
        ("ex-25", "data.measure_id"),
        ("ex-09", "data.offer_type"),
        ("ex-10", "data.offer_type"),
        ("ex-26", "data.case_id"),
        ("ex-20", "data.case_id"),
    ],
)
def test_required_data_fields(record_id: str, path: str) -> None:
    r = rejected(with_(example(record_id), path, ...))
    assert r.field == path and r.reason == f"{path}: is required"


@pytest.mark.parametrize(
    ("record_id", "path", "value", "words"),
    [
        ("ex-01", "data.notifier", "42", "unknown notifier code '42'"),
        ("ex-01", "data.notifier", 3, "must be a JSON string"),
        ("ex-01", "data.reasons", [], "at least one reason"),
        ("ex-01", "data.reasons", "barn_skole", "must be a JSON list"),
        ("ex-01", "data.severity", "kritisk", "unknown severity 'kritisk'"),
        ("ex-01", "data.professional", "yes", "true or false"),
        ("ex-02", "data.decision", "luk", "unknown decision 'luk'"),
        ("ex-02", "data.acute", "false", "true or false"),
        ("ex-06", "data.kind", "forundersoegelse", "unknown investigation kind"),
        ("ex-08", "data.kind", "x", "unknown investigation kind"),
        ("ex-11", "data.measure_type", "hest", "unknown measure type 'hest'"),
        ("ex-11", "data.monthly_cost_dkk", -1, "at least 0"),
        ("ex-11", "data.monthly_cost_dkk", "18500", "must be a number"),
        ("ex-12", "data.next_due", "14-12-2026", "YYYY-MM-DD"),
        ("ex-12", "data.next_due", "2026-02-30", "not a real calendar date"),
        ("ex-24", "data.stable_placement_exemption", 1, "true or false"),
        ("ex-05", "data.caseworker_id", "", "must not be empty"),
        ("ex-05", "data.case_id", 2001, "must be a JSON string"),
        ("ex-05", "data.case_id", "S" * 101, "longer than 100 characters"),
        ("ex-03", "record_id", "", "must not be empty"),
        ("ex-03", "record_id", "r" * 201, "longer than 200 characters"),
        ("ex-03", "data", "UR-1001", "must be a JSON object"),
    ],
)
def test_bad_values(record_id: str, path: str, value: Any, words: str) -> None:
    r = rejected(with_(example(record_id), path, value))
    assert r.field == path
    assert r.reason.startswith(f"{path}: ")
    assert words in r.reason


def test_unknown_reason_code_names_the_list_position() -> None:
    r = rejected(with_(example("ex-01"), "data.reasons", ["barn_skole", "mobning"]))
    assert r.field == "data.reasons[1]" and "unknown reason code 'mobning'" in r.reason


def test_municipality_specific_measure_types() -> None:
    record = with_(example("ex-11"), "data.measure_type", "mst")
    rejected(record)
    types = dict(DEFAULT_MEASURE_TYPES) | {"mst": MeasureType("mst", 3, False, "MST")}
    assert not isinstance(parse(record, measure_types=types), Rejection)


def test_next_due_before_the_follow_up_itself() -> None:
    r = rejected(with_(example("ex-12"), "data.next_due", "2026-11-15"))
    assert r.field == "data.next_due" and "before the follow-up" in r.reason


def test_child_conversation_needs_a_case_or_an_underretning() -> None:
    r = rejected(with_(example("ex-07"), "data.case_id", ...))
    assert r.field == "data" and "case_id or an underretning_id" in r.reason
    only_u = with_(with_(example("ex-07"), "data.case_id", ...), "data.underretning_id", "UR-1001")
    assert not isinstance(parse(only_u), Rejection)


# --- the child --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpr", "words"),
    [
        ("240419401", "10 digits"),
        ("24041940120", "10 digits"),
        ("24.04.19-4012", "10 digits"),
        ("3204194012", "not a real date"),
        ("2902231001", "not a real date"),
        ("0101364001", "future"),
    ],
)
def test_bad_cpr(cpr: str, words: str) -> None:
    r = rejected(with_(example("ex-01"), "data.child.cpr", cpr))
    assert r.field == "data.child.cpr"
    assert "not a valid CPR number" in r.reason and words in r.reason
    assert cpr not in r.reason


def test_cpr_with_hyphen_and_without_modulus_11() -> None:
    parsed = parse(with_(example("ex-01"), "data.child.cpr", "240419-4012"))
    assert not isinstance(parsed, Rejection)
    assert parsed.data.child.cpr == CPR


def test_child_must_be_one_of_the_two_forms() -> None:
    r = rejected(with_(example("ex-01"), "data.child", {"cpr": CPR, "name": "x"}))
    assert r.field == "data.child.name"
    r = rejected(with_(example("ex-01"), "data.child", "2404194012"))
    assert r.field == "data.child" and "JSON object" in r.reason
    assert CPR not in r.reason
    r = rejected(with_(example("ex-01"), "data.child", {}))
    assert r.field == "data.child.cpr" and "required" in r.reason


def test_unborn_child_form() -> None:
    good = example("ex-14")
    assert not isinstance(parse(good), Rejection)
    r = rejected(with_(example("ex-14"), "data.child.mother_cpr", ...))
    assert r.field == "data.child.mother_cpr" and "required" in r.reason
    r = rejected(with_(example("ex-14"), "data.child.expected_birth", ...))
    assert r.field == "data.child.expected_birth"
    r = rejected(with_(example("ex-14"), "data.child.expected_birth", "2027-02-30"))
    assert r.field == "data.child.expected_birth" and "not a real calendar date" in r.reason
    r = rejected(with_(example("ex-14"), "data.child.unborn", False))
    assert r.field == "data.child.unborn" and "must be True" in r.reason
    r = rejected(with_(example("ex-14"), "data.child.mother_cpr", "3208994321"))
    assert r.field == "data.child.mother_cpr" and "not a valid CPR number" in r.reason
    r = rejected(with_(example("ex-14"), "data.child.cpr", CPR))
    assert r.field == "data.child.cpr" and "not a field" in r.reason


def test_no_rejection_quotes_a_cpr_even_in_odd_places() -> None:
    r = rejected(with_(example("ex-01"), "data.notifier", "240419-4012"))
    assert r.field == "data.notifier"
    assert "2404194012" not in r.reason and "240419-4012" not in r.reason
    r = rejected(with_(example("ex-03"), "type", "2404194012"))
    assert "2404194012" not in r.reason


def test_several_problems_are_reported_together() -> None:
    record = with_(with_(example("ex-01"), "data.severity", "x"), "data.notifier", "0")
    r = rejected(record)
    assert "data.notifier" in r.reason and "data.severity" in r.reason
    assert r.field == "data.notifier"
