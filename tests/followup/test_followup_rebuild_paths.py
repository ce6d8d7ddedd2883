"""The bulk rebuild's fast paths give what the plain ones give.

- `_rows_of` writes each case's columns as `case_view` has them, each deadline's `doc` as
  `deadline_doc` and `settled` as the moment-dependent members of `deadline_view` (checked here
  against those functions, for the scenario children and for generated ones);
- `event_rows` builds `fu_events` rows from the log's own texts equal to `_event_row` of the
  envelopes (and falls back to it for a row it cannot vouch for);
- a deferred replay drops the derived tables' secondary indexes and `flush` (or the next ordinary
  `apply`) builds them again: the schema is then the declared one, the tables the same.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, MetaData, select

from services.followup import projection as P
from services.followup.bulkwrite import instant_encoder, sqlite_text
from services.followup.config import Settings
from services.followup.projection import REBUILDING, FollowupProjection
from services.followup.queries import deadline_doc
from services.followup.tables import REBUILD_INDEXES, fu_dirty, metadata
from shared.casework.cadence import default_lookup
from shared.casework.child import project_child
from shared.casework.model import ChildPicture
from shared.casework.views import case_view, deadline_view, iso
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events as log_events
from shared.eventstore.schema import metadata as store_metadata
from shared.eventstore.store import EventStore, row_to_envelope
from shared.migrations import migrate_service
from tests.followup.followup_factory import Stream
from tests.followup.scenarios import all_streams
from tests.followup.test_followup_order_property import child_events, lookup
from tests.followup.test_followup_projection import apply_in_batches, new_engine, snapshot

# --------------------------------------------------------------------------- derived rows


def odd_child() -> Stream:
    """Names with characters JSON must escape, a case without a caseworker, an unattributed
    underretning and a caseworker change."""
    s = Stream(municipality="657", child_id='c-"Ærø"\\\u2028')
    s.received("2026-10-20 09:00", 'UR-"1"', notifier="3", reasons=("overgreb_andre",), team_id="nørd\t1")
    s.received("2026-10-21 09:00", "UR-2", notifier="8", reasons=("barn_adfaerd",), team_id="syd")
    s.opened("2026-10-22 10:00", "S-ø", team_id="nørd\t1", uid='UR-"1"')
    s.assigned("2026-10-23 10:05", 'sr-"c"\u00e6', case_id="S-ø")
    s.assigned("2026-11-25 10:05", "sr-anna", case_id="S-ø")
    s.measure("2026-10-24 09:00", "I-ø", "plejefamilie", case_id="S-ø")
    s.opened("2026-10-25 10:00", "S-none", team_id="syd")
    return s


def rows_of(picture: ChildPicture) -> P.DerivedRows:
    rows = P.DerivedRows([], [], [])
    P._rows_of(picture, instant_encoder(make_engine("sqlite://").dialect, memo=True), *vars_of(rows))
    return rows


def vars_of(rows: P.DerivedRows) -> tuple[list[Any], list[Any], list[Any]]:
    return rows.cases, rows.deadlines, rows.assignments


def text(at: datetime | None) -> str | None:
    return None if at is None else sqlite_text(at)


def assert_rows_match_the_views(picture: ChildPicture) -> None:
    rows = rows_of(picture)
    assert len(rows.cases) == len(picture.cases)
    for row in rows.cases:
        case = dict(zip(P.CASE_COLUMNS, row, strict=True))
        view = case_view(picture, case["case_id"])
        for member in ("municipality", "child_id", "team_id", "caseworker_id", "status"):
            assert case[member] == view[member], member
        assert case["caseworker_changes"] == view["caseworker_changes"]
        assert case["stream_id"] == picture.stream_id
        held = picture.cases[case["case_id"]]
        assert (case["opened_at"], case["closed_at"]) == (text(held.opened_at), text(held.closed_at))
        assert (iso(held.opened_at), iso(held.closed_at)) == (view["opened_at"], view["closed_at"])
        assert case["phase"] == picture.final_phase(case["case_id"]) == view["phase"]
    assert len(rows.deadlines) == len(picture.deadlines)
    for row, d in zip(rows.deadlines, picture.deadlines, strict=True):
        got = dict(zip(P.DEADLINE_COLUMNS, row, strict=True))
        holder = picture.cases.get(d.case_id) if d.case_id is not None else None
        last = holder.assignments[-1] if holder is not None and holder.assignments else None
        assert got["caseworker_id"] == (last.caseworker_id if last else None)
        assert got["caseworker_since"] == (text(last.assigned_at) if last else None)
        assert (got["starts_at"], got["due"], got["met_at"], got["ended_at"]) == tuple(
            map(text, (d.starts_at, d.due, d.met_at, d.ended_at))
        )
        assert got["doc"] == deadline_doc(
            d.deadline, d.case_id, d.underretning_id, d.measure_id, d.child_id, d.seq,
            iso(d.starts_at), iso(d.due), d.team_id,
        )  # fmt: skip
        # `settled`: the members of the worklist document that depend on the moment, once all
        # of it has happened: those of deadline_view with everything known and the last caseworker
        view = deadline_view(d, None, got["caseworker_id"])
        expected = {k: view[k] for k in ("met_at", "ended_at", "caseworker_id")}
        assert json.loads("{" + got["settled"][1:] + "}") == expected
        assert list(json.loads("{" + got["settled"][1:] + "}")) == ["met_at", "ended_at", "caseworker_id"]


def test_derived_rows_of_the_scenarios_match_the_views() -> None:
    for s in [*all_streams(), odd_child()]:
        assert_rows_match_the_views(project_child(s.events, default_lookup))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=child_events())
def test_derived_rows_of_any_child_match_the_views(events: list[EventEnvelope]) -> None:
    assert_rows_match_the_views(project_child(events, lookup))


# --------------------------------------------------------------------------- event bodies from log rows

COLUMNS = (
    "data", "position", "event_id", "stream_id", "version", "type", "schema_version", "municipality",
    "record_id", "occurred_at", "recorded_at", "correlation_id",
)  # fmt: skip
"""A log row's columns in an order of this test's own (the runner says its order in LOG_COLUMNS)."""


def logged(tmp_path: Path, streams: list[Stream]) -> list[tuple[list[EventEnvelope], list[tuple[Any, ...]]]]:
    """The streams appended to an event store, read back per child: envelopes and log rows."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store_metadata.create_all(engine)
    store = EventStore()
    with engine.begin() as conn:
        for s in streams:
            store.append(conn, s.events, expected_version=0, content_hash=s.stream_id)
    out: dict[str, tuple[list[EventEnvelope], list[tuple[Any, ...]]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(log_events).order_by(log_events.c.stream_id, log_events.c.version)):
            envs, rows = out.setdefault(row.stream_id, ([], []))
            envs.append(row_to_envelope(row))
            rows.append(tuple(row._mapping[c] for c in COLUMNS))
    engine.dispose()
    return list(out.values())


def odd_events_child() -> Stream:
    s = odd_child()
    first = s.events[0]
    s.events[0] = replace(  # another offset, microseconds, characters to escape in every text
        first,
        occurred_at=first.occurred_at.astimezone(timezone(timedelta(hours=-3, minutes=-30))).replace(
            microsecond=123456
        ),
        record_id="rec-Ærø\n1",
        correlation_id='corr-"x"',
    )
    s.events[1] = replace(s.events[1], occurred_at=s.events[1].occurred_at.astimezone(UTC))
    return s


def test_event_rows_from_the_log_are_the_envelopes_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(P, "_LOG", P._log_positions(COLUMNS))
    instant = instant_encoder(make_engine("sqlite://").dialect)
    children = logged(tmp_path, [*all_streams(), odd_events_child()])
    assert sum(len(envs) for envs, _ in children) > 30
    used = 0
    for envs, rows in children:
        expected = [P._event_row(env, instant) for env in envs]
        assert P.event_rows(envs, rows, instant) == expected
        assert P.event_rows(envs, None, instant) == expected
        for env, row in zip(envs, rows, strict=True):  # the log's texts are the envelope's
            used += row[COLUMNS.index("occurred_at")] == env.occurred_at.isoformat()
        # rows it cannot vouch for: another schema version, an instant not in isoformat's form
        i = COLUMNS.index("schema_version")
        old = [(*r[:i], 0, *r[i + 1 :]) for r in rows]
        assert P.event_rows(envs, old, instant) == expected
        j = COLUMNS.index("occurred_at")
        odd = [(*r[:j], r[j].replace("T", " "), *r[j + 1 :]) for r in rows]
        assert P.event_rows(envs, odd, instant) == expected
    assert used == sum(len(envs) for envs, _ in children)


def test_canonical_instants() -> None:
    at = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=1)))
    assert P._canonical_instant(at.isoformat())
    assert P._canonical_instant(at.replace(microsecond=5).isoformat())
    assert P._canonical_instant(at.astimezone(UTC).isoformat())
    for odd in (
        "2026-03-29T01:30:00.000000+01:00",  # isoformat leaves a zero fraction out
        "2026-03-29 01:30:00+01:00",
        "2026-03-29T01:30:00Z",
        "2026-03-29T01:30:00-00:00",
        "2026-03-29T01:30+01:00",
        "2026-03-29T01:30:00.123+01:00",
        "2026-03-29T01:30:00+01:00:30",
    ):
        assert not P._canonical_instant(odd), odd


