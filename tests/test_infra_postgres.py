"""The real PostgreSQL started by deploy/postgres/pg.sh: SQL round trips, one empty database per test,
and committed rows surviving a SIGKILL of the server."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, inspect, select, text
from sqlalchemy.engine import make_url

from shared.db import make_engine
from tests.infra import InfraError, PostgresServer, port_is_open

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", String(200), nullable=False),
)


def test_pg_url_points_at_the_underretning_database_on_loopback(pg_url: str) -> None:
    url = make_url(pg_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "127.0.0.1"
    assert url.username == "postgres"
    assert url.database == "underretning"
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar_one() == "underretning"
            assert conn.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            assert int(conn.execute(text("SHOW server_version_num")).scalar_one()) >= 150000
    finally:
        engine.dispose()


def test_sql_round_trip_in_a_fresh_database(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url)
    try:
        assert inspect(engine).get_table_names() == []
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(notes), [{"id": i, "body": f"note æøå {i}"} for i in range(1, 51)])
        with engine.connect() as conn:
            rows = conn.execute(select(notes.c.id, notes.c.body).order_by(notes.c.id)).all()
        assert [tuple(r) for r in rows] == [(i, f"note æøå {i}") for i in range(1, 51)]
        # a rolled-back transaction leaves nothing behind
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(insert(notes).values(id=99, body="gone"))
            raise RuntimeError("roll back")
        with engine.connect() as conn:
            assert conn.execute(select(notes.c.id).where(notes.c.id == 99)).first() is None
    finally:
        engine.dispose()


def test_each_test_gets_its_own_empty_database(fresh_pg_url: str, pg_url: str) -> None:
    assert make_url(fresh_pg_url).database != "underretning"
    assert make_url(fresh_pg_url).port == make_url(pg_url).port
    engine = make_engine(fresh_pg_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_committed_rows_survive_sigkill_of_the_server(
    postgres_server: PostgresServer, fresh_pg_url: str
) -> None:
    engine = make_engine(fresh_pg_url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(notes), [{"id": i, "body": f"row {i}"} for i in range(1, 101)])
    finally:
        engine.dispose()
    old_pid = postgres_server.pid

    postgres_server.kill()
    assert not postgres_server.is_running()
    assert not port_is_open(postgres_server.port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_server.conninfo(), connect_timeout=2).close()

    postgres_server.restart()
    assert postgres_server.pid != old_pid
    engine = make_engine(fresh_pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(notes.c.id).order_by(notes.c.id)).scalars().all() == list(
                range(1, 101)
            )
        with engine.begin() as conn:  # and it takes writes again
            conn.execute(insert(notes).values(id=101, body="after restart"))
    finally:
        engine.dispose()


def test_starting_on_a_port_in_use_fails_loudly(postgres_server: PostgresServer) -> None:
    with pytest.raises(InfraError, match="already in use"):
        PostgresServer.start(port=postgres_server.port)
