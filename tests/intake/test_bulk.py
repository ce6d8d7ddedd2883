"""POST /records/bulk and the streaming import underneath it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select

from services.intake.app import create_app
from services.intake.bulk import BulkImport, LineSplitter, _DeferredSpool
from services.intake.config import Settings
from services.intake.service import IntakeService
from shared.eventstore.schema import events
from tests.intake.conftest import auth, clock, example, examples, make_settings, ndjson

NDJSON = {"Content-Type": "application/x-ndjson"}


def bulk(client: TestClient, body: Any, **who: Any) -> dict[str, Any]:
    headers = {**auth(**(who or {"role": "system"})), **NDJSON}
    resp = client.post("/records/bulk", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def event_count(settings: Settings) -> int:
    engine = create_engine(settings.event_store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())
    finally:
        engine.dispose()


def statuses(doc: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["line"], r["status"]) for r in doc["results"]]


def test_the_example_file_imports(client: TestClient, settings: Settings) -> None:
    doc = bulk(client, ndjson(examples()))
    assert (doc["accepted"], doc["duplicate"], doc["rejected"], doc["lines"]) == (26, 0, 0, 26)
    assert [r["record_id"] for r in doc["results"]] == [r["record_id"] for r in examples()]
    assert all(set(r) >= {"line", "record_id", "status", "reason"} for r in doc["results"])
    assert event_count(settings) == 26


def test_out_of_order_lines_wait_for_their_case(client: TestClient, settings: Settings) -> None:
    # the CaseworkerAssigned line comes before the CaseOpened line it needs
    body = ndjson([example("ex-01"), example("ex-05"), example("ex-13"), example("ex-04")])
    doc = bulk(client, body)
    assert statuses(doc) == [(1, "accepted"), (2, "accepted"), (3, "accepted"), (4, "accepted")]
    engine = create_engine(settings.event_store_url)
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.record_id, events.c.version).order_by(events.c.position)).all()
    engine.dispose()
    assert [r.record_id for r in rows] == ["ex-01", "ex-04", "ex-05", "ex-13"]
    assert [r.version for r in rows] == [1, 2, 3, 4]


def test_a_reversed_file_imports_completely(client: TestClient, settings: Settings) -> None:
    doc = bulk(client, ndjson(examples()[::-1]))
    assert (doc["accepted"], doc["rejected"]) == (26, 0), [r for r in doc["results"] if r["reason"]]
    assert [r["line"] for r in doc["results"]] == list(range(1, 27))
    assert event_count(settings) == 26


def test_good_and_bad_lines_mixed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, bulk_chunk_lines=3, max_line_bytes=4096)
    bad_cpr = example("ex-16")
    bad_cpr.update(record_id="bad-cpr")
    bad_cpr["data"].update(underretning_id="UR-x", child={"cpr": "3102194012"})
    orphan = {**example("ex-12"), "record_id": "orphan"}
    orphan["data"] = {"case_id": "S-404", "measure_id": "I-404"}
    other_town = {**example("ex-03"), "record_id": "other-town", "municipality": "657"}
    huge = {**example("ex-03"), "record_id": "huge", "data": {"underretning_id": "U" * 5000}}
    lines = [
        json.dumps(example("ex-01")),  # 1
        "",  # 2 blank: skipped, counted
        "{not json",  # 3
        json.dumps(example("ex-02")),  # 4
        json.dumps({**example("ex-03"), "type": "Kvittering"}),  # 5
        json.dumps(bad_cpr),  # 6
        json.dumps(orphan),  # 7 never resolved
        json.dumps(other_town),  # 8
        json.dumps(huge),  # 9 longer than max_line_bytes
        "   ",  # 10 blank
        json.dumps(example("ex-03")),  # 11
        "[1, 2]",  # 12
        json.dumps(
            {**example("ex-01"), "data": {**example("ex-01")["data"], "severity": "akut"}}
        ),  # 13 conflict
        json.dumps(example("ex-01")),  # 14 duplicate of line 1
    ]
    with TestClient(create_app(settings, clock=clock)) as client:
        doc = bulk(client, "\n".join(lines))  # no final newline
    by_line = {r["line"]: r for r in doc["results"]}
    assert sorted(by_line) == [1, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]
    assert [r["line"] for r in doc["results"]] == sorted(by_line)
    expect = {
        1: ("accepted", None),
        3: ("rejected", "line: not valid JSON"),
        4: ("accepted", None),
        5: ("rejected", "type: unknown record type 'Kvittering'"),
        6: ("rejected", "data.child.cpr: not a valid CPR number"),
        7: ("rejected", "data.case_id: no case 'S-404'"),
        8: ("rejected", "municipality: 657 is outside your credentials"),
        9: ("rejected", "line: longer than 4096 bytes"),
        11: ("accepted", None),
        12: ("rejected", "record: a record must be a JSON object"),
        13: (
            "rejected",
            "record_id: 'ex-01' was already accepted for this municipality with different content",
        ),
        14: ("duplicate", None),
    }
    for line, (status, reason) in expect.items():
        assert by_line[line]["status"] == status, by_line[line]
        if reason is None:
            assert by_line[line]["reason"] is None
        else:
            assert by_line[line]["reason"].startswith(reason), by_line[line]
    assert "no line of this import supplied it either" in by_line[7]["reason"]
    assert by_line[6]["record_id"] == "bad-cpr" and by_line[6]["field"] == "data.child.cpr"
    assert "3102194012" not in json.dumps(doc)
    assert (doc["accepted"], doc["duplicate"], doc["rejected"], doc["lines"]) == (3, 1, 8, 12)
    assert event_count(settings) == 3


def test_reimporting_the_same_file_is_a_no_op(client: TestClient, settings: Settings) -> None:
    body = ndjson(examples()[::-1]) + "{broken\n"
    first = bulk(client, body)
    second = bulk(client, body)
    assert (first["accepted"], first["rejected"]) == (26, 1)
    assert (second["accepted"], second["duplicate"], second["rejected"]) == (0, 26, 1)
    assert event_count(settings) == 26


def test_streamed_body_in_odd_chunks_with_crlf_and_bom(client: TestClient, settings: Settings) -> None:
    raw = ("\ufeff" + "".join(json.dumps(r) + "\r\n" for r in examples())).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 97):
            yield raw[i : i + 97]

    doc = bulk(client, chunks())
    assert (doc["accepted"], doc["rejected"]) == (26, 0), doc["results"][:2]


def test_empty_body(client: TestClient) -> None:
    assert bulk(client, b"") == {"lines": 0, "accepted": 0, "duplicate": 0, "rejected": 0, "results": []}


def test_bulk_needs_a_writer(client: TestClient) -> None:
    resp = client.post("/records/bulk", content=ndjson(examples()), headers={**auth(role="udvalg"), **NDJSON})
    assert resp.status_code == 403
    assert client.post("/records/bulk", content=b"{}", headers=NDJSON).status_code == 401


def test_open_case_conflict_resolved_by_a_later_close_in_the_same_file(client: TestClient) -> None:
    second = {**example("ex-04"), "record_id": "second-case", "occurred_at": "2026-11-15T09:00:00+01:00"}
    second["data"] = {"case_id": "S-2002", "child": {"cpr": "2404194012"}, "team_id": "syd"}
    close = {**example("ex-26"), "record_id": "close-first", "occurred_at": "2026-11-10T09:00:00+01:00"}
    close["data"] = {"case_id": "S-2001"}
    first = example("ex-04")
    del first["data"]["underretning_id"]
    doc = bulk(client, ndjson([first, second, close]))
    assert statuses(doc) == [(1, "accepted"), (2, "accepted"), (3, "accepted")]


def test_chunks_commit_independently(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = IntakeService(_engine(settings), settings, clock=clock)
    importer = BulkImport(service, "751", chunk_lines=2)
    lines = [(i + 1, json.dumps(r).encode()) for i, r in enumerate(examples()[:5])]
    importer.feed_lines(lines[:4])  # two chunks of two committed
    assert event_count(settings) == 4
    importer.feed_lines(lines[4:])
    summary = importer.finish()
    assert (summary.accepted, summary.lines) == (5, 5)
    assert [r["status"] for r in importer.results()] == ["accepted"] * 5
    importer.close()
    service.engine.dispose()


def _engine(settings: Settings) -> Any:
    from services.intake.adapters.schema import create_tables
    from shared.db import make_engine

    engine = make_engine(settings.event_store_url)
    create_tables(engine)
    return engine


# --- the line splitter -----------------------------------------------------------------------------


def split_all(data: bytes, cuts: list[int], limit: int = 1000) -> list[tuple[int, bytes | None]]:
    splitter = LineSplitter(limit)
    out: list[tuple[int, bytes | None]] = []
    start = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        out += splitter.feed(data[start:cut])
        start = cut
    return out + splitter.end()


@given(
    st.lists(st.text(alphabet='ab{}" ', max_size=20), max_size=15),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    st.booleans(),
)
@hsettings(max_examples=200, deadline=None)
def test_splitting_does_not_depend_on_chunking(
    lines: list[str], cuts: list[int], final_newline: bool
) -> None:
    data = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    expected = [(i + 1, line.encode()) for i, line in enumerate(lines) if line.strip()]
    assert split_all(data, cuts) == expected


@pytest.mark.parametrize("cuts", [[], [1], [5, 10, 15], list(range(1, 60))])
def test_oversize_lines_are_flagged_not_buffered(cuts: list[int]) -> None:
    data = b"ok\n" + b"x" * 30 + b"\nfine\n" + b"y" * 31
    assert split_all(data, cuts, limit=20) == [(1, b"ok"), (2, None), (3, b"fine"), (4, None)]


def test_a_line_of_exactly_the_limit_passes() -> None:
    assert split_all(b"x" * 20 + b"\r\n", [7], limit=20) == [(1, b"x" * 20)]


def test_deferred_lines_never_touch_disk_readable() -> None:
    spool = _DeferredSpool()
    line = json.dumps(example("ex-01")).encode()
    for n in range(3):
        spool.add(n + 1, line)
    spool._file.seek(0)
    assert b"2404194012" not in spool._file.read()
    assert list(spool) == [(1, line), (2, line), (3, line)]
    spool.close()


# --- memory stays flat --------------------------------------------------------------------------------


def _generated_lines(n: int) -> Iterator[bytes]:
    for i in range(n):
        cpr = f"{1 + i % 28:02d}{1 + i % 12:02d}{5 + i % 18:02d}4{i % 1000:03d}"
        record = {
            "record_id": f"mem-{i}",
            "type": "UnderretningReceived",
            "municipality": "751",
            "occurred_at": "2026-10-05T08:40:00+02:00",
            "data": {
                "underretning_id": f"MU-{i}",
                "child": {"cpr": cpr},
                "notifier": "3",
                "reasons": ["andet"],
                "severity": "ukendt",
                "team_id": "syd",
                "professional": True,
            },
        }
        yield (json.dumps(record) + "\n").encode()


def _peak_import(tmp_path: Path, n: int) -> tuple[int, int]:
    import tracemalloc

    settings = make_settings(tmp_path / str(n))
    (tmp_path / str(n)).mkdir()
    service = IntakeService(_engine(settings), settings, clock=clock)
    tracemalloc.start()
    try:
        importer = BulkImport(service, "751", chunk_lines=100)
        splitter = LineSplitter(settings.max_line_bytes)
        streamed = 0
        for raw in _generated_lines(n):
            streamed += len(raw)
            importer.feed_lines(splitter.feed(raw))
        importer.feed_lines(splitter.end())
        assert importer.finish().accepted == n
        assert sum(1 for _ in importer.results()) == n
        importer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        service.engine.dispose()
    return peak, streamed


def _lowest_peak(tmp_path: Path, n: int, runs: int = 2) -> tuple[int, int]:
    peaks: list[int] = []
    streamed = 0
    for run in range(runs):
        where = tmp_path / str(run)
        where.mkdir(parents=True)
        peak, streamed = _peak_import(where, n)
        peaks.append(peak)
    return min(peaks), streamed


def test_memory_does_not_grow_with_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.intake.bulk as bulk_module

    monkeypatch.setattr(bulk_module, "SPOOL_BYTES", 16 * 1024)  # results go to disk early
    # A first import fills what any import fills once (lazy imports, compiled statements, caches
    # that stop at a bound); up to a few thousand lines bounded caches still grow a little (about
    # 30 KB from 200 to 800 lines). tracemalloc sees every thread's allocations, and when the
    # collector runs decides how much garbage is alive at the peak: the lower peak of two imports
    # of each size is the import's own.
    _lowest_peak(tmp_path / "warm-up", 200, runs=1)
    small_peak, small_bytes = _lowest_peak(tmp_path / "small", 800)
    large_peak, large_bytes = _lowest_peak(tmp_path / "large", 3200)
    assert large_peak - small_peak < 0.25 * (large_bytes - small_bytes), (small_peak, large_peak, large_bytes)


def test_an_internal_error_on_one_line_spares_the_others(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import services.intake.service as service_module

    real_decide = service_module.decide

    def flaky_decide(record: Any, state: Any) -> Any:
        if record.record_id == "ex-02":
            raise ValueError("boom with data " + "240419" + "4012")  # a message quoting a CPR
        return real_decide(record, state)

    monkeypatch.setattr(service_module, "decide", flaky_decide)
    doc = bulk(client, ndjson(examples()[:3]))
    assert statuses(doc) == [(1, "accepted"), (2, "rejected"), (3, "accepted")]
    assert "internal error" in doc["results"][1]["reason"]
    assert event_count(settings) == 2
    assert "line 2 could not be processed (ValueError)" in caplog.text
    assert "2404194012" not in caplog.text


def test_an_import_into_a_fresh_store_keeps_its_statistics(service: IntakeService) -> None:
    """PostgreSQL: once 500 records are in, intake has the lookup tables analyzed (a fresh table has
    no statistics for a minute, and its lookups are planned badly meanwhile); SQLite: nothing."""
    importer = BulkImport(service, "751", chunk_lines=200)
    splitter = LineSplitter(service.settings.max_line_bytes)
    for raw in _generated_lines(600):
        importer.feed_lines(splitter.feed(raw))
    importer.feed_lines(splitter.end())
    assert importer.finish().accepted == 600
    importer.close()
    service.statistics.wait(30)
    postgres = service.engine.dialect.name == "postgresql"
    assert service.statistics.runs == (1 if postgres else 0)
    if postgres:
        with service.engine.connect() as conn:
            reltuples = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE relname = 'events'"
            ).scalar_one()
        assert reltuples > 0  # analyzed: the planner knows the table is not empty
