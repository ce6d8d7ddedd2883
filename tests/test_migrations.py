"""Each service's Alembic revisions build exactly the tables its code declares, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, text

from shared.db import make_engine
from shared.migrations import migrate_service, service_at_head

SERVICES = ["intake", "followup", "ledelsesinfo"]


def _declared(service: str) -> list[MetaData]:
    from shared.audit import audit_metadata
    from shared.messaging.schema import runner_metadata

    if service == "intake":
        from services.intake.adapters.tables import intake_metadata
        from shared.eventstore.schema import metadata as eventstore_metadata

        return [eventstore_metadata, intake_metadata, audit_metadata]
    if service == "followup":
        from services.followup.tables import metadata

        return [metadata, audit_metadata, runner_metadata]
    from services.ledelsesinfo.tables import metadata as li_metadata

    return [li_metadata, audit_metadata, runner_metadata]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_reach_head_and_match_the_models(
    service: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/{service}.db"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    engine = make_engine(url)
    assert not service_at_head(service, engine)
    migrate_service(service, url)
    migrate_service(service, url)  # a second run is a no-op
    assert service_at_head(service, engine)
    with engine.connect() as conn:
        opts = {"compare_type": True, "version_table": f"alembic_version_{service}"}
        ctx = MigrationContext.configure(conn, opts=opts)
        combined = MetaData()
        for md in _declared(service):
            for table in md.tables.values():
                table.to_metadata(combined)
        diffs = compare_metadata(ctx, combined)
    engine.dispose()
    assert diffs == []


_BEFORE_CHILD_SETS = {"intake": "7587e57e1660", "followup": "a701889de127", "ledelsesinfo": "0e03ffdc5cf8"}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("service", SERVICES)
def test_audit_rows_become_reads_of_child_sets_and_come_back(
    service: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The old one-row-per-child audit log is carried over: the rows of one request become one read
    of the set of its children, a set shared by two requests is stored once, every reader of a
    child is still found by child, and a downgrade gives the very same rows back."""
    from alembic import command

    from shared.audit import read_audit
    from shared.migrations import alembic_config, service_script_location

    url = (
        f"sqlite:///{tmp_path}/{service}.db"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    cfg = alembic_config(url, service_script_location(service), f"alembic_version_{service}")
    command.upgrade(cfg, _BEFORE_CHILD_SETS[service])
    engine = make_engine(url)
    t1, t2, t3 = "2026-11-02 08:00:00.000001", "2026-11-02 09:30:00.250000", "2026-11-03 10:00:00.000000"
    old = [  # (at, sub, role, municipality, child_id, endpoint, service): three requests
        (t1, "ida", "sagsbehandler", "657", "c2", "GET /deadlines", service),
        (t1, "ida", "sagsbehandler", "657", "c1", "GET /deadlines", service),
        (t2, "ida", "sagsbehandler", "657", "c1", "GET /deadlines", service),
        (t2, "ida", "sagsbehandler", "657", "c2", "GET /deadlines", service),
        (t3, "bo", "teamleder", "657", "c1", "GET /cases/{case_id}", service),
    ]
    cols = "at, sub, role, municipality, child_id, endpoint, service"
    with engine.begin() as conn:
        for row in old:
            conn.execute(
                text(f"INSERT INTO audit_log ({cols}) VALUES (:a, :s, :r, :m, :c, :e, :v)"),
                dict(zip("asrmcev", row, strict=True)),
            )
        before = conn.execute(text(f"SELECT {cols} FROM audit_log ORDER BY id")).all()
    engine.dispose()

    migrate_service(service, url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_reads")).scalar_one() == 3
        assert conn.execute(text("SELECT size FROM audit_child_sets ORDER BY size")).scalars().all() == [1, 2]
        c1 = read_audit(conn, "657", "c1")
        assert [(e["sub"], e["endpoint"]) for e in c1] == [
            ("ida", "GET /deadlines"), ("ida", "GET /deadlines"), ("bo", "GET /cases/{case_id}")
        ]
        assert c1[0]["at"] == "2026-11-02T08:00:00.000001+00:00"
        assert [e["at"] for e in read_audit(conn, "657", "c2")] == [c1[0]["at"], c1[1]["at"]]
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 5  # the view
    engine.dispose()

    command.downgrade(cfg, _BEFORE_CHILD_SETS[service])
    engine = make_engine(url)
    with engine.connect() as conn:
        after = conn.execute(text(f"SELECT {cols} FROM audit_log ORDER BY id")).all()
    engine.dispose()
    assert sorted(after) == sorted(before)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_followup_event_bodies_become_the_log_s_columns_and_come_back(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`fu_events` rows stored as one JSON body are split into the event log's columns, read back as
    the same envelopes, and put together again by a downgrade."""
    import json
    from dataclasses import replace

    from alembic import command

    from services.followup.bulkwrite import instant_encoder
    from services.followup.projection import FollowupProjection
    from shared.events.envelope import EventEnvelope
    from shared.migrations import alembic_config, service_script_location
    from tests.followup.followup_factory import Stream

    url = (
        f"sqlite:///{tmp_path}/followup.db"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    cfg = alembic_config(url, service_script_location("followup"), "alembic_version_followup")
    before_columns = "8f2d4b6a1c93"
    command.upgrade(cfg, before_columns)
    s = Stream(child_id="c-migr")
    s.received("2026-11-02 09:00", "U1")
    s.opened("2026-11-02 16:00", uid="U1")
    envs = [replace(s.events[0], position=41, record_id="rec-Ærø \"1\""), *s.events[1:]]
    engine = make_engine(url)
    instant = instant_encoder(engine.dialect)
    with engine.begin() as conn:
        for i, env in enumerate(envs):  # the old code's bodies, compact or not
            wire = env.to_wire()
            body = json.dumps(wire, separators=(",", ":"), ensure_ascii=False) if i % 2 else json.dumps(wire)
            conn.execute(
                text(
                    "INSERT INTO fu_events (event_id, stream_id, municipality, occurred_at, body) "
                    "VALUES (:e, :s, :m, :o, :b)"
                ),
                {"e": env.event_id, "s": env.stream_id, "m": env.municipality,
                 "o": instant(env.occurred_at), "b": body},
            )
    engine.dispose()

    migrate_service("followup", url)
    engine = make_engine(url)
    with engine.connect() as conn:
        got = FollowupProjection().load_events(conn, [s.stream_id])[s.stream_id]
        assert sorted(got, key=lambda e: e.event_id) == sorted(envs, key=lambda e: e.event_id)
    engine.dispose()

    command.downgrade(cfg, before_columns)
    engine = make_engine(url)
    with engine.connect() as conn:
        bodies = conn.execute(text("SELECT body FROM fu_events")).scalars().all()
    engine.dispose()
    back = [EventEnvelope.from_wire(json.loads(b)) for b in bodies]
    assert sorted(back, key=lambda e: e.event_id) == sorted(envs, key=lambda e: e.event_id)
