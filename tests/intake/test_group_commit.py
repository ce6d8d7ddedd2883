"""Group commit of single POSTs (services/intake/group.py): concurrent records share a transaction,
and each request still gets the outcome `write` would have given it in arrival order, only after
the commit that holds it; a failed transaction fails every request of it and stores nothing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from services.intake import group
from services.intake.domain.records import RecordBase, Rejection
from services.intake.service import IntakeService, Outcome
from shared.eventstore.schema import events
from tests.intake.conftest import auth, example
from tests.ops.support import scrape, total


def parsed(service: IntakeService, raw: dict[str, Any]) -> RecordBase:
    record = service.parse(raw)
    assert not isinstance(record, Rejection), record
    return record


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def case_opened(record_id: str, case_id: str, cpr: str) -> dict[str, Any]:
    raw = example("ex-04")
    raw["record_id"] = record_id
    raw["data"] = {"case_id": case_id, "child": {"cpr": cpr}, "team_id": "syd"}
    return raw


async def _submit_all(service: IntakeService, records: list[RecordBase]) -> list[Any]:
    return await asyncio.gather(
        *(group.submit(service, r, f"cid-{i}") for i, r in enumerate(records)), return_exceptions=True
    )


def test_concurrent_records_share_one_transaction_with_the_outcomes_of_one_by_one(
    service: IntakeService, engine: Engine
) -> None:
    underretning = parsed(service, example("ex-01"))
    conflicting = example("ex-01")
    conflicting["data"]["severity"] = "akut" if conflicting["data"].get("severity") != "akut" else "ukendt"
    records = [
        parsed(service, case_opened("a", "S-A", "0101104001")),
        parsed(service, case_opened("b", "S-B", "0101104001")),  # same child: one open case only
        underretning,
        underretning,  # the same record again: duplicate
        parsed(service, conflicting),  # same id, other content: conflict
        parsed(service, case_opened("c", "S-A", "0101104002")),  # case id taken by "a" just before
    ]

    async def scenario() -> tuple[list[Any], int, int]:
        outcomes = await _submit_all(service, records)
        committer = group.committer(service)
        return outcomes, committer.transactions, committer.records

    outcomes, transactions, held = asyncio.run(scenario())
    assert all(isinstance(o, Outcome) for o in outcomes), outcomes
    assert [o.status for o in outcomes] == [
        "accepted",
        "rejected",
        "accepted",
        "duplicate",
        "conflict",
        "rejected",
    ]
    assert "already has an open case" in (outcomes[1].reason or "")
    assert "already exists" in (outcomes[5].reason or "")
    assert outcomes[3].position == outcomes[2].position is not None
    assert (transactions, held) == (1, len(records))  # all of them in one transaction
    assert count(engine) == 2


def test_a_failed_transaction_fails_every_request_of_it_and_stores_nothing(
    service: IntakeService, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [parsed(service, example("ex-01")), parsed(service, case_opened("a", "S-A", "0101104001"))]
    real_write_many = service.write_many
    calls: list[int] = []

    def outage(conn: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(batch))
        real_write_many(conn, batch, *args, **kwargs)  # written in the transaction, then it fails
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(service, "write_many", outage)
    outcomes = asyncio.run(_submit_all(service, records))
    assert calls == [2]
    assert all(isinstance(o, OperationalError) for o in outcomes), outcomes
    assert count(engine) == 0  # rolled back: nothing acknowledged, nothing kept

    monkeypatch.setattr(service, "write_many", real_write_many)  # the database is back
    again = asyncio.run(_submit_all(service, records))
    assert [o.status for o in again] == ["accepted", "accepted"]
    assert count(engine) == 2


def test_a_record_that_fails_alone_does_not_fail_the_others(
    service: IntakeService, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [parsed(service, example("ex-01")), parsed(service, case_opened("a", "S-A", "0101104001"))]
    import services.intake.service as service_module

    real_decide = service_module.decide

    def broken(record: RecordBase, *args: Any) -> Any:
        if record.record_id == "a":
            raise ValueError("a bug met by this record only")
        return real_decide(record, *args)

    monkeypatch.setattr(service_module, "decide", broken)
    outcomes = asyncio.run(_submit_all(service, records))
    assert isinstance(outcomes[0], Outcome) and outcomes[0].status == "accepted"
    assert isinstance(outcomes[1], ValueError)
    assert count(engine) == 1


def test_concurrent_posts_over_http_have_exactly_one_winner_per_child(
    client: TestClient, engine: Engine
) -> None:
    headers = auth(role="system")
    bodies = [case_opened(f"r-{i}", f"S-{i}", "0101104001") for i in range(8)]
    bodies += [example("ex-01")] * 4
    barrier = threading.Barrier(len(bodies))
    codes: list[int | None] = [None] * len(bodies)

    def post(i: int) -> None:
        barrier.wait()
        codes[i] = client.post("/records", json=bodies[i], headers=headers).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes[:8]) == [201] + [422] * 7  # one open case per child
    assert sorted(codes[8:]) == [200, 200, 200, 201]  # the same record: accepted once
    assert count(engine) == 2


def _cases(service: IntakeService, first: int, n: int) -> list[RecordBase]:
    return [
        parsed(service, case_opened(f"r-{i}", f"S-{i}", f"01011040{i:02d}")) for i in range(first, first + n)
    ]


async def _first_then_rest(committer: group.LoopGroupCommit, records: list[RecordBase]) -> list[Outcome]:
    """One record, then (50 ms later) the others: clients coming back one by one after a commit."""
    first = asyncio.ensure_future(committer.submit(records[0], "cid-first"))
    await asyncio.sleep(0.05)
    rest = await asyncio.gather(*(committer.submit(r, f"cid-{i}") for i, r in enumerate(records[1:])))
    return [await first, *rest]


@pytest.mark.parametrize(("linger", "transactions"), [(30.0, 2), (0.0, 3)])
def test_the_writer_waits_for_as_many_records_as_its_previous_transaction_held(
    service: IntakeService, engine: Engine, linger: float, transactions: int
) -> None:
    """Four clients commit together; then one comes back first. With a linger the writer waits for
    the other three (one transaction of four again), without it the first gets a transaction alone."""

    async def scenario() -> tuple[list[Outcome], list[Outcome], group.LoopGroupCommit]:
        committer = group.LoopGroupCommit(service, linger=linger)
        together = await asyncio.gather(*(committer.submit(r, "c") for r in _cases(service, 1, 4)))
        return together, await _first_then_rest(committer, _cases(service, 5, 4)), committer

    together, apart, committer = asyncio.run(scenario())
    assert [o.status for o in together + apart] == ["accepted"] * 8
    assert (committer.transactions, committer.records) == (transactions, 8)
    assert count(engine) == 8


def test_the_wait_is_bounded_and_a_lone_client_never_waits(service: IntakeService, engine: Engine) -> None:
    async def scenario() -> tuple[float, float, group.LoopGroupCommit]:
        committer = group.LoopGroupCommit(service, linger=0.3)
        await asyncio.gather(*(committer.submit(r, "c") for r in _cases(service, 1, 4)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await committer.submit(_cases(service, 5, 1)[0], "c")  # nobody else comes: waits out the linger
        bounded = loop.time() - started
        lone = _cases(service, 6, 1)[0]
        started = loop.time()
        await committer.submit(lone, "c")  # its previous transaction held one record: no wait
        return bounded, loop.time() - started, committer

    bounded, lone, committer = asyncio.run(scenario())
    assert 0.3 <= bounded < 5
    assert lone < 0.3
    assert (committer.transactions, committer.records) == (3, 6)
    assert count(engine) == 6


def test_the_linger_comes_from_the_settings(service: IntakeService) -> None:
    async def linger() -> float:
        return group.committer(service).linger

    assert asyncio.run(linger()) == service.settings.group_commit_linger_ms / 1000 > 0


def test_metrics_give_the_records_per_group_commit_transaction(client: TestClient) -> None:
    """`intake_group_commit_records`: one observation per committed transaction of single POSTs,
    its sum the records they held (whatever their outcome)."""
    headers = auth(role="system")
    bodies = [case_opened(f"m-{i}", f"S-M{i}", f"01011041{i:02d}") for i in range(6)]
    bodies += [bodies[0]]  # a duplicate is a record of a transaction too
    barrier = threading.Barrier(len(bodies))
    codes: list[int] = []

    def post(body: dict[str, Any]) -> None:
        barrier.wait()
        codes.append(client.post("/records", json=body, headers=headers).status_code)

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200] + [201] * 6
    samples = scrape(client)
    assert total(samples, "intake_group_commit_records_sum") == len(bodies)
    assert 1 <= total(samples, "intake_group_commit_records_count") <= len(bodies)
