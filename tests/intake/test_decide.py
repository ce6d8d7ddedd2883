"""The rules at the door, Given (a state snapshot) / When (a record) / Then (event or rejection)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.intake.domain.decide import (
    Accept,
    CaseInfo,
    MeasureInfo,
    Reject,
    State,
    UnderretningInfo,
    decide,
)
from services.intake.domain.records import RecordBase, Rejection, parse_record
from shared.events import catalogue as ev
from shared.events.catalogue import ChildRef
from shared.events.codes import DEFAULT_MEASURE_TYPES, MeasureType
from tests.intake.conftest import NOW, example

CHILD = ChildRef(child_id="c" * 32, sex="P", birth_date=date(2019, 4, 24))
OTHER_CHILD = "d" * 32
T = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def record(record_id: str, **data: Any) -> RecordBase:
    raw = example(record_id)
    for key, value in data.items():
        if value is ...:
            raw["data"].pop(key, None)
        else:
            raw["data"][key] = value
    parsed = parse_record(raw, now=NOW)
    assert not isinstance(parsed, Rejection), parsed
    return parsed


def case(case_id: str = "S-2001", **kw: Any) -> CaseInfo:
    values: dict[str, Any] = {"child_id": CHILD.child_id, "team_id": "syd", "opened_at": T}
    values.update(kw)
    return CaseInfo(case_id=case_id, **values)


def measure(measure_id: str = "I-3001", case_id: str = "S-2001", **kw: Any) -> MeasureInfo:
    values: dict[str, Any] = {"measure_type": "familiebehandling", "started_at": T}
    values.update(kw)
    return MeasureInfo(measure_id=measure_id, case_id=case_id, **values)


def underretning(underretning_id: str = "UR-1001", **kw: Any) -> UnderretningInfo:
    values: dict[str, Any] = {"child_id": CHILD.child_id, "team_id": "syd", "received_at": T}
    values.update(kw)
    return UnderretningInfo(underretning_id=underretning_id, **values)


def accepted(decision: Any) -> Accept:
    assert isinstance(decision, Accept), decision
    return decision


def refused(decision: Any, field: str, words: str, retry_later: bool = False) -> Reject:
    assert isinstance(decision, Reject), decision
    assert decision.field == field
    assert words in decision.reason
    assert decision.reason.startswith(field + ": ")
    assert decision.retry_later is retry_later
    return decision


# --- UnderretningReceived ------------------------------------------------------------------------


def test_underretning_received_resolves_professional_and_carries_the_pseudonym() -> None:
    got = accepted(decide(record("ex-01"), State(child=CHILD)))
    payload = got.payload
    assert isinstance(payload, ev.UnderretningReceived)
    assert got.child_id == CHILD.child_id
    assert payload.child == CHILD
    assert payload.professional is True  # notifier 3 (daycare)
    assert payload.reasons == ("barn_adfaerd", "utilstraekkelig_omsorg")


def test_professional_override_wins() -> None:
    got = accepted(decide(record("ex-01", professional=False), State(child=CHILD)))
    assert isinstance(got.payload, ev.UnderretningReceived) and got.payload.professional is False
    got = accepted(decide(record("ex-01", notifier="8", professional=True), State(child=CHILD)))
    assert isinstance(got.payload, ev.UnderretningReceived) and got.payload.professional is True
    got = accepted(decide(record("ex-01", notifier="8"), State(child=CHILD)))
    assert isinstance(got.payload, ev.UnderretningReceived) and got.payload.professional is False


def test_underretning_id_is_received_once() -> None:
    refused(
        decide(record("ex-01"), State(child=CHILD, underretning=underretning())),
        "data.underretning_id",
        "already been received",
    )


def test_underretning_naming_a_case_needs_the_case() -> None:
    r = record("ex-01", case_id="S-2001")
    refused(decide(r, State(child=CHILD)), "data.case_id", "no case 'S-2001'", retry_later=True)
    got = accepted(decide(r, State(child=CHILD, case=case())))
    assert isinstance(got.payload, ev.UnderretningReceived) and got.payload.case_id == "S-2001"


def test_an_underretning_names_only_a_case_of_its_own_child() -> None:
    r = record("ex-01", case_id="S-2001")
    refused(
        decide(r, State(child=CHILD, case=case(child_id=OTHER_CHILD))),
        "data.case_id",
        "case 'S-2001' is about another child than the child of this underretning",
    )


# --- records on an underretning -----------------------------------------------------------------


@pytest.mark.parametrize("record_id", ["ex-02", "ex-03"])
def test_receipt_and_assessment_need_the_underretning(record_id: str) -> None:
    refused(decide(record(record_id), State()), "data.underretning_id", "no underretning 'UR-1001'", True)
    got = accepted(decide(record(record_id), State(underretning=underretning(child_id=OTHER_CHILD))))
    assert got.child_id == OTHER_CHILD  # the event goes to the underretning's child's stream


def test_assessment_payload() -> None:
    got = accepted(decide(record("ex-02"), State(underretning=underretning())))
    assert got.payload == ev.UnderretningAssessed(
        underretning_id="UR-1001", acute=False, decision="boernefaglig_undersoegelse"
    )


# --- CaseOpened ------------------------------------------------------------------------------------


def test_case_opened() -> None:
    got = accepted(decide(record("ex-04"), State(child=CHILD, underretning=underretning())))
    assert got.payload == ev.CaseOpened(
        case_id="S-2001", child=CHILD, team_id="syd", underretning_id="UR-1001"
    )


def test_a_case_opens_only_on_an_underretning_about_its_own_child() -> None:
    refused(
        decide(record("ex-04"), State(child=CHILD, underretning=underretning(child_id=OTHER_CHILD))),
        "data.underretning_id",
        "underretning 'UR-1001' is about another child than the child of this case",
    )


def test_case_opened_naming_an_unknown_underretning() -> None:
    refused(decide(record("ex-04"), State(child=CHILD)), "data.underretning_id", "no underretning", True)
    accepted(decide(record("ex-04", underretning_id=...), State(child=CHILD)))


def test_a_case_id_is_opened_once() -> None:
    refused(
        decide(record("ex-04", underretning_id=...), State(child=CHILD, case=case())),
        "data.case_id",
        "already exists",
    )


def test_a_child_has_at_most_one_open_case() -> None:
    given = State(child=CHILD, child_cases=(case("S-1000"),))
    refused(
        decide(record("ex-04", underretning_id=...), given),
        "data.child",
        "already has an open case 'S-1000'",
        retry_later=True,  # a CaseClosed further down a bulk file may close it
    )


def test_a_new_case_after_the_old_one_closed_is_fine() -> None:
    closed = case(
        "S-1000", opened_at=datetime(2025, 1, 1, tzinfo=UTC), closed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    accepted(decide(record("ex-04", underretning_id=...), State(child=CHILD, child_cases=(closed,))))


def test_a_backfilled_case_inside_a_closed_case_period_is_refused() -> None:
    closed = case(
        "S-1000", opened_at=datetime(2026, 1, 1, tzinfo=UTC), closed_at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    refused(
        decide(record("ex-04", underretning_id=...), State(child=CHILD, child_cases=(closed,))),
        "data.child",
        "was open at that time",
    )


def test_another_childs_open_case_does_not_matter() -> None:
    # child_cases only ever holds the record's own child's cases; an empty tuple = no cases
    accepted(decide(record("ex-04", underretning_id=...), State(child=CHILD, child_cases=())))


# --- CaseworkerAssigned ----------------------------------------------------------------------------


def test_caseworker_assigned_needs_the_case() -> None:
    refused(decide(record("ex-05"), State()), "data.case_id", "no case 'S-2001'", retry_later=True)


def test_first_assignment_is_no_change() -> None:
    got = accepted(decide(record("ex-05"), State(case=case())))
    assert got.change is False
    assert got.payload == ev.CaseworkerAssigned(case_id="S-2001", caseworker_id="sr-anna")
    assert got.child_id == CHILD.child_id


def test_same_caseworker_again_is_accepted_as_no_change() -> None:
    given = State(case=case(caseworker_id="sr-anna", assigned_at=T))
    got = accepted(decide(record("ex-05"), given))
    assert got.change is False


def test_another_caseworker_is_a_change() -> None:
    given = State(case=case(caseworker_id="sr-anna", assigned_at=T))
    got = accepted(decide(record("ex-13"), given))
    assert got.change is True


def test_a_backfilled_older_assignment_has_unknown_change() -> None:
    given = State(case=case(caseworker_id="sr-bo", assigned_at=datetime(2026, 11, 17, 7, tzinfo=UTC)))
    got = accepted(decide(record("ex-05"), given))  # 2026-10-05, before sr-bo's assignment
    assert got.change is None


# --- case-level records -----------------------------------------------------------------------------


@pytest.mark.parametrize("record_id", ["ex-06", "ex-08", "ex-09", "ex-10", "ex-20", "ex-07"])
def test_case_records_need_the_case(record_id: str) -> None:
    refused(decide(record(record_id), State()), "data.case_id", "no case", retry_later=True)
    got = accepted(decide(record(record_id), State(case=case(record(record_id).data.case_id))))
    assert got.child_id == CHILD.child_id


def test_child_conversation_with_an_underretning() -> None:
    r = record("ex-07", case_id=..., underretning_id="UR-1001")
    refused(decide(r, State()), "data.underretning_id", "no underretning", retry_later=True)
    got = accepted(decide(r, State(underretning=underretning(child_id=OTHER_CHILD))))
    assert got.child_id == OTHER_CHILD
    both = record("ex-07", underretning_id="UR-1001")
    refused(decide(both, State(case=case())), "data.underretning_id", "no underretning", True)
    accepted(decide(both, State(case=case(), underretning=underretning())))
    refused(
        decide(both, State(case=case(), underretning=underretning(child_id=OTHER_CHILD))),
        "data.underretning_id",
        "underretning 'UR-1001' is about another child than case 'S-2001'",
    )


# --- measures -------------------------------------------------------------------------------------


def test_measure_started_resolves_step_and_placement() -> None:
    got = accepted(decide(record("ex-11"), State(case=case())))
    assert isinstance(got.payload, ev.MeasureStarted)
    assert (got.payload.step, got.payload.placement) == (3, False)
    got = accepted(decide(record("ex-21"), State(case=case("S-1990"))))
    assert isinstance(got.payload, ev.MeasureStarted)
    assert (got.payload.step, got.payload.placement) == (5, True)


def test_municipality_type_resolves_from_the_state() -> None:
    types = dict(DEFAULT_MEASURE_TYPES) | {"mst": MeasureType("mst", 3, False, "MST")}
    raw = example("ex-11")
    raw["data"]["measure_type"] = "mst"
    parsed = parse_record(raw, now=NOW, measure_types=types)
    assert not isinstance(parsed, Rejection)
    got = accepted(decide(parsed, State(case=case(), measure_types=types)))
    assert isinstance(got.payload, ev.MeasureStarted) and got.payload.step == 3
    refused(decide(parsed, State(case=case())), "data.measure_type", "unknown measure type")


def test_measure_needs_the_case_and_a_fresh_id() -> None:
    refused(decide(record("ex-11"), State()), "data.case_id", "no case", retry_later=True)
    refused(
        decide(record("ex-11"), State(case=case(), measure=measure())), "data.measure_id", "already exists"
    )


def test_a_measure_cannot_start_on_a_closed_case() -> None:
    closed = case(closed_at=datetime(2026, 11, 1, tzinfo=UTC))
    refused(decide(record("ex-11"), State(case=closed)), "data.case_id", "cannot start on a closed case")


def test_a_backfilled_measure_that_started_before_the_case_closed_is_fine() -> None:
    closed_later = case(closed_at=datetime(2026, 12, 1, tzinfo=UTC))
    accepted(decide(record("ex-11"), State(case=closed_later)))


@pytest.mark.parametrize("record_id", ["ex-12", "ex-25"])
def test_measure_records_need_the_measure_on_that_case(record_id: str) -> None:
    r = record(record_id)
    case_id, measure_id = r.data.case_id, r.data.measure_id
    refused(decide(r, State()), "data.case_id", "no case", retry_later=True)
    refused(decide(r, State(case=case(case_id))), "data.measure_id", f"no measure '{measure_id}'", True)
    refused(
        decide(r, State(case=case(case_id), measure=measure(measure_id, case_id="S-9"))),
        "data.measure_id",
        "belongs to case 'S-9'",
    )
    accepted(decide(r, State(case=case(case_id), measure=measure(measure_id, case_id=case_id))))


def test_supervision_visit_needs_the_measure() -> None:
    r = record("ex-23")
    refused(decide(r, State(case=case("S-1990"))), "data.measure_id", "no measure", retry_later=True)
    accepted(decide(r, State(case=case("S-1990"), measure=measure("I-2990", "S-1990"))))


def test_follow_up_payload() -> None:
    got = accepted(decide(record("ex-12"), State(case=case(), measure=measure())))
    assert got.payload == ev.FollowUpHeld(
        case_id="S-2001", measure_id="I-3001", next_due=date(2026, 12, 14), stable_placement_exemption=False
    )


def test_a_measure_ends_once() -> None:
    ended = measure("I-2990", "S-1990", ended_at=datetime(2026, 11, 1, tzinfo=UTC))
    refused(
        decide(record("ex-25"), State(case=case("S-1990"), measure=ended)), "data.measure_id", "already ended"
    )


def test_a_measure_does_not_end_before_it_started() -> None:
    late_start = measure("I-2990", "S-1990", started_at=datetime(2026, 12, 1, tzinfo=UTC))
    refused(decide(record("ex-25"), State(case=case("S-1990"), measure=late_start)), "occurred_at", "before")


def test_waitlist_entered_with_a_measure() -> None:
    r = record("ex-09", measure_id="I-3001")
    refused(decide(r, State(case=case())), "data.measure_id", "no measure", retry_later=True)
    accepted(decide(r, State(case=case(), measure=measure())))


# --- CaseClosed -----------------------------------------------------------------------------------


def test_case_closed() -> None:
    got = accepted(decide(record("ex-26"), State(case=case("S-1990"))))
    assert got.payload == ev.CaseClosed(case_id="S-1990")


def test_a_case_closes_once() -> None:
    closed = case("S-1990", closed_at=datetime(2026, 11, 20, tzinfo=UTC))
    refused(decide(record("ex-26"), State(case=closed)), "data.case_id", "already closed")


def test_a_case_does_not_close_before_it_opened() -> None:
    later = case("S-1990", opened_at=datetime(2026, 12, 1, tzinfo=UTC))
    refused(decide(record("ex-26"), State(case=later)), "occurred_at", "before case 'S-1990' was opened")


def test_an_older_case_arriving_after_the_childs_newer_case_is_a_backfill_not_a_conflict() -> None:
    """Given the child's open case S-1000 opened in 2027, when an export brings the child's older
    case (ex-04 opened October 2026, its CaseClosed still to come) after it, then it is accepted:
    the order records arrive in must not decide what is accepted."""
    newer = case("S-1000", opened_at=datetime(2027, 1, 1, tzinfo=UTC))
    accepted(decide(record("ex-04", underretning_id=...), State(child=CHILD, child_cases=(newer,))))
