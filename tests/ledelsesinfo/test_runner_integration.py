"""The projection driven by the shared consumer runner over the SQL event log, and the CLI commands."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from services.ledelsesinfo.__main__ import load_population, migrate, replay
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.projection import LedelsesinfoProjection
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import EventStore
from shared.messaging.runner import ProjectionWorker
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.test_projection import dump, rich_events


def _append_all(url: str, events: list[EventEnvelope]) -> None:
    engine = make_engine(url)
    store_metadata.create_all(engine)
    store = EventStore()
    by_stream: dict[str, list[EventEnvelope]] = defaultdict(list)
    for e in events:
        by_stream[e.stream_id].append(e)
    with engine.begin() as conn:
        for stream, evs in by_stream.items():
            store.append(conn, sorted(evs, key=lambda e: e.version), expected_version=0, content_hash=stream)
    engine.dispose()


def test_worker_drains_the_sql_log_and_replay_rebuilds(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    own_url = f"sqlite:///{tmp_path / 'own.db'}"
    events = rich_events()
    _append_all(store_url, events)
    settings = Settings(event_store_url=store_url, database_url=own_url, run_worker=False)  # type: ignore[call-arg]
    migrate(settings)
    worker = ProjectionWorker(LedelsesinfoProjection(settings.rules()), settings, batch_size=7)
    worker.ensure_schema()
    assert worker.drain(timeout=60) == len(events)
    worker.stop()

    own = make_engine(own_url)
    reference_engine = make_engine(f"sqlite:///{tmp_path / 'ref.db'}")
    from services.ledelsesinfo import tables

    tables.metadata.create_all(reference_engine)
    Harness(reference_engine).feed(events)
    assert dump(own) == dump(reference_engine)
    assert replay(settings) == len(events)
    assert dump(own) == dump(reference_engine)
    own.dispose()
    reference_engine.dispose()


def test_load_population_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    settings = Settings(event_store_url=url, run_worker=False)  # type: ignore[call-arg]
    migrate(settings)
    csv_file = tmp_path / "pop.csv"
    csv_file.write_text("municipality,year,children\n657,2026,18234\n101,2026,120500\n", encoding="utf-8")
    assert load_population(settings, str(csv_file)) == 2
    from services.ledelsesinfo import store

    engine = make_engine(url)
    with engine.connect() as conn:
        assert store.population_for(conn, "101", 2027) == (2026, 120500)
    engine.dispose()


def test_app_lifespan_runs_the_worker(tmp_path: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from services.ledelsesinfo.app import create_app
    from tests.ledelsesinfo.test_api import SECRET, token

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    own_url = f"sqlite:///{tmp_path / 'own.db'}"
    _append_all(store_url, rich_events())
    settings = Settings(  # type: ignore[call-arg]
        event_store_url=store_url, database_url=own_url, auth_jwt_secret=SECRET, run_worker=True
    )
    migrate(settings)
    app = create_app(settings)
    params = {"municipality": "657", "week": "2026-W47"}
    with TestClient(app) as client:
        assert app.state.worker is not None
        deadline = time.monotonic() + 30
        received = 0
        while time.monotonic() < deadline and received != 2:
            received = client.get("/reports/weekly", params=params, headers=token("chef")).json()["figures"][
                "underretninger_received"
            ]
            time.sleep(0.1)
        assert received == 2
    assert app.state.worker._thread is None  # stopped with the app
