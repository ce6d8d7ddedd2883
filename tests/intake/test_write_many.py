"""The fast path of a bulk import: `EventStore.append_many` (many streams in a few statements, the
same per-stream optimistic concurrency as `append`) and `IntakeService.write_many` (a chunk decided
in memory), which must give exactly what `write` gives record by record, on SQLite and on
PostgreSQL, also when another writer gets in between."""

from __future__ import annotations

import copy
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text

from services.intake.adapters import snapshot
from services.intake.adapters.schema import create_tables
from services.intake.adapters.tables import cases, child_keys, children, measures, underretninger
from services.intake.bulk import BulkImport
from services.intake.config import Settings
from services.intake.domain.records import RecordBase, Rejection
from services.intake.service import IntakeService, Outcome
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events, outbox
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import ConcurrencyError, DuplicateRecordError, EventStore, NewEvent
from tests.backbone.support import assignment
from tests.intake.conftest import clock, examples, make_settings

# --- the store: append_many ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
def store_engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    store_metadata.create_all(engine)
    yield engine
    engine.dispose()


def count(engine: Engine, table: Any = events) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def interleaved(streams: int, per_stream: int, first: int = 1, tag: str = "r") -> list[NewEvent]:
    """Events of several streams, interleaved: s0 v1, s1 v1, ..., s0 v2, ..."""
    return [
        NewEvent(assignment(s, v, record=f"{tag}-{s}-{v}"), content_hash=f"h-{s}-{v}")
        for v in range(first, first + per_stream)
        for s in range(streams)
    ]


def test_append_many_keeps_the_order_given(store_engine: Engine) -> None:
    store = EventStore(outbox_topic="events")
    with store_engine.begin() as conn:
        store.append(conn, [assignment(0, 1, record="before")], expected_version=0, content_hash="b")
    # five streams interleaved; stream 0 already has v1, the others start at v1
    items = [
        NewEvent(assignment(s, v + 1 if s == 0 else v, record=f"r-{s}-{v}"), content_hash=f"h-{s}-{v}")
        for v in range(1, 4)
        for s in range(5)
    ]
    expected = {assignment(s, 1).stream_id: 1 if s == 0 else 0 for s in range(5)}
    with store_engine.begin() as conn:
        positions = store.append_many(conn, items, expected_versions=expected)
    assert positions == sorted(positions) and len(set(positions)) == len(items)
    with store_engine.connect() as conn:
        stored = store.read_all(conn, after_position=positions[0] - 1, limit=1000)
        for s in range(5):
            versions = [e.version for e in store.read_stream(conn, assignment(s, 1).stream_id)]
            assert versions == [1, 2, 3, 4] if s == 0 else [1, 2, 3]
        assert store.stream_versions(conn, [assignment(0, 1).stream_id, "child-657-none"]) == {
            assignment(0, 1).stream_id: 4,
            "child-657-none": 0,
        }
        found = store.find_records(conn, "657", ["r-1-1", "before", "nope"])
        rows = conn.execute(
            select(outbox.c.position, outbox.c.key, outbox.c.payload).order_by(outbox.c.id)
        ).all()
    assert [e.record_id for e in stored] == [i.envelope.record_id for i in items]
    assert [e.position for e in stored] == positions
    assert [e.payload for e in stored] == [i.envelope.payload for i in items]
    assert set(found) == {"r-1-1", "before"} and found["r-1-1"].content_hash == "h-1-1"
    # the outbox rows carry the same wire form as `append` writes (the payload encoded once)
    for (position, key, payload), item in zip(rows[1:], items, strict=True):
        assert position == EventEnvelope.from_bytes(payload).position and key == item.envelope.stream_id
        assert json.loads(payload) == json.loads(item.envelope.with_position(position).to_bytes())


