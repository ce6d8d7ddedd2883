"""The ledelsesinfo tables (SQLAlchemy Core), on the service's own database.

- `ledelsesinfo_events`: every event of every child (the projection's own copy, so a child can be
  recomputed from the set of its events without the event store); `doc` is projection.encode_event.
- `ledelsesinfo_children`: the children seen, per municipality, with the latest `occurred_at` of their
  events (`last_at`, UTC epoch microseconds; NULL in rows from before the column): a cadence profile
  change re-derives the children with an event at or after it.
- `ledelsesinfo_profile_changes`: the municipalities' `CadenceProfileChanged` events (stream
  `municipality-{m}`, not children), one row per event id; children are derived with the profile in
  force at each event (shared.casework.cadence `ProfileTimeline`), reports take the caseload target.
- `ledelsesinfo_packed`: the buckets, one row per (municipality, kind, team, caseworker, mode,
  position): the point buckets of a period, the Fenwick nodes of the state buckets.
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
    Column("last_at", BigInteger, nullable=True),
    Index("ix_ledelsesinfo_children_last_at", "municipality", "last_at"),
)

# Instants are UTC epoch microseconds (integers compare and sort the same on every backend).
profile_changes = Table(
    "ledelsesinfo_profile_changes",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("municipality", String(3), nullable=False),
    Column("changed_at", BigInteger, nullable=False),  # the envelope's occurred_at: in force from then
    Column("recorded_at", BigInteger, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("caseload_target", Integer, nullable=False),
    Column("profile", Text, nullable=False),  # CadenceProfile.to_json() as JSON text
    Index("ix_ledelsesinfo_profile_changes_municipality", "municipality", "changed_at"),
)


# The buckets: one row per (municipality, kind, team, caseworker, mode, position) with all its
# non-zero (bucket, code, value) entries in `doc` (a sorted JSON list): mode "p" the points of a
# period, mode "s" a Fenwick node of the state changes (domain/fenwick.py).
packed = Table(
    "ledelsesinfo_packed",
    metadata,
    Column("municipality", String(3), primary_key=True),
    Column("kind", String(1), primary_key=True),
    Column("team_id", String(100), primary_key=True),
    Column("caseworker_id", String(100), primary_key=True),
    Column("mode", String(1), primary_key=True),
    Column("pos", Integer, primary_key=True, autoincrement=False),
    Column("doc", Text, nullable=False),
    Index("ix_ledelsesinfo_packed_caseworker", "municipality", "kind", "caseworker_id", "mode", "pos"),
)

population = Table(
    "ledelsesinfo_population",
    metadata,
    Column("municipality", String(3), primary_key=True),
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("children", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

DERIVED = (events, children, packed, profile_changes)
