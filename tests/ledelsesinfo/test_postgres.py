"""The projection and the reports on a real PostgreSQL (upserts, Fenwick reads) give the same as SQLite."""

from __future__ import annotations

from pathlib import Path

from services.ledelsesinfo import tables
from shared.db import make_engine
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.test_projection import apply_in_batches, dump, raw_tables, rich_events


def test_postgres_matches_sqlite(fresh_pg_url: str, tmp_path: Path) -> None:
    pg = make_engine(fresh_pg_url)
    lite = make_engine(f"sqlite:///{tmp_path / 'lite.db'}")
    for engine in (pg, lite):
        tables.metadata.create_all(engine)
    events = rich_events()
    hp, hl = Harness(pg), Harness(lite)
    apply_in_batches(hp, list(reversed(events)), [4])
    hl.feed(events)
    assert dump(pg) == dump(lite)
    assert raw_tables(pg) == raw_tables(lite)
    assert hp.weekly("2026-W47") == hl.weekly("2026-W47")
    assert hp.monthly("2026-11", team="syd") == hl.monthly("2026-11", team="syd")
    assert hp.weekly("2026-W47", cw="anna") == hl.weekly("2026-W47", cw="anna")
    pg.dispose()
    lite.dispose()


def test_postgres_bulk_rebuild_then_apply_matches_sqlite(fresh_pg_url: str, tmp_path: Path) -> None:
    from tests.ledelsesinfo.test_bulk_rebuild import _children

    pg = make_engine(fresh_pg_url)
    lite = make_engine(f"sqlite:///{tmp_path / 'lite.db'}")
    for engine in (pg, lite):
        tables.metadata.create_all(engine)
    events = rich_events()
    hp, hl = Harness(pg), Harness(lite)
    children = _children(events[:-5])
    for page in (children[:2], children[2:]):
        with pg.begin() as conn:
            hp.projection.rebuild_children(conn, page)
    hp.feed(events[-5:])
    hl.feed(events)
    assert dump(pg) == dump(lite)
    assert hp.weekly("2026-W47", cw="anna") == hl.weekly("2026-W47", cw="anna")
    assert hp.monthly("2027-01") == hl.monthly("2027-01")
    pg.dispose()
    lite.dispose()