@pytest.mark.parametrize("clash", ["version", "record"])
def test_append_many_refuses_the_whole_lot_on_a_clash(store_engine: Engine, clash: str) -> None:
    store = EventStore(outbox_topic="events")
    with store_engine.begin() as conn:
        store.append(conn, [assignment(3, 1, record="taken")], expected_version=0, content_hash="t")
    items = interleaved(streams=4, per_stream=2, first=1)
    if clash == "version":
        error: type[Exception] = ConcurrencyError  # stream 3 moved on: its v1 is taken
    else:
        error = DuplicateRecordError
        items = [i for i in items if i.envelope.stream_id != assignment(3, 1).stream_id]
        items.append(NewEvent(assignment(9, 1, record="taken"), "x"))
    expected = {i.envelope.stream_id: 0 for i in items}
    with store_engine.begin() as conn:
        with pytest.raises(error):
            store.append_many(conn, items, expected_versions=expected)
        # nothing of the lot was written, and the transaction goes on
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1
        store.append(conn, [assignment(5, 1, record="after")], expected_version=0, content_hash="a")
    assert count(store_engine) == 2


def test_append_many_checks_the_versions_it_is_given(store_engine: Engine) -> None:
    store = EventStore()
    gap = [NewEvent(assignment(1, 1, record="a"), "h"), NewEvent(assignment(1, 3, record="b"), "h")]
    with store_engine.begin() as conn:
        with pytest.raises(ValueError):
            store.append_many(conn, gap, expected_versions={gap[0].envelope.stream_id: 0})
        with pytest.raises(ValueError):
            store.append_many(conn, gap[:1], expected_versions={gap[0].envelope.stream_id: 4})
        assert store.append_many(conn, [], expected_versions={}) == []
    assert count(store_engine) == 0


def test_two_append_many_on_the_same_stream_one_wins(store_engine: Engine) -> None:
    store = EventStore(serialize_appends=True)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer(name: str) -> None:
        items = [
            NewEvent(assignment(s, 1, record=f"{name}-{s}"), name)
            for s in ([1, 2] if name == "a" else [3, 2])
        ]
        barrier.wait()
        try:
            with store_engine.begin() as conn:
                store.append_many(conn, items, expected_versions={i.envelope.stream_id: 0 for i in items})
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["conflict", "won"]
    assert count(store_engine) == 2


# --- the service: write_many == write, record by record ----------------------------------------------


