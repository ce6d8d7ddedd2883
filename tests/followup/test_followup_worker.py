"""The projection driven by the real consumer runner over the SQL event log: backfill order, replay."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.followup.__main__ import main
from services.followup.config import Settings
from services.followup.projection import FollowupProjection
from shared.db import make_engine
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import EventStore
from shared.messaging.runner import ProjectionWorker, replay
from tests.followup.scenarios import all_streams
from tests.followup.test_followup_projection import apply_in_batches, new_engine, snapshot


def without_bodies(snap: dict[str, Any]) -> dict[str, Any]:
    """The stored event bodies carry each transport's position; the derived tables must not differ."""
    return {k: v for k, v in snap.items() if k != "events"}


def test_runner_backfill_and_replay_match_direct_projection(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    own_url = f"sqlite:///{tmp_path / 'followup.db'}"
    store_engine = make_engine(store_url)
    store_metadata.create_all(store_engine)

    # Each child's events reach the log in a scrambled order (a DUBU backfill), children interleaved.
    rng = random.Random(3)
    queues = []
    for s in all_streams():
        events = s.events[:]
        rng.shuffle(events)
        queues.append([replace(e, version=i + 1) for i, e in enumerate(events)])
    store = EventStore()
    appended = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        env = q.pop(0)
        with store_engine.begin() as conn:
            appended += store.append(conn, [env], expected_version=env.version - 1, content_hash=env.event_id)

    settings = Settings(transport="sql", event_store_url=store_url, database_url=own_url, run_worker=False)
    worker = ProjectionWorker(FollowupProjection(settings), settings, store_engine=store_engine, batch_size=4)
    worker.ensure_schema()
    assert worker.drain() == len(appended)
    driven = snapshot(worker.engine)

    direct = new_engine(tmp_path, "direct.db")
    apply_in_batches(direct, FollowupProjection(settings), [[e.with_position(0) for e in appended]])
    assert without_bodies(driven) == without_bodies(snapshot(direct))

    assert replay(FollowupProjection(settings), settings) == len(appended)
    assert snapshot(worker.engine) == driven
    worker.stop()

    # the command line's replay: deferred, then every child derived once
    assert main(["replay"], settings) == 0
    assert snapshot(worker.engine) == driven
