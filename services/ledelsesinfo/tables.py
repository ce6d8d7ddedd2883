"""The ledelsesinfo tables (SQLAlchemy Core), on the service's own database.

- `ledelsesinfo_events`: every event of every child, in its wire form (the projection's own copy, so
  a child can be recomputed from the set of its events without the event store).
- `ledelsesinfo_children`: each child's current contributions (JSON), to subtract when it changes.
- `ledelsesinfo_points`: point buckets per (municipality, kind, team, caseworker, period, bucket, code).
- `ledelsesinfo_state`: Fenwick nodes of the state buckets (see domain/fenwick.py).
- `ledelsesinfo_population`: children per municipality and year (loaded data, not derived: a replay
  keeps it).
Scope columns use "" for "all": ("", "") is the municipality, (team, "") a team, (team, caseworker) a
caseworker.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

events = Table(
    "ledelsesinfo_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("stream_id", String(200), nullable=False),
    Column("municipality", String(3), nullable=False),
    Column("doc", Text, nullable=False),
    Index("ix_ledelsesinfo_events_stream", "stream_id"),
)

children = Table(
    "ledelsesinfo_children",
    metadata,
    Column("stream_id", String(200), primary_key=True),
    Column("municipality", String(3), nullable=False),
    Column("contributions", Text, nullable=False),
    Index("ix_ledelsesinfo_children_municipality", "municipality"),
)


def _bucket_table(name: str, position: str) -> Table:
    return Table(
        name,
        metadata,
        Column("municipality", String(3), primary_key=True),
        Column("kind", String(1), primary_key=True),
        Column("team_id", String(100), primary_key=True),
        Column("caseworker_id", String(100), primary_key=True),
        Column(position, Integer, primary_key=True, autoincrement=False),
        Column("bucket", String(64), primary_key=True),
        Column("code", String(100), primary_key=True),
        Column("value", BigInteger, nullable=False),
        Index(f"ix_{name}_caseworker", "municipality", "kind", "caseworker_id", position),
    )


points = _bucket_table("ledelsesinfo_points", "period")
state = _bucket_table("ledelsesinfo_state", "node")

population = Table(
    "ledelsesinfo_population",
    metadata,
    Column("municipality", String(3), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("children", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

DERIVED = (events, children, points, state)