def test_bulk_rebuild_with_log_rows_equals_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`prepare_children` + `rebuild_children` with the log rows give the tables `apply` gives."""
    monkeypatch.setattr(P, "_LOG", P._log_positions(COLUMNS))
    children = logged(tmp_path, [*all_streams(), odd_events_child()])
    direct = new_engine(tmp_path, "direct.db")
    apply_in_batches(direct, FollowupProjection(), [[e for envs, _ in children for e in envs]])
    bulk = new_engine(tmp_path, "bulk.db")
    projection = FollowupProjection(deferred=True)
    prepared = projection.prepare_children(
        bulk, [envs for envs, _ in children], log_rows=[rows for _, rows in children]
    )
    with bulk.begin() as conn:
        projection.rebuild_children(conn, prepared)
    assert snapshot(bulk) == snapshot(direct)


# --------------------------------------------------------------------------- indexes of a rebuild


def indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())


def declared_schema_diffs(engine: Engine) -> list[Any]:
    from shared.audit import audit_metadata
    from shared.messaging.schema import runner_metadata

    combined = MetaData()
    for md in (metadata, audit_metadata, runner_metadata):
        for table in md.tables.values():
            table.to_metadata(combined)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": "alembic_version_followup"}
        )
        return list(compare_metadata(ctx, combined))


def test_a_deferred_replay_rebuilds_its_indexes_at_flush(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fu.db'}"
    migrate_service("followup", url)
    engine = make_engine(url)
    events = [e for s in all_streams() for e in s.events]
    apply_in_batches(engine, FollowupProjection(), [events])
    before = snapshot(engine)
    names = {index.name for index in REBUILD_INDEXES}
    assert names <= indexes(engine) and declared_schema_diffs(engine) == []

    deferred = FollowupProjection(deferred=True)
    with engine.begin() as conn:
        deferred.reset(conn)
        assert list(conn.execute(select(fu_dirty.c.stream_id)).scalars()) == [REBUILDING]
    assert not names & indexes(engine)
    apply_in_batches(engine, deferred, [events[:7], events[7:]])  # the replay's own batches
    assert not names & indexes(engine)
    assert deferred.flush(engine) == len(all_streams())
    assert names <= indexes(engine)
    assert declared_schema_diffs(engine) == []
    assert snapshot(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(fu_dirty)).all() == []


def test_an_interrupted_replay_gets_its_indexes_back_from_the_next_apply(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fu.db'}"
    migrate_service("followup", url)
    engine = make_engine(url)
    events = [e for s in all_streams() for e in s.events]
    apply_in_batches(engine, FollowupProjection(), [events])
    before = snapshot(engine)
    with engine.begin() as conn:
        FollowupProjection(deferred=True).reset(conn)
    apply_in_batches(engine, FollowupProjection(deferred=True), [events[:-1]])  # stops early
    apply_in_batches(engine, FollowupProjection(), [events[-1:]])  # the live worker goes on
    assert {index.name for index in REBUILD_INDEXES} <= indexes(engine)
    assert declared_schema_diffs(engine) == []
    assert snapshot(engine) == before


def test_an_ordinary_reset_keeps_the_indexes(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    with engine.begin() as conn:
        FollowupProjection().reset(conn)
        assert conn.execute(select(fu_dirty)).all() == []
    assert {index.name for index in REBUILD_INDEXES} <= indexes(engine)


def test_the_command_line_replay_ends_with_every_index(tmp_path: Path) -> None:
    from services.followup.__main__ import main

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    own_url = f"sqlite:///{tmp_path / 'followup.db'}"
    store_engine = make_engine(store_url)
    store_metadata.create_all(store_engine)
    with store_engine.begin() as conn:
        for s in all_streams():
            EventStore().append(conn, s.events, expected_version=0, content_hash=s.stream_id)
    migrate_service("followup", own_url)
    settings = Settings(transport="sql", event_store_url=store_url, database_url=own_url, run_worker=False)
    direct = new_engine(tmp_path, "direct.db")
    apply_in_batches(direct, FollowupProjection(settings), [[e for s in all_streams() for e in s.events]])
    assert main(["replay"], settings) == 0
    engine = make_engine(own_url)
    assert declared_schema_diffs(engine) == []

    def derived(snap: dict[str, Any]) -> dict[str, Any]:  # (the stored bodies carry log positions)
        return {k: v for k, v in snap.items() if k != "events"}

    assert derived(snapshot(engine)) == derived(snapshot(direct))
