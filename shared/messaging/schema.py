"""The consumer runner's own tables, created in each projection's database."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text

runner_metadata = MetaData()

checkpoints = Table(
    "projection_checkpoints",
    runner_metadata,
    Column("projection", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

processed_events = Table(
    "processed_events",
    runner_metadata,
    Column("projection", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
)

dead_letters = Table(
    "dead_letters",
    runner_metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("projection", String(100), nullable=False),
    Column("event_id", String(36)),
    Column("origin", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # the bytes as received (may hold NUL)
    Column("at", String(40), nullable=False),
)