def _variant(base: str, **changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(next(r for r in examples() if r["record_id"] == base))
    data = changes.pop("data", None)
    record.update(changes)
    if data is not None:
        record["data"] = {**record["data"], **data}
    return record


def _pool() -> list[dict[str, Any]]:
    """The spec's examples and records that meet every rule: duplicates, conflicts, missing and
    mismatched references, a second case for a child, closings, backfilled assignments."""
    return [
        *examples(),
        _variant("ex-05", data={"caseworker_id": "sr-zed"}),  # conflict with ex-05
        _variant(
            "ex-04",
            record_id="x-second-case",
            occurred_at="2026-11-18T09:00:00+01:00",
            data={"case_id": "S-2002", "underretning_id": None},
        ),
        _variant(
            "ex-26",
            record_id="x-close-2001",
            occurred_at="2026-11-17T12:00:00+01:00",
            data={"case_id": "S-2001"},
        ),
        _variant(
            "ex-26",
            record_id="x-close-early",
            occurred_at="2026-10-01T12:00:00+02:00",
            data={"case_id": "S-2001"},
        ),
        _variant(
            "ex-05",
            record_id="x-assign-old",
            occurred_at="2026-10-05T14:01:00+02:00",
            data={"caseworker_id": "sr-old"},
        ),
        _variant(
            "ex-05",
            record_id="x-assign-same",
            occurred_at="2026-11-18T08:00:00+01:00",
            data={"caseworker_id": "sr-bo"},
        ),
        _variant(
            "ex-21",
            record_id="x-measure-after-close",
            occurred_at="2026-11-21T09:00:00+01:00",
            data={"measure_id": "I-2991"},
        ),
        _variant("ex-25", record_id="x-end-again", occurred_at="2026-11-21T10:00:00+01:00"),
        _variant("ex-07", record_id="x-conv-both", data={"underretning_id": "UR-1002"}),
        _variant(
            "ex-16", record_id="x-ur-with-case", data={"underretning_id": "UR-0991", "case_id": "S-1990"}
        ),
        _variant(
            "ex-04",
            record_id="x-case-links-unborn",
            data={"case_id": "S-3000", "child": {"cpr": "0101104001"}, "underretning_id": "UR-1002"},
        ),
        _variant("ex-12", record_id="x-wrong-case", data={"case_id": "S-2001", "measure_id": "I-2990"}),
        _variant("ex-09", record_id="x-wait-measure", data={"measure_id": "I-3001"}),
        _variant("ex-01", municipality="657"),  # the same record id in another municipality
        _variant("ex-04", record_id="x-657-case", municipality="657", data={"underretning_id": None}),
        _variant("ex-03", record_id="x-no-underretning", data={"underretning_id": "UR-404"}),
    ]


POOL = _pool()


def _records(service: IntakeService, picks: list[int]) -> list[RecordBase]:
    out = []
    for i in picks:
        record = service.parse(copy.deepcopy(POOL[i]))
        assert not isinstance(record, Rejection), record
        out.append(record)
    return out


def _key(outcome: Outcome) -> tuple[Any, ...]:
    return (
        outcome.status,
        outcome.record_id,
        outcome.reason,
        outcome.field,
        outcome.change,
        outcome.retry_later,
        outcome.position,
    )


def _dump(engine: Engine) -> dict[str, Any]:
    """Everything both ways must agree on (not the random event ids and vault ciphertexts)."""
    with engine.connect() as conn:
        evs = conn.execute(
            select(
                events.c.position,
                events.c.stream_id,
                events.c.version,
                events.c.type,
                events.c.municipality,
                events.c.record_id,
                events.c.occurred_at,
                events.c.recorded_at,
                events.c.correlation_id,
                events.c.content_hash,
                events.c.data,
            ).order_by(events.c.position)
        ).all()
        out: dict[str, Any] = {"events": [tuple(r) for r in evs]}
        for table in (cases, measures, underretninger):
            out[table.name] = sorted(tuple(r) for r in conn.execute(select(table)))
        out["children"] = sorted(
            tuple(r)
            for r in conn.execute(select(children.c.municipality, children.c.child_id, children.c.unborn))
        )
        out["keys"] = sorted(
            tuple(r) for r in conn.execute(select(child_keys.c.municipality, child_keys.c.child_id))
        )
        out["outbox"] = [
            (r.position, r.key, json.loads(r.payload)["record_id"])
            for r in conn.execute(select(outbox).order_by(outbox.c.id))
        ]
    return out


def _both_ways(settings: Settings, prefix: list[int], picks: list[int]) -> None:
    """`prefix` written first (record by record), then `picks` one way in one database and the other
    way in another: the same outcomes and the same rows."""
    dumps, outcomes = [], []
    for way in ("each", "many"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'db.sqlite'}"
            engine = make_engine(url)
            create_tables(engine)
            service = IntakeService(engine, settings.model_copy(update={"event_store_url": url}), clock=clock)
            try:
                with engine.begin() as conn:
                    for record in _records(service, prefix):
                        service.write(conn, record, "cid")
                records = _records(service, picks)
                with engine.begin() as conn:
                    if way == "each":
                        got = [service.write(conn, r, "cid") for r in records]
                    else:
                        got = service.write_many(conn, records, "cid")
                outcomes.append([_key(o) for o in got])
                dumps.append(_dump(engine))
            finally:
                engine.dispose()
    assert outcomes[0] == outcomes[1]
    assert dumps[0] == dumps[1]


@given(
    prefix=st.lists(st.integers(0, len(POOL) - 1), max_size=12),
    picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=40),
    kafka=st.booleans(),
)
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_write_many_gives_what_write_gives(
    tmp_path: Path, prefix: list[int], picks: list[int], kafka: bool
) -> None:
    settings = make_settings(tmp_path, transport="kafka" if kafka else "sql", run_relay=False)
    _both_ways(settings, prefix, picks)


