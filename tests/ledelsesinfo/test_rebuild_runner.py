"""The bulk rebuild as the runner drives it (log rows read straight from the driver, the log's own
texts stored, sums held across pages and written once per municipality, several processes) gives
the same tables, row for row, as the ordinary runner applying event by event; also when a page
fails and goes event by event, and when the ordinary runner goes on from the rebuild."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from services.ledelsesinfo import tables
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.projection import LedelsesinfoProjection, PreparedChildren, encode_event
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import EventStore
from shared.messaging.runner import ProjectionWorker, bulk_replay, replay, reset_projection
from shared.messaging.schema import dead_letters
from tests.ledelsesinfo.factory import Child
from tests.ledelsesinfo.test_bulk_rebuild import _closing_children
from tests.ledelsesinfo.test_projection import rich_events


def seeded_children(n: int, seed: int) -> list[Child]:
    """`n` children with random records over five months in three municipalities (deterministic)."""
    rnd = random.Random(seed)
    base = datetime(2026, 2, 20, 7, 0)

    def at() -> str:
        return (base + timedelta(minutes=rnd.randrange(150 * 24 * 60))).strftime("%Y-%m-%d %H:%M")

    out = []
    for i in range(n):
        c = Child(f"s{seed}-{i:03d}", rnd.choice(["101", "657", "657", "751"]))
        for k in range(rnd.randint(1, 3)):
            c.received(f"u{k}", at(), team=rnd.choice(["syd", "nord"]), notifier=rnd.choice(["2", "3", "6"]))
            if rnd.random() < 0.8:
                c.assessed(f"u{k}", at(), acute=rnd.random() < 0.2)
            if rnd.random() < 0.5:
                c.receipt(f"u{k}", at())
        if rnd.random() < 0.6:
            c.opened("s1", at(), team=rnd.choice(["syd", "nord"]), uid="u0")
            for _ in range(rnd.randint(0, 3)):
                c.assigned("s1", rnd.choice(["anna", "bo", "carl"]), at())
            if rnd.random() < 0.5:
                c.inv_started("s1", at())
                if rnd.random() < 0.7:
                    c.inv_completed("s1", at())
            if rnd.random() < 0.5:
                c.measure("s1", "m1", rnd.choice(["familiebehandling", "plejefamilie"]), at(), cost=15_000.0)
                if rnd.random() < 0.5:
                    c.measure_ended("s1", "m1", at())
            if rnd.random() < 0.3:
                c.closed("s1", at())
        out.append(c)
    return out


def all_events() -> list[EventEnvelope]:
    return [*rich_events(), *_closing_children(), *(e for c in seeded_children(40, 1) for e in c.events)]


def _append(url: str, envs: list[EventEnvelope]) -> None:
    engine = make_engine(url)
    store_metadata.create_all(engine)
    store = EventStore()
    by_stream: dict[str, list[EventEnvelope]] = {}
    for e in envs:
        by_stream.setdefault(e.stream_id, []).append(e)
    with engine.begin() as conn:
        for stream, evs in by_stream.items():
            expected = store.stream_version(conn, stream)
            store.append(conn, sorted(evs, key=lambda e: e.version), expected_version=expected,
                         content_hash=f"{stream}-{expected}")
    engine.dispose()


def full_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row of the projection's tables (stored event texts included)."""
    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t))) for t in tables.DERIVED}


class Setup:
    def __init__(self, tmp_path: Path, name: str) -> None:
        self.store_url = f"sqlite:///{tmp_path / 'store.db'}"
        self.settings = Settings(event_store_url=self.store_url,  # type: ignore[call-arg]
                                 database_url=f"sqlite:///{tmp_path / name}", run_worker=False)
        self.projection = LedelsesinfoProjection(self.settings.rules())
        self.worker = ProjectionWorker(self.projection, self.settings)
        self.worker.ensure_schema()

    def close(self) -> None:
        self.worker.stop()
        self.worker.engine.dispose()


@pytest.fixture
def events(tmp_path: Path) -> list[EventEnvelope]:
    envs = all_events()
    _append(f"sqlite:///{tmp_path / 'store.db'}", envs)
    return envs


