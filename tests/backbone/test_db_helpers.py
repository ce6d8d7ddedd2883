"""shared.db's driver-level helpers: the parameter mark of each backend, and executemany in chunks,
on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.db import FreshStatistics, executemany, make_engine, param_mark, read_only

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def test_param_mark_per_backend() -> None:
    assert param_mark(create_engine("sqlite://").dialect) == "?"
    assert param_mark(create_engine("postgresql+psycopg://u@127.0.0.1/x").dialect) == "%s"


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine of `make_engine` on a fresh SQLite file or a fresh PostgreSQL database."""
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    engine = make_engine(sqlite if request.param == "sqlite" else request.getfixturevalue("fresh_pg_url"))
    yield engine
    engine.dispose()


def test_executemany_writes_every_row_in_chunks(engine: Engine) -> None:
    rows = [(i, f"v{i}") for i in range(7)]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        sql = f"INSERT INTO t (k, v) VALUES ({param_mark(conn.dialect)}, {param_mark(conn.dialect)})"
        executemany(conn, sql, rows, chunk=3)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT k, v FROM t ORDER BY k").all() == rows
    # all in the caller's transaction: a bad row in a later chunk undoes the chunks before it
    with pytest.raises(IntegrityError), engine.begin() as conn:
        executemany(conn, sql, [(100, "a"), (101, "b"), (0, "dup")], chunk=2)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 7


# --------------------------------------------------------------------------- read_only


def _no_waiting(engine: Engine) -> Connection:
    """A connection of `engine` that fails at once (no busy wait) when the write lock is taken."""
    conn = engine.connect()
    conn.connection.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
    return conn


def test_a_read_only_transaction_holds_up_no_writer_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ro.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        writer = _no_waiting(engine)
        try:
            with read_only(engine).connect() as reader:
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
                with writer.begin():  # would be 'database is locked' under BEGIN IMMEDIATE
                    writer.exec_driver_sql("INSERT INTO t VALUES (2)")
                # the reader's snapshot is the moment of its first read
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
            with read_only(engine).connect() as reader:
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 2
            # the control: an ordinary transaction of the engine takes the write lock up front
            with engine.connect() as holder:
                holder.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
                with pytest.raises(OperationalError, match="locked"), writer.begin():
                    writer.exec_driver_sql("INSERT INTO t VALUES (3)")
        finally:
            writer.close()
    finally:
        engine.dispose()


def test_read_only_engine_shares_the_pool_and_reads(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1), (2)")
    reader = read_only(engine)
    assert reader.pool is engine.pool
    with reader.connect() as conn:
        assert conn.exec_driver_sql("SELECT k FROM t ORDER BY k").scalars().all() == [1, 2]


# --------------------------------------------------------------------------- PostgreSQL plans


@pytest.mark.postgres
def test_key_lookup_reads_the_key_index_on_a_table_without_statistics(fresh_pg_url: str) -> None:
    """The intake's idempotency lookup by (municipality, record_id): one index probe per id, not a
    join over the whole municipality that a table never analyzed invites."""
    from shared.eventstore.schema import metadata as store_metadata
    from shared.eventstore.store import _FIND_RECORDS

    engine = make_engine(fresh_pg_url)
    try:
        store_metadata.create_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, municipality, "
                "record_id, content_hash, occurred_at, recorded_at, correlation_id, data) "
                "SELECT 'e' || g, 'child-' || g, 1, 'CaseOpened', 1, '751', 'r' || g, 'h', "
                "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 'c', '{}' "
                "FROM generate_series(1, 12000) g"
            )
        with engine.connect() as conn:
            compiled = _FIND_RECORDS.postgres.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            params = {**compiled.params, "m": "751", "ids": ["r5", "r77", "nope"]}
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute("EXPLAIN " + str(compiled), params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            found = _FIND_RECORDS.rows(conn, "751", ["r5", "r77", "nope"])
        assert "Hash Join" not in plan and "Index Scan using uq_events_municipality_record" in plan, plan
        assert sorted(row.record_id for row in found) == ["r5", "r77"]
    finally:
        engine.dispose()


def _analyze_count(conn: Connection, table: str) -> int:
    return int(
        conn.exec_driver_sql(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s", (table,)
        ).scalar_one()
    )


@pytest.mark.postgres
def test_fresh_statistics_analyze_as_a_new_table_grows(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE grows (k INTEGER PRIMARY KEY)")
        keeper = FreshStatistics(engine, ["grows"], first=100, last=10_000)
        keeper.wrote(99)
        keeper.wait(30)
        assert keeper.runs == 0
        keeper.wrote(1)  # 100: the first step
        keeper.wait(30)
        assert keeper.runs == 1
        keeper.wrote(250)  # 350: below the next step (400)
        keeper.wait(30)
        assert keeper.runs == 1
        keeper.wrote(100_000)  # past every step: one more, then never again
        keeper.wait(30)
        keeper.wrote(1)
        keeper.wait(30)
        assert keeper.runs == 2
        # pg_stat counters reach the view asynchronously: poll a little
        deadline = time.monotonic() + 10
        while True:
            with engine.connect() as conn:
                if _analyze_count(conn, "grows") >= 2 or time.monotonic() > deadline:
                    assert _analyze_count(conn, "grows") >= 2
                    break
            time.sleep(0.2)
    finally:
        engine.dispose()


def test_fresh_statistics_do_nothing_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        keeper = FreshStatistics(engine, ["events"], first=1)
        keeper.wrote(10)
        keeper.wait(5)
        assert not keeper.enabled and keeper.runs == 0
    finally:
        engine.dispose()