@pytest.mark.parametrize(
    "order",
    ["forward", "reversed", "twice", "pool"],
)
def test_write_many_gives_what_write_gives_on_fixed_files(tmp_path: Path, order: str) -> None:
    n = len(examples())
    picks = {
        "forward": list(range(n)),
        "reversed": list(range(n))[::-1],
        "twice": list(range(n)) + list(range(n)),
        "pool": list(range(len(POOL))),
    }[order]
    _both_ways(make_settings(tmp_path), [], picks)


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_write_many_on_postgres_gives_what_write_gives(
    fresh_pg_url: str, tmp_path: Path, seed: int | None
) -> None:
    """The same on PostgreSQL (outbox rows, positions returned by event id, set-based updates of
    folded changes): against `write` record by record, on SQLite."""
    import random

    settings = make_settings(tmp_path, event_store_url=fresh_pg_url, transport="kafka", run_relay=False)
    engine = make_engine(fresh_pg_url)
    create_tables(engine)
    service = IntakeService(engine, settings, clock=clock)
    if seed is None:
        picks = list(range(len(POOL))) + list(range(len(examples())))[::-1]
    else:
        picks = random.Random(seed).choices(range(len(POOL)), k=80)
    try:
        with engine.begin() as conn:
            got = service.write_many(conn, _records(service, picks), "cid")
        pg = _dump(engine)
    finally:
        engine.dispose()
    lite_settings = make_settings(tmp_path / "lite", transport="kafka", run_relay=False)
    (tmp_path / "lite").mkdir()
    lite_engine = make_engine(lite_settings.event_store_url)
    create_tables(lite_engine)
    lite = IntakeService(lite_engine, lite_settings, clock=clock)
    try:
        with lite_engine.begin() as conn:
            want = [lite.write(conn, r, "cid") for r in _records(lite, picks)]
        expected = _dump(lite_engine)
    finally:
        lite_engine.dispose()
    assert [_key(o) for o in got] == [_key(o) for o in want]
    assert pg == {**expected, "events": pg["events"]}
    assert [r[1:] for r in pg["events"]] == [r[1:] for r in expected["events"]]


# --- when another writer gets in between ----------------------------------------------------------------


class LosingStore(EventStore):
    """Loses the chunk's append as if another writer had taken a stream version meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def append_rows(self, conn: Any, rows: Any, *, expected_versions: Any) -> list[int]:
        if rows and self.lost == 0:
            self.lost += 1
            raise ConcurrencyError(rows[0][1])
        return super().append_rows(conn, rows, expected_versions=expected_versions)


def test_a_chunk_that_meets_another_writer_goes_record_by_record(engine: Engine, settings: Settings) -> None:
    store = LosingStore()
    service = IntakeService(engine, settings, clock=clock, store=store)
    records = _records(service, list(range(len(examples()))))
    with engine.begin() as conn:
        got = service.write_many(conn, records + records[:3], "cid")
    assert store.lost == 1
    assert [o.status for o in got] == ["accepted"] * len(records) + ["duplicate"] * 3
    assert count(engine) == len(records)


def test_a_stale_view_does_not_write_twice(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view misses case S-2001 (as if opened by another writer just after it was read): the
    plan's insert of the case hits the key, nothing of the chunk is kept, record by record it is
    refused as it should be."""
    service = IntakeService(engine, settings, clock=clock)
    opened = _records(service, [0, 3])  # ex-01, ex-04 (opens S-2001)
    with engine.begin() as conn:
        assert [o.status for o in service.write_many(conn, opened, "cid")] == ["accepted", "accepted"]
    real_load = snapshot.ChunkView.load.__func__  # type: ignore[attr-defined]

    def stale(cls: Any, *args: Any) -> Any:
        view = real_load(cls, *args)
        view.cases = {k: v for k, v in view.cases.items() if k[1] != "S-2001"}
        view.child_cases = {k: [c for c in v if c != "S-2001"] for k, v in view.child_cases.items()}
        return view

    monkeypatch.setattr(snapshot.ChunkView, "load", classmethod(stale))
    again = service.parse({**copy.deepcopy(POOL[3]), "record_id": "x-open-again"})
    assert not isinstance(again, Rejection)
    with engine.begin() as conn:
        got = service.write_many(conn, [again], "cid")
    assert got[0].status == "rejected" and "already exists" in (got[0].reason or "")
    assert count(engine) == 2


