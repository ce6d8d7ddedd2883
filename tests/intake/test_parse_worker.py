"""A large bulk import parses its lines in a worker process while it writes: the results, the events
and intake's tables must be exactly those of parsing in the importing process, on SQLite and on
PostgreSQL (with outbox rows), over HTTP too, and when the worker dies in the middle."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

import services.intake.bulk as bulk_module
from services.intake import parsing
from services.intake.adapters.schema import create_tables
from services.intake.adapters.tables import cases, child_keys, children, measures, underretninger
from services.intake.app import create_app
from services.intake.bulk import BulkImport
from services.intake.config import Settings
from services.intake.service import IntakeService
from shared.db import make_engine
from shared.eventstore.schema import events, outbox
from tests.intake.conftest import auth, clock, example, examples, make_settings
from tests.intake.test_write_many import POOL, family


def lines() -> list[tuple[int, bytes | None]]:
    """A file with everything a real one may hold: families in and out of order (references
    resolved later in the file), duplicates, a conflict, bad lines of every kind, other towns."""
    records: list[Any] = [r for i in range(40) for r in family(i)]
    records = records[::3] + records[1::3] + records[2::3]  # many lines wait for a later one
    records += examples()[::-1] + [example("ex-01"), {**example("ex-05"), "data": {"case_id": "S-2001"}}]
    records += [POOL[-1], POOL[-3], {"type": "Nope"}, [1, 2]]
    raw: list[bytes | None] = [json.dumps(r).encode() for r in records]
    raw += [b"{not json", b'{"record_id": "\\ud800", "type": "ReceiptSent"}', None, b"\xff\xfe"]
    return [(n, line) for n, line in enumerate(raw, start=1)]


@pytest.fixture
def ready_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An idle worker that has started (so that a small test import uses it from its first chunk),
    and a machine with a core to spare whatever the load of the machine running the tests."""
    monkeypatch.setattr(parsing, "spare_core", lambda: True)
    worker = parsing.acquire()
    deadline = time.monotonic() + 60
    while not worker.ready():
        assert time.monotonic() < deadline, "the parsing worker did not start"
        time.sleep(0.05)
    parsing.release(worker)
    yield


def dump(engine: Engine) -> dict[str, Any]:
    """What both ways must agree on: all but the random event ids and vault ciphertexts."""
    with engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.position)).all()
        out: dict[str, Any] = {
            "events": [tuple(v for k, v in r._mapping.items() if k != "event_id") for r in rows]
        }
        for table in (cases, measures, underretninger):
            out[table.name] = sorted(tuple(r) for r in conn.execute(select(table)))
        out["children"] = sorted(
            tuple(r) for r in conn.execute(select(children.c.municipality, children.c.child_id))
        )
        out["keys"] = sorted(tuple(r) for r in conn.execute(select(child_keys.c.child_id)))
        out["outbox"] = [
            (r.position, r.key, {k: v for k, v in json.loads(r.payload).items() if k != "event_id"})
            for r in conn.execute(select(outbox).order_by(outbox.c.id))
        ]
    return out


def import_once(settings: Settings, url: str, workers: int) -> tuple[list[Any], dict[str, Any], int]:
    engine = make_engine(url)
    create_tables(engine)
    try:
        service = IntakeService(engine, settings.model_copy(update={"event_store_url": url}), clock=clock)
        importer = BulkImport(service, "751", chunk_lines=50, correlation_id="cid", parse_workers=workers)
        importer.feed_lines(lines())
        importer.finish()
        results = list(importer.results())
        importer.close()
        return results, dump(engine), importer.worker_chunks
    finally:
        engine.dispose()


def fresh_url(settings: Settings, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    if settings.event_store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / (name + '.db')}"
    return str(request.getfixturevalue("postgres_server").create_database(f"test_{uuid.uuid4().hex[:16]}"))


