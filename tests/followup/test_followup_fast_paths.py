"""The follow-up service's fast paths give what the plain ones give: the stored event row, the raw
bulk INSERTs, the SQL state filter, and the worklist rendered as JSON text (with the stored `doc`
and `caseworker_since`, and without them on rows derived before those columns existed)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)

from services.followup.app import create_app, create_tables
from services.followup.bulkwrite import insert_many, instant_encoder, sqlite_instant
from services.followup.config import Settings
from services.followup.projection import _EVENTS_OF, EVENT_COLUMNS, FollowupProjection, _event_row
from services.followup.queries import (
    WorklistJson,
    _state_condition,
    states_condition,
    worklist,
    worklist_json,
    worklist_json_rendered,
)
from services.followup.tables import fu_deadlines
from shared.casework.deadlines import STATES
from shared.casework.views import deadline_view
from shared.db import make_engine
from shared.events.catalogue import UnderretningReceived
from shared.events.envelope import EventEnvelope
from shared.eventstore.store import log_row_to_envelope
from tests.followup.followup_factory import Stream, local
from tests.followup.scenarios import all_streams

MOMENTS = ["2026-10-06 12:00", "2026-11-03 08:00", "2026-11-18 12:00", "2026-12-11 12:00", "2027-06-01 00:00"]


def late_child() -> Stream:
    """Late work (met_late), caseworker changes on a case, names with characters to escape."""
    s = Stream(municipality="657", child_id='c-"Ærø"')
    s.received("2026-10-20 09:00", "UR-5001", notifier="3", reasons=("barn_adfaerd",), team_id="nord")
    s.assessed("2026-10-23 09:00", "UR-5001")
    s.receipt("2026-11-10 09:00", "UR-5001")
    s.opened("2026-10-23 10:00", "S-5001", team_id="nord", uid="UR-5001")
    s.assigned("2026-10-23 10:05", "sr-carl", case_id="S-5001")
    s.assigned("2026-11-02 10:05", 'sr-"Ø\\x"\u2028\x01', case_id="S-5001")
    s.assigned("2026-11-25 10:05", "sr-anna", case_id="S-5001")
    return s


def every_event() -> list[EventEnvelope]:
    return [env for s in [*all_streams(), late_child()] for env in s.events]


def filled(url: str) -> Engine:
    engine = make_engine(url)
    FollowupProjection.metadata.create_all(engine)
    with engine.begin() as conn:
        FollowupProjection().apply(conn, every_event())
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fu.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    e = filled(url)
    yield e
    e.dispose()


# --------------------------------------------------------------------------- event row

_AS_LOG_ROW = (  # the fu_events columns of a `LogRow`, in `LOG_COLUMNS` order
    "position", "event_id", "stream_id", "version", "type", "schema_version", "municipality",
    "record_id", "occurred_text", "recorded_text", "correlation_id", "data",
)  # fmt: skip


def test_a_stored_event_row_reads_back_as_the_envelope() -> None:
    events = every_event()
    first = events[0]
    assert isinstance(first.payload, UnderretningReceived)
    odd = replace(
        first,
        event_id='ev-"quoted"\\-æøå',
        record_id="rec-Ærø\n1",
        position=12345,
        occurred_at=first.occurred_at.astimezone(timezone(timedelta(hours=-3, minutes=-30))),
        payload=first.payload.model_copy(update={"team_id": "team 'Ø' \u2028"}),
    )
    for env in [*events, odd]:
        row = dict(zip(EVENT_COLUMNS, _event_row(env, sqlite_instant), strict=True))
        assert row["occurred_text"] == env.occurred_at.isoformat()
        assert row["recorded_text"] == env.recorded_at.isoformat()
        assert row["data"] == env.data_json()
        assert log_row_to_envelope(tuple(row[c] for c in _AS_LOG_ROW)) == env


# --------------------------------------------------------------------------- raw bulk insert

scratch_md = MetaData()
scratch = Table(
    "fu_scratch",
    scratch_md,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
    Column("flag", Boolean),
    Column("at", DateTime(timezone=True)),
)


def test_insert_many_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    scratch_md.create_all(engine)
    values = [
        (1, "a", True, datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC)),
        (2, "Æblegrød \"x\" 'y'", False, datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
        (3, None, None, None),
        (4, "z", True, datetime(2026, 11, 20, 12, 0, tzinfo=timezone(timedelta(hours=1)))),
        (5, "", False, datetime(1999, 1, 1, tzinfo=UTC)),
    ]
    with engine.begin() as conn:
        # the projection hands SQLAlchemy UTC instants; the raw path converts any other offset itself
        conn.execute(
            insert(scratch),
            [{"id": i, "name": n, "flag": f, "at": a and a.astimezone(UTC)} for i, n, f, a in values],
        )
        encode = instant_encoder(conn.dialect)
        insert_many(
            conn, scratch, ("id", "name", "flag", "at"), [(i + 100, n, f, encode(a)) for i, n, f, a in values]
        )
    with engine.connect() as conn:
        # the raw values in the database (the SQLite text of an instant included), and as read back
        raw = conn.exec_driver_sql("SELECT id, name, flag, at FROM fu_scratch ORDER BY id").all()
        typed = conn.execute(select(scratch).order_by(scratch.c.id)).all()
    by_id = {r[0]: tuple(r[1:]) for r in raw}
    typed_by_id = {r[0]: tuple(r[1:]) for r in typed}
    for i, *_ in values:
        assert by_id[i + 100] == by_id[i]
        assert typed_by_id[i + 100] == typed_by_id[i]
    scratch_md.drop_all(engine)


# --------------------------------------------------------------------------- the state filter


def test_states_condition_is_the_union_of_the_single_states(engine: Engine) -> None:
    d = fu_deadlines
    with engine.connect() as conn:
        for text in MOMENTS:
            t = local(text).astimezone(UTC)
            single = {
                s: set(
                    conn.execute(select(d.c.id).where(d.c.starts_at <= t, _state_condition(s, t))).scalars()
                )
                for s in STATES
            }
            assert any(single.values())
            for n in range(len(STATES) + 1):
                for wanted in itertools.combinations(STATES, n):
                    got = set(conn.execute(select(d.c.id).where(states_condition(wanted, t))).scalars())
                    expected: set[int] = set().union(*(single[s] for s in wanted))
                    assert got == expected, (text, wanted)


# --------------------------------------------------------------------------- the worklist as JSON


def reference(conn: Any, t: datetime, **kw: Any) -> list[dict[str, Any]]:
    return [
        {**deadline_view(r.deadline, t, r.caseworker_id), "state": r.state}
        for r in worklist(conn, "657", t, **kw)
    ]


SCOPES: list[dict[str, Any]] = [
    {},
    {"teams": {"syd"}},
    {"teams": {"nord"}},
    {"teams": set()},
    {"caseworker_id": "sr-anna"},
    {"caseworker_id": "sr-bo", "states": ["overdue", "due_soon"]},
    {"states": ["met_on_time", "met_late"]},
    {"states": ["upcoming"]},
]


def assert_worklists_agree(engine: Engine) -> None:
    seen_states: set[str] = set()
    with engine.connect() as conn:
        for text in MOMENTS:
            t = local(text)
            for scope in SCOPES:
                expected = reference(conn, t, **scope)
                found = worklist_json(conn, "657", t, **scope)
                assert [json.loads(item) for item in found.items] == expected, (text, scope)
                assert found.child_ids == [doc["child_id"] for doc in expected]
                # SQLite puts the documents together itself: byte for byte what Python renders
                assert found == worklist_json_rendered(conn, "657", t, **scope), (text, scope)
                seen_states.update(doc["state"] for doc in expected)
    assert seen_states == set(STATES)  # the scenarios reach every state: the comparison means something


def test_worklist_json_matches_the_reference(engine: Engine) -> None:
    assert_worklists_agree(engine)


def test_worklist_json_on_rows_derived_before_doc_existed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(fu_deadlines).values(doc=None, caseworker_since=None, settled=None))
    assert_worklists_agree(engine)


def test_worklist_json_on_rows_derived_before_settled_existed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(fu_deadlines).values(settled=None))
    assert_worklists_agree(engine)


def test_worklist_json_with_more_teams_and_paged(engine: Engine) -> None:
    with engine.connect() as conn:
        for text in MOMENTS:
            t = local(text)
            for kw in (
                {"teams": {"syd", "nord", "modtag"}},
                {"teams": {"nord"}, "caseworker_id": "sr-anna", "limit": 3},
                {"limit": 4, "offset": 2},
                {"offset": 1, "states": ["overdue", "met_late", "upcoming"]},
            ):
                found = worklist_json(conn, "657", t, **kw)  # type: ignore[arg-type]
                assert found == worklist_json_rendered(conn, "657", t, **kw)  # type: ignore[arg-type]


def test_worklist_document_assembly() -> None:
    for items in ([], [b'{"a":1}'], [b'{"a":1}', b'{"b":"\xc3\x86"}'], [b"{}", b"{}", b"{}"]):
        found = WorklistJson(items, [])
        assert found.json_array() == b"[" + b",".join(items) + b"]"
        assert json.loads(found.in_document(b'{"x":', b"}")) == {"x": [json.loads(i) for i in items]}


def test_worklist_holder_in_the_past_is_the_caseworker_then(engine: Engine) -> None:
    # before the last assignment the stored caseworker is not the answer: the history is
    with engine.connect() as conn:
        for text in MOMENTS:
            t = local(text)
            items = [json.loads(i) for i in worklist_json(conn, "657", t).items]
            assert [(i["case_id"], i["caseworker_id"]) for i in items] == [
                (r.deadline.case_id, r.caseworker_id) for r in worklist(conn, "657", t)
            ]


def test_worklist_paging(engine: Engine) -> None:
    t = local("2026-11-18 12:00")
    with engine.connect() as conn:
        everything = worklist_json(conn, "657", t).items
        assert len(everything) >= 5
        pages = [worklist_json(conn, "657", t, limit=2, offset=o).items for o in range(0, len(everything), 2)]
    assert [item for page in pages for item in page] == everything
    assert all(len(page) <= 2 for page in pages)


# --------------------------------------------------------------------------- the endpoint


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'followup.db'}",
        event_store_url=f"sqlite:///{tmp_path / 'store.db'}",
        run_worker=False,
        auth_jwt_secret="fast-path-secret-long-enough-for-hs256",
    )
    app = create_app(settings)
    create_tables(app.state.engine)
    with app.state.engine.begin() as conn:
        app.state.projection.apply(conn, every_event())
    with TestClient(app) as c:
        yield c


def _chef() -> dict[str, str]:
    from shared.mint_token import mint_token

    token = mint_token(
        role="chef",
        municipality="657",
        teams=(),
        caseworker_id=None,
        sub="chef-1",
        secret="fast-path-secret-long-enough-for-hs256",
    )
    return {"Authorization": f"Bearer {token}"}


def test_endpoint_pages_and_defaults_to_everything(client: TestClient) -> None:
    at = "2026-11-18T12:00:00+01:00"
    full = client.get("/deadlines", params={"municipality": "657", "at": at}, headers=_chef())
    assert full.status_code == 200 and full.headers["content-type"] == "application/json"
    doc = full.json()
    assert doc["count"] == len(doc["deadlines"]) >= 5
    with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        assert doc["deadlines"] == reference(conn, local("2026-11-18 12:00"))
    first = client.get(
        "/deadlines", params={"municipality": "657", "at": at, "limit": 3}, headers=_chef()
    ).json()
    rest = client.get(
        "/deadlines", params={"municipality": "657", "at": at, "offset": 3}, headers=_chef()
    ).json()
    assert first["deadlines"] + rest["deadlines"] == doc["deadlines"]
    assert (first["count"], rest["count"]) == (3, doc["count"] - 3)
    bad = client.get("/deadlines", params={"municipality": "657", "offset": -1}, headers=_chef())
    assert bad.status_code == 422


def test_openapi_documents_the_worklist(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/deadlines"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {
        "municipality",
        "team_id",
        "caseworker_id",
        "state",
        "at",
        "limit",
        "offset",
    }
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[1]
    listed = spec["components"]["schemas"][name]
    assert "deadlines" in listed["properties"]
    item = spec["components"]["schemas"]["DeadlineItem"]["properties"]
    for field in (
        "deadline",
        "case_id",
        "underretning_id",
        "measure_id",
        "child_id",
        "due",
        "state",
        "caseworker_id",
        "team_id",
    ):
        assert field in item


# --------------------------------------------------------------------------- the migration


def test_upgrading_marks_derived_children_for_re_deriving(tmp_path: Path) -> None:
    from alembic import command

    from shared.migrations import alembic_config, migrate_service, service_script_location

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = alembic_config(url, service_script_location("followup"), "alembic_version_followup")
    command.upgrade(cfg, "1d0d8268589c")  # the schema before `doc` and `caseworker_since`
    engine = make_engine(url)
    reference_engine = filled(f"sqlite:///{tmp_path / 'new.db'}")
    with reference_engine.connect() as conn:
        old_rows = [
            {k: v for k, v in row._mapping.items() if k not in ("id", "doc", "caseworker_since", "settled")}
            for row in conn.execute(select(fu_deadlines))
        ]
    streams = {row["stream_id"] for row in old_rows}
    with reference_engine.connect() as conn:  # as the code before the columns of the log stored them
        events = [
            {"event_id": env.event_id, "stream_id": env.stream_id, "municipality": env.municipality,
             "occurred_at": sqlite_instant(env.occurred_at), "body": json.dumps(env.to_wire())}
            for env in map(log_row_to_envelope, conn.execute(_EVENTS_OF, {"ids": list(streams)}))
        ]
    with engine.begin() as conn:  # rows as the code before the revision wrote them
        conn.exec_driver_sql("DELETE FROM fu_dirty")
        for row in [*old_rows, *events]:
            table = "fu_events" if "body" in row else "fu_deadlines"
            names = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({names}) VALUES ({marks})",
                tuple(sqlite_value(v) for v in row.values()),
            )
    migrate_service("followup", url)
    with engine.connect() as conn:
        dirty = set(conn.exec_driver_sql("SELECT stream_id FROM fu_dirty").scalars())
        assert dirty == {row["stream_id"] for row in old_rows}
        # before re-deriving, the worklist is rendered from the columns
        t = local("2026-11-18 12:00")
        assert [json.loads(i) for i in worklist_json(conn, "657", t).items] == reference(conn, t)
    with engine.begin() as conn:  # the next ordinary batch re-derives the marked children
        FollowupProjection().apply(conn, every_event()[:1])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM fu_dirty").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM fu_deadlines WHERE doc IS NULL").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM fu_deadlines WHERE settled IS NULL").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM fu_deadlines").scalar() == len(old_rows)
        assert [json.loads(i) for i in worklist_json(conn, "657", t).items] == reference(conn, t)


def sqlite_value(v: Any) -> Any:
    return (
        v.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        if isinstance(v, datetime)
        else v
    )


# --------------------------------------------------------------------------- the WAL checkpointer


def test_requests_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'followup.db'}",
        event_store_url=f"sqlite:///{tmp_path / 'store.db'}",
        run_worker=False,
        auth_jwt_secret="fast-path-secret-long-enough-for-hs256",
    )
    app = create_app(settings)
    create_tables(app.state.engine)
    checkpointer = app.state.checkpointer
    checkpointer.interval = 0.05
    assert not checkpointer.running
    wal = tmp_path / "followup.db-wal"
    before = 0
    with TestClient(app) as client:
        assert checkpointer.running
        with app.state.engine.connect() as conn:  # the service's connections do not checkpoint
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        with app.state.engine.begin() as conn:
            app.state.projection.apply(conn, every_event())
        response = client.get("/deadlines", params={"municipality": "657"}, headers=_chef())
        assert response.status_code == 200 and response.json()["count"] > 5
        before = checkpointer.checkpoints
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < before + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checkpointer.checkpoints >= before + 2
        with app.state.engine.connect() as conn:  # everything in the log is in the database
            busy, log_pages, done = conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
            assert (busy, log_pages) == (0, done)
    assert not checkpointer.running
    assert checkpointer.checkpoints >= before + 3  # and one more when it stopped
    assert not wal.exists() or wal.stat().st_size == 0
