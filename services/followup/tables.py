"""The follow-up service's tables (SQLAlchemy Core), on its own database.

Every instant is stored in UTC (`DateTime(timezone=True)`: `timestamptz` on PostgreSQL; on SQLite
a naive UTC text that compares correctly).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

Id = BigInteger().with_variant(Integer(), "sqlite")
Instant = DateTime(timezone=True)

fu_events = Table(
    "fu_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("stream_id", String(200), nullable=False),
    Column("municipality", String(3), nullable=False),
    Column("occurred_at", Instant, nullable=False),
    # the envelope as the event log keeps it (shared.eventstore.schema: its own texts of the instants
    # and of the payload); decoded by shared.eventstore.store.log_row_to_envelope
    Column("position", BigInteger),
    Column("version", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("occurred_text", String(40), nullable=False),
    Column("recorded_text", String(40), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_fu_events_stream", "stream_id"),
    Index("ix_fu_events_municipality_occurred", "municipality", "occurred_at"),
)

fu_cases = Table(
    "fu_cases",
    metadata,
    # A case is about one child; keyed by stream too, so that a source system's mistake (one case id
    # on two children) cannot stop the projection. The API then prefers the opened case.
    Column("stream_id", String(200), primary_key=True),
    Column("case_id", String(200), primary_key=True),
    Column("municipality", String(3), nullable=False),
    Column("child_id", String(100), nullable=False),
    Column("team_id", String(200)),
    Column("caseworker_id", String(200)),
    Column("status", String(20), nullable=False),  # open | closed | not_opened
    Column("phase", String(20)),  # after every known event; None when not open
    Column("opened_at", Instant),
    Column("closed_at", Instant),
    Column("caseworker_changes", Integer, nullable=False),
    Index("ix_fu_cases_municipality_case", "municipality", "case_id"),
)

fu_deadlines = Table(
    "fu_deadlines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("municipality", String(3), nullable=False),
    Column("stream_id", String(200), nullable=False),
    Column("child_id", String(100), nullable=False),
    Column("deadline", String(40), nullable=False),
    Column("case_id", String(200)),
    Column("underretning_id", String(200)),
    Column("measure_id", String(200)),
    Column("seq", Integer, nullable=False),
    Column("team_id", String(200)),
    Column("caseworker_id", String(200)),  # the case's caseworker after every known event
    Column("starts_at", Instant, nullable=False),
    Column("due", Instant, nullable=False),
    Column("met_at", Instant),
    Column("ended_at", Instant),
    # since when `caseworker_id` holds the case (its last assignment); None: no assignment
    Column("caseworker_since", Instant),
    # the worklist document's members that do not depend on the moment (JSON, without braces);
    # None on rows derived before the column existed (the API then renders them from the columns)
    Column("doc", Text),
    # its members `met_at`, `ended_at` and `caseworker_id` as they are once every known fact has
    # happened (at and after `met_at`, `ended_at` and `caseworker_since`), as JSON: `,"met_at":..`;
    # None on rows derived before the column existed (the API then renders them from the columns)
    Column("settled", Text),
    Index("ix_fu_deadlines_stream", "stream_id"),
    # a team's worklist comes out of this index in the order it is listed (no sorting)
    Index(
        "ix_fu_deadlines_municipality_team_due",
        "municipality",
        "team_id",
        "due",
        "deadline",
        "case_id",
        "underretning_id",
        "measure_id",
        "seq",
    ),
    Index("ix_fu_deadlines_municipality_due", "municipality", "due"),
    # no index on the caseworker: a worklist's caseworker is the one the case had at `at`
    # (`queries.holder_at`, a CASE no index serves); cases are found by (municipality, case_id)
)

fu_assignments = Table(
    "fu_assignments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("municipality", String(3), nullable=False),
    Column("stream_id", String(200), nullable=False),
    Column("child_id", String(100), nullable=False),
    Column("case_id", String(200), nullable=False),
    Column("team_id", String(200)),
    Column("caseworker_id", String(200), nullable=False),
    Column("valid_from", Instant, nullable=False),
    Column("valid_to", Instant),  # the next assignment of the case; None = still assigned
    Column("change", Boolean, nullable=False),
    Column("case_opened_at", Instant),
    Column("case_closed_at", Instant),
    Index("ix_fu_assignments_stream", "stream_id"),
    Index("ix_fu_assignments_municipality_case", "municipality", "case_id", "valid_from"),
    Index("ix_fu_assignments_municipality_caseworker", "municipality", "caseworker_id"),
    Index("ix_fu_assignments_municipality_team", "municipality", "team_id"),
)

fu_profiles = Table(
    "fu_profiles",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("municipality", String(3), nullable=False),
    Column("changed_at", Instant, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("profile", Text, nullable=False),  # CadenceProfile.to_json() after the change
    Column("caseload_target", Integer, nullable=False),
    # the `CadenceProfileChanged` event the row comes from (derived: a replay makes it again); None
    # on a row written before profile changes were events (kept by a replay)
    Column("event_id", String(64)),
    Index("ix_fu_profiles_municipality_changed", "municipality", "changed_at"),
    Index("ux_fu_profiles_event_id", "event_id", unique=True),
)

fu_dirty = Table(
    "fu_dirty",
    metadata,
    # children whose events were stored in deferred mode (a replay) and whose rows still have to be
    # derived; the next `apply` (or `FollowupProjection.flush`) derives them and removes them here
    Column("stream_id", String(200), primary_key=True),
)

DERIVED_TABLES = (fu_events, fu_cases, fu_deadlines, fu_assignments, fu_dirty)
"""What `reset` empties, whole. Of `fu_profiles` it empties the rows that came from events (those
with an `event_id`: the replay makes them again from the log's `CadenceProfileChanged`); rows of
older versions, made before profile changes were events, are not in the log and are kept."""

REBUILD_INDEXES: tuple[Index, ...] = tuple(
    index
    for table in (fu_cases, fu_deadlines, fu_assignments)
    for index in table.indexes
    if list(index.columns) != [table.c.stream_id]
)
"""The secondary indexes that a rebuild drops and builds again once its rows are in
(`FollowupProjection.reset` in deferred mode, then `flush`): those of the derived rows that are not
by stream, whose keys (team, caseworker, due) come in no order a rebuild could follow, so one sort
at the end costs less than inserting into them row by row. The primary keys, the indexes by stream
and those of `fu_events` stay: a rebuild writes child after child, municipality after municipality,
so their entries go in near the previous ones (and a sort at the end would read every body)."""
