"""Hostile input at intake's door: every one gets a clear 4xx (or, in a bulk import, a per-line
rejection), nothing is stored, and the service stays healthy. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from shared.eventstore.schema import events
from tests.fuzz.conftest import SMALL_BODY, SMALL_LINE, stored
from tests.intake.conftest import auth, example

HEADERS = {**auth(role="system"), "Content-Type": "application/json"}
NDJSON = {**auth(role="system"), "Content-Type": "application/x-ndjson"}

INJECTIONS = [
    "x'; DROP TABLE events; --",
    "1 OR 1=1",
    '" OR ""="',
    "'; SELECT pg_sleep(5); --",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "{{7*7}}${7*7}",
    "../../../../etc/passwd",
    "\u202eevil",
]

BAD_TIMES = [
    "9999-12-31T23:59:59+00:00",
    "9999-12-31T23:59:59.999999-23:59",
    "0000-01-01T00:00:00+00:00",
    "0001-01-01T00:30:00+01:00",  # before datetime.min in UTC
    "2026-11-02T09:15:00",  # no offset
    "2026-11-02",
    "2026-13-45T99:99:99+01:00",
    "",
]


def record(**changes: Any) -> dict[str, Any]:
    """The spec's first example (an UnderretningReceived), with dotted-path changes."""
    rec = example("ex-01")
    for path, value in changes.items():
        target = rec
        *parents, last = path.split(".")
        for key in parents:
            target = target[key]
        target[last] = value
    return rec


def hostile_bodies() -> Iterator[tuple[str, bytes]]:
    base = json.dumps(record()).encode()
    yield "empty", b""
    yield "null", b"null"
    yield "list", b"[]"
    yield "string", b'"record"'
    yield "truncated", base[:-5]
    yield "nested-lists", b"[" * 30_000 + b"]" * 30_000
    yield "nested-objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    yield "nested-in-data", base.replace(b'"data": {', b'"data": {"x": ' + b"[" * 5000 + b"]" * 5000 + b",")
    yield "invalid-utf8", base.replace(b"syd", b"s\xff\xfed")
    yield "overlong-utf8", base.replace(b"syd", b"s\xc0\xafd")
    yield "lone-surrogate", base.replace(b"syd", b"s\\ud800d")
    yield "nul-in-value", json.dumps(record(**{"data.team_id": "syd\x00"})).encode()
    yield "nul-in-id", json.dumps(record(record_id="ex\x00-01")).encode()
    yield "nul-in-key", json.dumps({**record(), "\x00": 1}).encode()
    yield "1e400", base.replace(b'"2026-10-05T08:40:00+02:00"', b"1e400")
    yield "-1e400-severity", base.replace(b'"bekymring"', b"-1e400")
    yield "nan", base.replace(b'"bekymring"', b"NaN")
    yield "infinity", base.replace(b'"3"', b"Infinity")
    yield "int-1000-digits", base.replace(b'"3"', b"1" * 1000)
    yield "int-10**1000", base.replace(b'"2404194012"', str(10**1000).encode())
    yield "int-5000-digits", base.replace(b'"2404194012"', b"9" * 5000)
    for t in BAD_TIMES:
        yield f"time {t!r}", json.dumps(record(occurred_at=t)).encode()
    coded = ("type", "municipality", "occurred_at", "data.notifier", "data.severity", "data.child.cpr")
    for path in coded:
        for s in INJECTIONS:
            yield f"{path}={s!r}", json.dumps(record(**{path: s})).encode()
    for s in INJECTIONS:
        yield f"data.reasons[0]={s!r}", json.dumps(record(**{"data.reasons": [s]})).encode()


