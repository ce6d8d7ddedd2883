"""Concurrent writers: the same child never gets two winners; races on the record id resolve to
duplicate or conflict; a lost optimistic-concurrency race is retried from the start."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from services.intake.domain.records import RecordBase, Rejection
from services.intake.service import IntakeService, Outcome
from shared.eventstore.schema import events
from shared.eventstore.store import ConcurrencyError, EventStore
from tests.intake.conftest import example


def parsed(service: IntakeService, raw: dict[str, Any]) -> RecordBase:
    record = service.parse(raw)
    assert not isinstance(record, Rejection), record
    return record


def race(service: IntakeService, records: list[RecordBase]) -> list[Outcome]:
    barrier = threading.Barrier(len(records))
    outcomes: list[Outcome | None] = [None] * len(records)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            outcomes[i] = service.submit(records[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(records))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return [o for o in outcomes if o is not None]


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def case_opened(record_id: str, case_id: str, cpr: str) -> dict[str, Any]:
    raw = example("ex-04")
    raw["record_id"] = record_id
    raw["data"] = {"case_id": case_id, "child": {"cpr": cpr}, "team_id": "syd"}
    return raw


@pytest.mark.parametrize("round_", range(5))
def test_two_case_openings_for_one_child_have_exactly_one_winner(
    service: IntakeService, engine: Engine, round_: int
) -> None:
    cpr = f"01011{round_}4001"
    a = parsed(service, case_opened(f"a-{round_}", f"S-A{round_}", cpr))
    b = parsed(service, case_opened(f"b-{round_}", f"S-B{round_}", cpr))
    outcomes = race(service, [a, b])
    assert sorted(o.status for o in outcomes) == ["accepted", "rejected"]
    loser = next(o for o in outcomes if o.status == "rejected")
    assert loser.field == "data.child" and "already has an open case" in (loser.reason or "")
    assert count(engine) == 1


def test_the_same_record_twice_at_once_is_accepted_once(service: IntakeService, engine: Engine) -> None:
    r = parsed(service, example("ex-01"))
    outcomes = race(service, [r, r, r])
    assert sorted(o.status for o in outcomes) == ["accepted", "duplicate", "duplicate"]
    assert count(engine) == 1


def test_one_case_id_for_two_children_at_once(service: IntakeService, engine: Engine) -> None:
    a = parsed(service, case_opened("a", "S-1", "0101104001"))
    b = parsed(service, case_opened("b", "S-1", "0101104002"))
    outcomes = race(service, [a, b])
    assert sorted(o.status for o in outcomes) == ["accepted", "rejected"]
    assert "already exists" in next(o.reason for o in outcomes if o.status == "rejected")  # type: ignore[operator]


class FlakyStore(EventStore):
    """Loses the optimistic-concurrency race `losses` times, as if another writer got in first."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses
        self.calls = 0

    def append(self, conn: Any, new_events: Any, *, expected_version: int, content_hash: str) -> Any:
        self.calls += 1
        if self.calls <= self.losses:
            raise ConcurrencyError(new_events[0].stream_id)
        return super().append(conn, new_events, expected_version=expected_version, content_hash=content_hash)


def test_a_lost_race_is_retried(engine: Engine, settings: Any) -> None:
    from tests.intake.conftest import clock

    store = FlakyStore(losses=2)
    service = IntakeService(engine, settings, clock=clock, store=store)
    outcome = service.submit(parsed(service, example("ex-01")))
    assert outcome.status == "accepted" and store.calls == 3
    assert count(engine) == 1


def test_a_writer_that_always_loses_gives_up_cleanly(engine: Engine, settings: Any) -> None:
    from tests.intake.conftest import clock

    service = IntakeService(engine, settings, clock=clock, store=FlakyStore(losses=1000))
    outcome = service.submit(parsed(service, example("ex-01")))
    assert outcome.status == "busy" and outcome.field == "record"
    assert count(engine) == 0


class LateDuplicateStore(EventStore):
    """Does not see the record on the first look, as if a concurrent writer committed it just after."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def find_record(self, conn: Any, municipality: str, record_id: str) -> Any:
        self.looks += 1
        if self.looks == 1:
            return None
        return super().find_record(conn, municipality, record_id)


@pytest.mark.parametrize(("same", "status"), [(True, "duplicate"), (False, "conflict")])
def test_losing_the_race_on_the_record_id(engine: Engine, settings: Any, same: bool, status: str) -> None:
    from tests.intake.conftest import clock

    first = IntakeService(engine, settings, clock=clock)
    assert first.submit(parsed(first, case_opened("open", "S-2001", "2404194012"))).status == "accepted"
    assert first.submit(parsed(first, example("ex-05"))).status == "accepted"
    raw = example("ex-05")
    if not same:
        raw["data"]["caseworker_id"] = "sr-bo"
    store = LateDuplicateStore()
    racer = IntakeService(engine, settings, clock=clock, store=store)
    # the first look misses ex-05 (as if it was committed a moment later); the rules pass (an
    # assignment may repeat); the append then hits the unique (municipality, record_id) key
    outcome = racer.submit(parsed(racer, raw))
    assert outcome.status == status
    assert store.looks == 2
    assert count(engine) == 2


def test_a_rejection_that_raced_with_the_same_record_is_a_duplicate(engine: Engine, settings: Any) -> None:
    from tests.intake.conftest import clock

    first = IntakeService(engine, settings, clock=clock)
    assert first.submit(parsed(first, example("ex-16"))).status == "accepted"
    store = LateDuplicateStore()
    racer = IntakeService(engine, settings, clock=clock, store=store)
    # the first look misses ex-16; the state then shows its underretning (as committed meanwhile),
    # which alone would reject it ("already been received"): the second look makes it a duplicate
    outcome = racer.submit(parsed(racer, example("ex-16")))
    assert outcome.status == "duplicate"
    assert store.looks == 2


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_a_transaction_aborted_by_a_deadlock_runs_again(engine: Engine) -> None:
    from sqlalchemy.exc import OperationalError

    from services.intake.service import in_transaction

    calls: list[int] = []

    def work(conn: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT ...", {}, _Deadlock())
        return "done"

    assert in_transaction(engine, work) == "done" and len(calls) == 3

    def broken(conn: Any) -> str:
        raise OperationalError("INSERT ...", {}, ValueError("disk full"))

    with pytest.raises(OperationalError):
        in_transaction(engine, broken)
