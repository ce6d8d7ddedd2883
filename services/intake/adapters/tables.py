"""Intake's own lookup tables (SQLAlchemy Core), written in the same transaction as the events.

Timestamps are ISO 8601 strings in UTC (`+00:00`), portable between SQLite and PostgreSQL and
ordered lexically. Table names carry the `intake_` prefix because they may share a database
with the event log and with other services' tables.

- `intake_cases`: one row per case: child, team, open/closed, current caseworker (and when that
  assignment happened, so a backfilled older one does not replace it).
- `intake_measures`: one row per measure: case, type, started, ended.
- `intake_underretninger`: one row per underretning: child, team, case.
- `intake_children`: the child's identity (CPR, or mother's CPR and expected birth) encrypted
  under the child's own key; `forgotten_at` once the key was destroyed.
- `intake_child_keys`: the child's data key, wrapped (AES-GCM) with the master key. Deleting the
  row ("forget") makes the identity unrecoverable.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, LargeBinary, MetaData, String, Table

intake_metadata = MetaData()

Ts = String(40)

cases = Table(
    "intake_cases",
    intake_metadata,
    Column("municipality", String(3), primary_key=True),
    Column("case_id", String(100), primary_key=True),
    Column("child_id", String(64), nullable=False),
    Column("team_id", String(100), nullable=False),
    Column("status", String(10), nullable=False),  # open | closed
    Column("opened_at", Ts, nullable=False),
    Column("closed_at", Ts, nullable=True),
    Column("caseworker_id", String(100), nullable=True),
    Column("assigned_at", Ts, nullable=True),
    Column("opened_by_record", String(200), nullable=False),
)
Index("ix_intake_cases_child", cases.c.municipality, cases.c.child_id)

measures = Table(
    "intake_measures",
    intake_metadata,
    Column("municipality", String(3), primary_key=True),
    Column("measure_id", String(100), primary_key=True),
    Column("case_id", String(100), nullable=False),
    Column("measure_type", String(100), nullable=False),
    Column("started_at", Ts, nullable=False),
    Column("ended", Boolean, nullable=False, default=False),
    Column("ended_at", Ts, nullable=True),
)
Index("ix_intake_measures_case", measures.c.municipality, measures.c.case_id)

underretninger = Table(
    "intake_underretninger",
    intake_metadata,
    Column("municipality", String(3), primary_key=True),
    Column("underretning_id", String(100), primary_key=True),
    Column("child_id", String(64), nullable=False),
    Column("team_id", String(100), nullable=False),
    Column("case_id", String(100), nullable=True),
    Column("received_at", Ts, nullable=False),
)
Index("ix_intake_underretninger_child", underretninger.c.municipality, underretninger.c.child_id)

children = Table(
    "intake_children",
    intake_metadata,
    Column("municipality", String(3), primary_key=True),
    Column("child_id", String(64), primary_key=True),
    Column("unborn", Boolean, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("forgotten", Boolean, nullable=False, default=False),
    Column("forgotten_at", Ts, nullable=True),
    Column("forgotten_by", String(200), nullable=True),
)

child_keys = Table(
    "intake_child_keys",
    intake_metadata,
    Column("municipality", String(3), primary_key=True),
    Column("child_id", String(64), primary_key=True),
    Column("nonce", LargeBinary, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
)