# --- bulk imports at the same time (PostgreSQL: real concurrent writers) ---------------------------------


def family(i: int) -> list[dict[str, Any]]:
    cpr = f"{1 + i % 28:02d}{1 + (i // 28) % 12:02d}154{i % 1000:03d}"
    u, s, m = f"FU-{i}", f"FS-{i}", f"FM-{i}"

    def rec(n: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "record_id": f"f-{i}-{n}",
            "type": kind,
            "municipality": "751",
            "occurred_at": f"2026-0{1 + n % 9}-{10 + i % 18:02d}T10:00:00+01:00",
            "data": data,
        }

    return [
        rec(
            0,
            "UnderretningReceived",
            {
                "underretning_id": u,
                "child": {"cpr": cpr},
                "notifier": "2",
                "reasons": ["andet"],
                "severity": "bekymring",
                "team_id": "syd",
            },
        ),
        rec(1, "CaseOpened", {"case_id": s, "child": {"cpr": cpr}, "team_id": "syd", "underretning_id": u}),
        rec(2, "CaseworkerAssigned", {"case_id": s, "caseworker_id": f"sb-{i % 5}"}),
        rec(3, "MeasureStarted", {"case_id": s, "measure_id": m, "measure_type": "raadgivning"}),
        rec(4, "FollowUpHeld", {"case_id": s, "measure_id": m}),
        rec(5, "CaseworkerAssigned", {"case_id": s, "caseworker_id": f"sb-{(i + 1) % 5}"}),
    ]


def lines_of(records: list[dict[str, Any]]) -> list[tuple[int, bytes | None]]:
    return [(n + 1, json.dumps(r).encode()) for n, r in enumerate(records)]


@pytest.mark.postgres
@pytest.mark.parametrize("transport", ["sql", "kafka"])
def test_two_bulk_imports_of_overlapping_files_at_once(
    fresh_pg_url: str, tmp_path: Path, transport: str
) -> None:
    settings = make_settings(tmp_path, event_store_url=fresh_pg_url, transport=transport, run_relay=False)
    engine = make_engine(fresh_pg_url)
    create_tables(engine)
    service = IntakeService(engine, settings, clock=clock)
    # the same 240 records; file b in another order of the children and other chunks
    a = [r for i in range(40) for r in family(i)]
    b = [r for i in reversed(range(40)) for r in family(i)]
    summaries: dict[str, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(name: str, records: list[dict[str, Any]], chunk: int) -> None:
        try:
            importer = BulkImport(service, "751", chunk_lines=chunk)
            barrier.wait()
            importer.feed_lines(lines_of(records))
            summaries[name] = (importer.finish(), list(importer.results()))
            importer.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("a", a, 25)),
        threading.Thread(target=run, args=("b", b, 37)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        sa, ra = summaries["a"]
        sb, rb = summaries["b"]
        assert (sa.rejected, sb.rejected) == (0, 0), [r for r in ra + rb if r["status"] == "rejected"][:3]
        assert sa.accepted + sb.accepted == len(a) and sa.duplicate + sb.duplicate == len(a)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(events)).scalar_one() == len(a)
            gaps = conn.execute(
                text(
                    "SELECT stream_id, count(*), max(version) FROM events GROUP BY stream_id "
                    "HAVING count(*) <> max(version)"
                )
            ).all()
            assert gaps == []
            positions = [r[0] for r in conn.execute(select(events.c.position).order_by(events.c.position))]
            assert len(set(positions)) == len(a)
    finally:
        engine.dispose()