def test_a_worker_gives_what_parsing_here_gives(
    settings: Settings,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    ready_worker: None,
) -> None:
    monkeypatch.setattr(bulk_module, "WORKER_AFTER_CHUNKS", 0)
    here = import_once(settings, fresh_url(settings, request, tmp_path, "here"), workers=0)
    there = import_once(settings, fresh_url(settings, request, tmp_path, "there"), workers=1)
    assert here[2] == 0 and there[2] >= 5  # the worker parsed most chunks
    assert there[0] == here[0]
    assert there[1] == here[1]
    statuses = {r["status"] for r in here[0]}
    assert statuses == {"accepted", "duplicate", "rejected"}
    assert sum(1 for r in here[0] if r["status"] == "accepted") >= 40 * 6
    if not settings.event_store_url.startswith("sqlite"):
        assert len(there[1]["outbox"]) == len(there[1]["events"])


def test_a_worker_that_dies_midway_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ready_worker: None
) -> None:
    monkeypatch.setattr(bulk_module, "WORKER_AFTER_CHUNKS", 0)
    settings = make_settings(tmp_path)
    here = import_once(settings, f"sqlite:///{tmp_path / 'here.db'}", workers=0)

    real_complete = BulkImport._complete_next
    calls = {"n": 0}

    def kill_after_two(self: BulkImport) -> None:
        calls["n"] += 1
        if calls["n"] == 3 and self._worker is not None:
            os.kill(self._worker.pid, signal.SIGKILL)
            self._worker._process.wait(10)
        real_complete(self)

    monkeypatch.setattr(BulkImport, "_complete_next", kill_after_two)
    there = import_once(settings, f"sqlite:///{tmp_path / 'there.db'}", workers=1)
    assert 1 <= there[2] < calls["n"]  # the worker parsed some chunks, then this process the rest
    assert there[0] == here[0]
    assert there[1] == here[1]


def test_over_http_with_a_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ready_worker: None) -> None:
    monkeypatch.setattr(bulk_module, "WORKER_AFTER_CHUNKS", 0)
    body = b"".join((raw or b"x" * 10) + b"\n" for _, raw in lines())
    docs = []
    for workers in (0, 1):
        settings = make_settings(tmp_path / str(workers), bulk_chunk_lines=40, bulk_parse_workers=workers)
        (tmp_path / str(workers)).mkdir()
        with TestClient(create_app(settings, clock=clock)) as client:
            resp = client.post(
                "/records/bulk",
                content=body,
                headers={**auth(role="system"), "Content-Type": "application/x-ndjson"},
            )
        assert resp.status_code == 200
        docs.append(resp.json())
    assert docs[0] == docs[1]
    assert docs[0]["accepted"] >= 40 * 6 and docs[0]["rejected"] >= 5


def test_a_lone_surrogate_record_id_is_a_rejected_line_not_a_failed_import(tmp_path: Path) -> None:
    """(It used to fail the whole request with a 500: the id was echoed and could not be encoded.)"""
    settings = make_settings(tmp_path)
    body = b'{"record_id": "\\ud800x", "type": "Nope"}\n' + json.dumps(example("ex-01")).encode() + b"\n"
    with TestClient(create_app(settings, clock=clock)) as client:
        resp = client.post(
            "/records/bulk",
            content=body,
            headers={**auth(role="system"), "Content-Type": "application/x-ndjson"},
        )
    assert resp.status_code == 200
    doc = resp.json()
    assert [(r["status"], r["record_id"]) for r in doc["results"]] == [
        ("rejected", None),
        ("accepted", "ex-01"),
    ]
    assert doc["results"][0]["reason"].startswith("type: unknown record type")


def test_no_worker_without_a_core_to_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ready_worker: None
) -> None:
    monkeypatch.setattr(bulk_module, "WORKER_AFTER_CHUNKS", 0)
    settings = make_settings(tmp_path)
    with_worker = import_once(settings, f"sqlite:///{tmp_path / 'a.db'}", workers=1)
    monkeypatch.setattr(parsing, "spare_core", lambda: False)
    without = import_once(settings, f"sqlite:///{tmp_path / 'b.db'}", workers=1)
    assert with_worker[2] > 0 and without[2] == 0
    assert without[0] == with_worker[0] and without[1] == with_worker[1]


@pytest.mark.parametrize(
    ("cores", "load", "spare"), [(2, 0.9, True), (2, 1.6, False), (1, 0.0, False), (8, 6.0, True)]
)
def test_a_spare_core_is_one_the_load_leaves_free(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, spare: bool
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert parsing.spare_core() is spare
