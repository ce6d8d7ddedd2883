"""A cadence profile change as an event (`CadenceProfileChanged` on `municipality-{m}`).

Given child events and profile change events, in any order and batching, When the projection
applies them, Then its tables are those of the in-order arrival; a change is recorded once per
event; a replay (plain, deferred, parallel, the command line) makes the same tables; `PUT /profiles`
appends exactly one event to the shared log (with its outbox row on Kafka) and applies it at once.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from services.followup.__main__ import main
from services.followup.app import create_app, create_tables
from services.followup.config import Settings
from services.followup.profiles import InForce, append_profile_change, event_store_for
from services.followup.projection import FollowupProjection, record_profile_change
from services.followup.tables import fu_events, fu_profiles
from shared.casework.cadence import CadenceProfile, ProfileChange
from shared.casework.calendar import Period
from shared.db import make_engine
from shared.events.catalogue import CadenceProfileChanged, stream_id_for_municipality
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events as log_events
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.schema import outbox
from shared.eventstore.store import EventStore, row_to_envelope
from shared.messaging.runner import ProjectionWorker, replay
from tests.followup.followup_factory import local
from tests.followup.scenarios import all_streams
from tests.followup.test_followup_projection import apply_in_batches, new_engine, snapshot

TIGHT = CadenceProfile(
    placement_first_year=Period(4, "weeks"),
    non_placement_first=Period(2, "weeks"),
    non_placement_then=Period(1, "months"),
)
TIGHTER = CadenceProfile(
    placement_first_year=Period(3, "weeks"),
    non_placement_first=Period(1, "weeks"),
    non_placement_then=Period(2, "weeks"),
    child_conversation_days=2,
)


def change(municipality: str, version: int, when: str, profile: CadenceProfile, target: int) -> EventEnvelope:
    at = local(when)
    return EventEnvelope(
        event_id=f"profile-{municipality}-{version}",
        stream_id=stream_id_for_municipality(municipality),
        version=version,
        municipality=municipality,
        record_id=f"profile-{municipality}-{version}",
        occurred_at=at,
        recorded_at=at,
        correlation_id=f"corr-profile-{version}",
        payload=CadenceProfileChanged(profile=profile.to_json(), caseload_target=target, changed_by="chef-x"),
    )


def profile_events() -> list[EventEnvelope]:
    """Changes before every child's events, amid them, and of another municipality."""
    return [
        change("657", 1, "2026-08-01 00:00", TIGHT, 20),
        change("657", 2, "2026-11-12 00:00", TIGHTER, 10),
        change("167", 1, "2026-08-01 00:00", TIGHTER, 15),
    ]


def child_events() -> list[EventEnvelope]:
    return [env for s in all_streams() for env in s.events]


def profiles_of(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(fu_profiles).order_by(fu_profiles.c.municipality, fu_profiles.c.changed_at)
        )
        return [tuple(v for k, v in row._mapping.items() if k != "id") for row in rows]


def state(engine: Engine) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    return snapshot(engine), profiles_of(engine)