def test_bulk_results_do_not_depend_on_the_chunk_size(tmp_path: Path) -> None:
    records = [r for i in range(6) for r in family(i)]
    body = lines_of(records[::-1] + records[:5] + [(POOL[0])])
    got: list[list[Any]] = []
    for chunk in (1, 4, 500):
        settings = make_settings(tmp_path / str(chunk))
        (tmp_path / str(chunk)).mkdir()
        engine = make_engine(settings.event_store_url)
        create_tables(engine)
        importer = BulkImport(IntakeService(engine, settings, clock=clock), "751", chunk_lines=chunk)
        importer.feed_lines(body)
        importer.finish()
        got.append(list(importer.results()))
        importer.close()
        with engine.connect() as conn:
            got.append(
                sorted(conn.execute(select(events.c.record_id, events.c.version, events.c.stream_id)).all())
            )
        engine.dispose()
    assert got[0] == got[2] == got[4]
    assert got[1] == got[3] == got[5]
    assert {r["status"] for r in got[0]} == {"accepted", "duplicate"}


def test_the_content_hash_is_what_earlier_versions_stored(service: IntakeService) -> None:
    """Stored hashes decide duplicate or conflict for a record sent again: the hash must not change."""
    import hashlib
    import hmac

    from services.intake.domain.records import canonical_content

    key = service.settings.cpr_pseudonym_key.encode()
    for raw in POOL:
        record = service.parse(copy.deepcopy(raw))
        assert not isinstance(record, Rejection)
        canonical = json.dumps(
            canonical_content(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        assert service.content_hash(record) == hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def test_the_streamed_answer_does_not_depend_on_its_blocks(tmp_path: Path) -> None:
    records = [r for i in range(5) for r in family(i)]
    body = lines_of(records[::-1] + [POOL[0], POOL[0]]) + [(99, b"{broken")]
    settings = make_settings(tmp_path)
    engine = make_engine(settings.event_store_url)
    create_tables(engine)
    importer = BulkImport(IntakeService(engine, settings, clock=clock), "751", chunk_lines=7)
    importer.feed_lines(body)
    importer.finish()
    small = list(importer.iter_json(block_bytes=1))
    large = list(importer.iter_json(block_bytes=10**9))
    doc = json.loads(b"".join(large))
    assert b"".join(small) == b"".join(large) and len(large) == 1 and len(small) > len(body)
    assert doc["results"] == list(importer.results())
    assert [r["line"] for r in doc["results"]] == [n for n, _ in body]
    assert (doc["accepted"], doc["duplicate"], doc["rejected"]) == (len(records) + 1, 1, 1)
    importer.close()
    engine.dispose()


def test_savepoints_roll_back_only_their_own_writes(store_engine: Engine) -> None:
    from shared.eventstore.store import savepoint

    store = EventStore()
    with store_engine.begin() as conn:
        store.append(conn, [assignment(1, 1, record="kept")], expected_version=0, content_hash="k")
        with pytest.raises(RuntimeError), savepoint(conn):
            store.append(conn, [assignment(2, 1, record="undone")], expected_version=0, content_hash="u")
            with savepoint(conn):
                store.append(conn, [assignment(3, 1, record="inner")], expected_version=0, content_hash="i")
            raise RuntimeError("the block fails after two appends")
        with savepoint(conn), conn.begin_nested():  # SQLAlchemy's savepoints nest inside
            store.append(conn, [assignment(4, 1, record="later")], expected_version=0, content_hash="l")
    with store_engine.connect() as conn:
        found = store.find_records(conn, "657", ["kept", "undone", "inner", "later"])
    assert sorted(found) == ["kept", "later"]