@pytest.fixture
def reference(tmp_path: Path, events: list[EventEnvelope]) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The ordinary runner, event by event in small batches, from the beginning of the log."""
    s = Setup(tmp_path, "reference.db")
    s.worker.batch_size = 13
    assert s.worker.drain(timeout=120) == len(events)
    yield full_rows(s.worker.engine)
    s.close()


def test_the_runner_s_rebuild_equals_applying_event_by_event(
    tmp_path: Path, events: list[EventEnvelope], reference: dict[str, list[tuple[Any, ...]]]
) -> None:
    assert {r[1] for r in reference["ledelsesinfo_children"]} == {"101", "657", "751"}
    s = Setup(tmp_path, "bulk.db")
    for page, hold_limit in ((20_000, None), (17, None), (17, 40), (3, None)):
        if hold_limit is not None:
            s.projection.HOLD_LIMIT = hold_limit  # a municipality too big to hold: written, then added to
        reset_projection(s.worker)
        assert bulk_replay(s.worker, page) == len(events)
        assert full_rows(s.worker.engine) == reference, (page, hold_limit)
        assert s.projection._held is None  # holding ended with the rebuild
    assert replay(s.projection, s.settings, workers=1) == len(events)
    assert full_rows(s.worker.engine) == reference
    s.close()


def test_processes_rebuild_the_same_rows(
    tmp_path: Path, events: list[EventEnvelope], reference: dict[str, list[tuple[Any, ...]]]
) -> None:
    s = Setup(tmp_path, "parallel.db")
    assert replay(s.projection, s.settings, workers=3) == len(events)
    assert full_rows(s.worker.engine) == reference
    s.close()


def test_stored_texts_are_the_encoded_events(tmp_path: Path, events: list[EventEnvelope]) -> None:
    """The bulk rebuild stores the log's own texts; they are exactly what `apply` stores."""
    s = Setup(tmp_path, "texts.db")
    replay(s.projection, s.settings, workers=1)
    with s.worker.engine.connect() as conn:
        rows = conn.execute(select(tables.events)).all()
    with make_engine(s.store_url).connect() as conn:
        from shared.eventstore.schema import events as log
        from shared.eventstore.store import row_to_envelope

        logged = {r.event_id: row_to_envelope(r) for r in conn.execute(select(log))}
    assert len(rows) == len(events)
    assert all(r.doc == encode_event(logged[r.event_id]) for r in rows)
    s.close()


def test_a_failing_page_goes_event_by_event_and_nothing_is_counted_twice(
    tmp_path: Path, events: list[EventEnvelope], reference: dict[str, list[tuple[Any, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Setup(tmp_path, "failing.db")
    original = LedelsesinfoProjection.rebuild_children
    failed: list[int] = []

    def rebuild_children(self: LedelsesinfoProjection, conn: Connection, work: PreparedChildren) -> None:
        # fail the second page once, after it wrote part of its rows (they are rolled back)
        if isinstance(work, PreparedChildren) and work.child_rows and not failed and s.worker.processed:
            original(self, conn, work)
            failed.append(len(work.child_rows))
            raise ValueError("a page that fails on purpose")
        original(self, conn, work)

    monkeypatch.setattr(LedelsesinfoProjection, "rebuild_children", rebuild_children)
    reset_projection(s.worker)
    assert bulk_replay(s.worker, 29) == len(events)
    assert failed and s.worker.dead_lettered == 0
    assert full_rows(s.worker.engine) == reference
    with s.worker.engine.connect() as conn:
        assert conn.execute(select(dead_letters)).first() is None
    s.close()


def test_the_ordinary_runner_goes_on_from_the_rebuild(tmp_path: Path, events: list[EventEnvelope]) -> None:
    later = seeded_children(8, 2)
    extra = Child("a")  # a late record for a child the rebuild already holds (657, stream child-657-a)
    extra.version = max(e.version for e in events if e.stream_id == "child-657-a")
    extra.assessed("ua2", "2026-11-21 09:00")
    more = [*(e for c in later for e in c.events), *extra.events]

    s = Setup(tmp_path, "goes-on.db")
    assert replay(s.projection, s.settings, workers=2) == len(events)
    _append(s.store_url, more)
    assert s.worker.drain(timeout=120) == len(more)

    r = Setup(tmp_path, "all.db")
    assert r.worker.drain(timeout=120) == len(events) + len(more)
    assert full_rows(s.worker.engine) == full_rows(r.worker.engine)
    s.close()
    r.close()