def assert_healthy(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text


def test_hostile_single_records_are_refused_with_4xx_and_store_nothing(client: TestClient) -> None:
    before = stored(client)
    for name, body in hostile_bodies():
        r = client.post("/records", content=body, headers=HEADERS)
        assert 400 <= r.status_code < 500, f"{name}: {r.status_code} {r.text[:300]}"
        doc = r.json()
        assert doc.get("reason"), f"{name}: no reason given: {doc}"
        assert stored(client) == before, f"{name}: something was stored"
    assert_healthy(client)
    # and it still accepts a good record afterwards
    assert client.post("/records", json=record(), headers=HEADERS).status_code == 201
    assert stored(client)[0] == before[0] + 1


def test_bodies_over_the_limit_get_413_declared_or_streamed(client: TestClient) -> None:
    big = json.dumps(record(**{"data.team_id": "x" * (SMALL_BODY + 10)})).encode()
    r = client.post("/records", content=big, headers=HEADERS)
    assert r.status_code == 413, r.text
    assert "larger than" in r.json()["reason"]

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to refuse up front
        for _ in range(8):
            yield b" " * (SMALL_BODY // 4)

    r = client.post("/records", content=chunks(), headers=HEADERS)
    assert r.status_code == 413, r.text
    assert stored(client) == (0, 0)
    assert_healthy(client)


def test_injection_strings_in_free_text_ids_are_stored_verbatim_and_harmlessly(client: TestClient) -> None:
    """Ids are free text: an injection string is data, kept as given, and changes nothing else."""
    for i, s in enumerate(INJECTIONS):
        rid, urid = f"inj-{i}-{s}"[:200], f"UR-{i}-{s}"[:100]
        rec = record(record_id=rid, **{"data.underretning_id": urid, "data.team_id": s})
        r = client.post("/records", json=rec, headers=HEADERS)
        assert r.status_code == 201, f"{s!r}: {r.text}"
        assert r.json()["record_id"] == rid
    with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(events.c.record_id, events.c.data).order_by(events.c.position)).all()
    assert len(rows) == len(INJECTIONS)
    for i, (row, s) in enumerate(zip(rows, INJECTIONS, strict=True)):
        assert row.record_id == f"inj-{i}-{s}"[:200]
        assert json.loads(row.data)["team_id"] == s
    assert_healthy(client)


def bulk(client: TestClient, body: bytes) -> dict[str, Any]:
    r = client.post("/records/bulk", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text[:500]
    doc: dict[str, Any] = r.json()
    return doc


def test_hostile_bulk_lines_are_rejected_one_by_one(client: TestClient) -> None:
    skip_in_bulk = ("nested", "int-5000", "int-10**1000", "nul-")  # see the strict xfail below
    lines = [body for name, body in hostile_bodies() if body and not name.startswith(skip_in_bulk)]
    lines = [ln for ln in lines if b"\n" not in ln and len(ln) <= SMALL_LINE]
    long_line = json.dumps(record(**{"data.team_id": "x" * (SMALL_LINE + 1)})).encode()
    good = json.dumps(record(record_id="bulk-good")).encode()
    body = b"\n".join([*lines, long_line, good]) + b"\n"
    doc = bulk(client, body)
    assert doc["lines"] == len(lines) + 2
    assert doc["accepted"] == 1 and doc["rejected"] == len(lines) + 1, doc
    results = doc["results"]
    assert all(r["reason"] for r in results if r["status"] == "rejected")
    assert results[-2]["reason"].startswith("line: longer than")
    assert results[-1]["status"] == "accepted"
    assert stored(client)[0] == 1
    assert_healthy(client)


def test_a_bulk_body_without_newlines_is_one_rejected_line_not_a_memory_hog(client: TestClient) -> None:
    """There is no total limit on a bulk body (it is streamed); an endless line is cut at max_line_bytes."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536  # 4 MiB, no newline

    r = client.post("/records/bulk", content=chunks(), headers=NDJSON)
    assert r.status_code == 200
    doc = r.json()
    assert (doc["lines"], doc["rejected"]) == (1, 1)
    assert stored(client) == (0, 0)


def test_bulk_lines_too_deep_too_long_numbers_or_nul_are_rejected_per_line(client: TestClient) -> None:
    lines = [
        body
        for name, body in hostile_bodies()
        if name.startswith(("nested", "int-5000", "int-10**1000", "nul-")) and len(body) <= SMALL_LINE
    ]
    good = json.dumps(record(record_id="bulk-good")).encode()
    doc = bulk(client, b"\n".join([*lines, good]) + b"\n")
    assert doc["accepted"] == 1 and doc["rejected"] == len(lines), doc
    assert stored(client)[0] == 1