@pytest.fixture(scope="module")
def in_order(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The reference: every profile change first, then the children's events, one batch each."""
    engine = new_engine(tmp_path_factory.mktemp("in-order"))
    apply_in_batches(engine, FollowupProjection(), [profile_events(), child_events()])
    return state(engine)


# --------------------------------------------------------------------------- Given / When / Then


def test_the_changes_matter(tmp_path: Path, in_order: tuple[dict[str, Any], list[Any]]) -> None:
    engine = new_engine(tmp_path)
    apply_in_batches(engine, FollowupProjection(), [child_events()])
    assert snapshot(engine)["deadlines"] != in_order[0]["deadlines"]  # else the tests below prove nothing
    assert [row[4] for row in in_order[1]] == [15, 20, 10]  # caseload targets, by municipality and time
    assert all(row[5] is not None for row in in_order[1])  # each from its event
    with engine.connect() as conn:  # never stored as a child's event
        assert conn.execute(select(func.count()).select_from(fu_events)).scalar_one() == len(child_events())


def test_a_change_arriving_after_the_children_gives_the_in_order_tables(
    tmp_path: Path, in_order: tuple[dict[str, Any], list[Any]]
) -> None:
    engine = new_engine(tmp_path)
    # Given the children's events (a Kafka partition ahead, a late backfill of old records) ...
    apply_in_batches(engine, FollowupProjection(), [child_events()])
    # When the profile changes arrive afterwards, one at a time ...
    apply_in_batches(engine, FollowupProjection(), [[e] for e in reversed(profile_events())])
    # Then the tables are those of in-order arrival
    assert state(engine) == in_order


def test_a_change_in_the_same_batch_as_the_children(
    tmp_path: Path, in_order: tuple[dict[str, Any], list[Any]]
) -> None:
    engine = new_engine(tmp_path)
    apply_in_batches(engine, FollowupProjection(), [child_events() + profile_events()])
    assert state(engine) == in_order


def test_a_change_is_recorded_once_however_often_it_comes(
    tmp_path: Path, in_order: tuple[dict[str, Any], list[Any]]
) -> None:
    engine = new_engine(tmp_path)
    events = profile_events()
    apply_in_batches(engine, FollowupProjection(), [events, child_events(), events, events + events])
    assert state(engine) == in_order


def test_deferred_apply_then_flush(tmp_path: Path, in_order: tuple[dict[str, Any], list[Any]]) -> None:
    engine = new_engine(tmp_path)
    deferred = FollowupProjection(deferred=True)
    events = child_events()
    apply_in_batches(engine, deferred, [events[:10], profile_events()[1:], events[10:], profile_events()[:1]])
    deferred.flush(engine)
    assert state(engine) == in_order


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    deferred=st.booleans(),
)
def test_any_order_and_batching_gives_the_in_order_tables(
    in_order: tuple[dict[str, Any], list[Any]], seed: int, sizes: list[int], deferred: bool
) -> None:
    events = child_events() + profile_events()
    random.Random(seed).shuffle(events)
    batches: list[list[EventEnvelope]] = []
    i = k = 0
    while i < len(events):
        size = sizes[k % len(sizes)]
        batches.append(events[i : i + size])
        i, k = i + size, k + 1
    with tempfile.TemporaryDirectory() as tmp:
        engine = new_engine(Path(tmp))
        projection = FollowupProjection(deferred=deferred)
        apply_in_batches(engine, projection, batches)
        if deferred:
            projection.flush(engine)
        assert state(engine) == in_order
        engine.dispose()


def test_a_rebuild_page_with_a_change_in_it_equals_apply(
    tmp_path: Path, in_order: tuple[dict[str, Any], list[Any]]
) -> None:
    """The runner hands `rebuild_children` child streams only; handed a change all the same, the
    projection applies it after the page's children (re-deriving those it changes)."""
    for deferred in (False, True):
        engine = new_engine(tmp_path, f"rebuild-{deferred}.db")
        projection = FollowupProjection(deferred=deferred)
        pages = [s.events for s in all_streams()] + [[e] for e in profile_events()]
        random.Random(5).shuffle(pages)
        for prepared in (False, True):
            with engine.begin() as conn:
                projection.reset(conn)
            work: Any = projection.prepare_children(engine, pages) if prepared else pages
            with engine.begin() as conn:
                projection.rebuild_children(conn, work)
            projection.flush(engine)
            assert state(engine) == in_order, (deferred, prepared)


