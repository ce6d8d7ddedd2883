"""shared.db's driver-level helpers: the parameter mark of each backend, and executemany in chunks,
on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

from shared.db import executemany, make_engine, param_mark

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def test_param_mark_per_backend() -> None:
    assert param_mark(create_engine("sqlite://").dialect) == "?"
    assert param_mark(create_engine("postgresql+psycopg://u@127.0.0.1/x").dialect) == "%s"


@pytest.mark.parametrize("backend", BACKENDS)
def test_executemany_writes_every_row_in_chunks(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    engine = make_engine(sqlite if backend == "sqlite" else request.getfixturevalue("fresh_pg_url"))
    rows = [(i, f"v{i}") for i in range(7)]
    try:
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
    finally:
        engine.dispose()