def test_reset_keeps_changes_made_before_they_were_events(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    legacy = ProfileChange("657", local("2026-07-01 00:00"), "chef-old", TIGHTER, 30)
    with engine.begin() as conn:
        record_profile_change(conn, legacy)  # an older version's row: no event id
    apply_in_batches(engine, FollowupProjection(), [child_events(), profile_events()])
    with engine.begin() as conn:
        FollowupProjection().reset(conn)
    assert [(r[0], r[2], r[4], r[5]) for r in profiles_of(engine)] == [("657", "chef-old", 30, None)]


# --------------------------------------------------------------------------- replay from the log


def append_all(store_engine: Engine, events: list[EventEnvelope]) -> list[EventEnvelope]:
    store = EventStore()
    stored = []
    for env in events:
        with store_engine.begin() as conn:
            stored += store.append(conn, [env], expected_version=env.version - 1, content_hash=env.event_id)
    return stored


def test_replays_from_the_log_give_the_live_tables(tmp_path: Path) -> None:
    """The changes are in the log before, amid and after the children's events; the live worker
    takes them in log order (after some children), a bulk replay first."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store_engine = make_engine(store_url)
    store_metadata.create_all(store_engine)
    children, changes = child_events(), profile_events()
    stored = append_all(store_engine, [changes[2], *children[:15], changes[1], *children[15:], changes[0]])
    settings = Settings(
        transport="sql", event_store_url=store_url, database_url=f"sqlite:///{tmp_path / 'fu.db'}",
        run_worker=False, replay_workers=1,
    )  # fmt: skip
    worker = ProjectionWorker(FollowupProjection(settings), settings, store_engine=store_engine, batch_size=7)
    worker.ensure_schema()
    assert worker.drain() == len(stored)
    live = state(worker.engine)
    worker.stop()

    reference = new_engine(tmp_path, "reference.db")
    apply_in_batches(reference, FollowupProjection(), [profile_events(), child_events()])
    assert live[0]["deadlines"] == snapshot(reference)["deadlines"] and live[1] == profiles_of(reference)

    assert replay(FollowupProjection(settings), settings) == len(stored)
    assert state(worker.engine) == live
    assert replay(FollowupProjection(settings), settings, workers=2) == len(stored)
    assert state(worker.engine) == live
    assert main(["replay"], settings) == 0  # deferred, then flush
    assert state(worker.engine) == live
    store_engine.dispose()


# --------------------------------------------------------------------------- PUT /profiles

SECRET = "followup-profile-event-test-secret"


def chef(sub: str = "chef-hansen", municipality: str = "657") -> dict[str, str]:
    body = {
        "sub": sub,
        "role": "chef",
        "municipality": municipality,
        "exp": datetime.now(UTC) + timedelta(hours=24),
    }
    return {"Authorization": "Bearer " + jwt.encode(body, SECRET, algorithm="HS256")}


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'followup.db'}",
        event_store_url=f"sqlite:///{tmp_path / 'store.db'}",
        run_worker=False,
        auth_jwt_secret=SECRET,
        replay_workers=1,
    )


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    app = create_app(app_settings)
    create_tables(app.state.engine)
    store_metadata.create_all(app.state.store_engine)
    append_all(app.state.store_engine, child_events())
    with TestClient(app) as c:
        yield c


def log_of(engine: Engine) -> list[EventEnvelope]:
    with engine.connect() as conn:
        return [row_to_envelope(r) for r in conn.execute(select(log_events).order_by(log_events.c.position))]


def test_put_appends_one_event_and_applies_it_at_once(client: TestClient, app_settings: Settings) -> None:
    app: Any = client.app
    worker = ProjectionWorker(FollowupProjection(app_settings), app_settings, engine=app.state.engine)
    assert worker.drain() == len(child_events())

    r = client.put("/profiles/657", json={"caseload_target": 12}, headers=chef())
    assert r.status_code == 200, r.text
    r = client.put(
        "/profiles/657",
        json={"profile": {"non_placement_then": {"amount": 2, "unit": "weeks"}}},
        headers=chef(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["caseload_target"] == 12 and r.json()["profile"]["non_placement_then"]["amount"] == 2

    changes = [e for e in log_of(app.state.store_engine) if e.stream_id == "municipality-657"]
    assert [e.version for e in changes] == [1, 2] and all(e.type == "CadenceProfileChanged" for e in changes)
    first, second = (e.payload for e in changes)
    assert isinstance(first, CadenceProfileChanged) and isinstance(second, CadenceProfileChanged)
    # the whole profile and target each time: the second keeps the first's target
    assert first.profile == CadenceProfile().to_json() and first.caseload_target == 12
    assert second.profile["non_placement_then"] == {"amount": 2, "unit": "weeks"}
    assert second.profile["placement_first"] == {"amount": 2, "unit": "weeks"}
    assert second.caseload_target == 12 and second.changed_by == "chef-hansen"
    assert all(e.municipality == "657" and e.record_id.startswith("profile-") for e in changes)

    # applied at once: the GET shows it, and the worker meeting the events later changes nothing
    doc = client.get("/profiles/657", headers=chef()).json()
    assert [h["caseload_target"] for h in doc["history"]] == [12, 12]
    applied = state(app.state.engine)
    assert worker.drain() == 2
    assert state(app.state.engine) == applied
    assert [row[5] for row in applied[1]] == [e.event_id for e in changes]
    worker.stop()

    # a fresh follow-up database learns the changes from the log
    fresh = app_settings.model_copy(
        update={"database_url": app_settings.database_url.replace("followup", "fresh")}
    )
    fresh_engine = make_engine(fresh.own_database_url)
    create_tables(fresh_engine)
    assert replay(FollowupProjection(fresh), fresh) == len(child_events()) + 2
    fresh_state = state(fresh_engine)
    assert fresh_state[1] == applied[1]
    assert {k: v for k, v in fresh_state[0].items() if k != "events"} == {
        k: v for k, v in applied[0].items() if k != "events"
    }


def test_a_bad_change_writes_nothing(client: TestClient) -> None:
    app: Any = client.app
    before = len(log_of(app.state.store_engine))
    r = client.put(
        "/profiles/657", json={"profile": {"placement_first": {"amount": 1, "unit": "x"}}}, headers=chef()
    )
    assert r.status_code == 422
    assert len(log_of(app.state.store_engine)) == before


def test_on_kafka_the_outbox_row_is_written_with_the_event(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store_metadata.create_all(engine)
    stored = append_profile_change(
        engine,
        event_store_for("kafka", "events-topic"),
        "657",
        "chef-x",
        lambda current: InForce(TIGHT, 21),
        lambda at: InForce(CadenceProfile(), 25),
    )
    with engine.connect() as conn:
        rows = conn.execute(select(outbox)).all()
    assert len(rows) == 1
    assert (rows[0].topic, rows[0].key, rows[0].position) == (
        "events-topic",
        "municipality-657",
        stored.position,
    )
    wire = json.loads(rows[0].payload)
    assert wire["event_id"] == stored.event_id and wire["type"] == "CadenceProfileChanged"
    assert wire["data"] == {"profile": TIGHT.to_json(), "caseload_target": 21, "changed_by": "chef-x"}
    assert EventEnvelope.from_bytes(bytes(rows[0].payload)).payload == stored.payload
    # the SQL transport writes no outbox row
    append_profile_change(
        engine,
        event_store_for("sql", "events-topic"),
        "167",
        "chef-y",
        lambda current: current,
        lambda at: InForce(TIGHT, 9),
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1


@pytest.mark.postgres
def test_a_concurrent_change_is_retried_on_top_of_it(fresh_pg_url: str) -> None:
    """The change reads version N, another writer commits N+1 meanwhile: the append loses, reads
    again and completes the change from the winner's profile (a real concurrent transaction)."""
    engine = make_engine(fresh_pg_url)
    store_metadata.create_all(engine)
    other = make_engine(fresh_pg_url)
    store = EventStore()
    calls: list[InForce] = []

    def complete(current: InForce) -> InForce:
        calls.append(current)
        if len(calls) == 1:  # a competitor commits its change between our read and our append
            append_profile_change(
                other, store, "657", "chef-b", lambda c: InForce(TIGHTER, 7), lambda at: current
            )
        return InForce(current.profile, 11)

    stored = append_profile_change(engine, store, "657", "chef-a", complete, lambda at: InForce(TIGHT, 25))
    assert stored.version == 2
    assert calls == [InForce(TIGHT, 25), InForce(TIGHTER, 7)]  # the retry starts from the winner's
    changes = [e for e in log_of(engine) if e.stream_id == "municipality-657"]
    assert [(e.version, e.payload.changed_by) for e in changes] == [(1, "chef-b"), (2, "chef-a")]  # type: ignore[attr-defined]
    assert changes[1].payload.profile == TIGHTER.to_json()  # type: ignore[attr-defined]
    other.dispose()
    engine.dispose()


# --------------------------------------------------------------------------- publish-profiles


def test_publish_profiles_puts_earlier_changes_into_the_log_once(tmp_path: Path) -> None:
    """Given a change an older version recorded in follow-up only (no event id) and children in the
    log, when `publish-profiles` runs, then the log holds it once as a `CadenceProfileChanged` in
    force from its own moment, the row carries that event's id, the worker meeting it changes
    nothing, a second run publishes nothing, and a replay from the log alone gives the same tables."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store_engine = make_engine(store_url)
    store_metadata.create_all(store_engine)
    append_all(store_engine, child_events())
    settings = Settings(
        transport="sql", event_store_url=store_url, database_url=f"sqlite:///{tmp_path / 'fu.db'}",
        run_worker=False, replay_workers=1,
    )  # fmt: skip
    worker = ProjectionWorker(FollowupProjection(settings), settings, store_engine=store_engine)
    worker.ensure_schema()
    at = local("2026-08-01 00:00")
    with worker.engine.begin() as conn:
        record_profile_change(conn, ProfileChange("657", at, "chef-old", TIGHTER, 9))
        FollowupProjection(settings).reproject_since(conn, "657", at)
    assert worker.drain() == len(child_events())
    before = state(worker.engine)
    assert before[1][0][-1] is None  # no event id yet

    assert main(["publish-profiles"], settings) == 0
    published = [e for e in log_of(store_engine) if e.type == "CadenceProfileChanged"]
    assert len(published) == 1
    env = published[0]
    assert (env.stream_id, env.version, env.municipality) == ("municipality-657", 1, "657")
    assert env.occurred_at == at
    assert isinstance(env.payload, CadenceProfileChanged)
    assert (env.payload.profile, env.payload.caseload_target, env.payload.changed_by) == (
        TIGHTER.to_json(), 9, "chef-old",
    )  # fmt: skip
    after = state(worker.engine)
    assert after[1][0][-1] == env.event_id and after[0] == before[0]

    assert worker.drain() == 1  # the worker meets the event: already applied
    assert state(worker.engine) == after
    assert main(["publish-profiles"], settings) == 0  # nothing left to publish
    assert [e.event_id for e in log_of(store_engine) if e.type == "CadenceProfileChanged"] == [env.event_id]
    worker.stop()

    assert replay(FollowupProjection(settings), settings) == len(child_events()) + 1
    assert state(worker.engine) == after  # the row now comes back from the log
    store_engine.dispose()
