"""Tables of the event log: append-only `events` and the transactional `outbox`."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# BIGINT autoincrement on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
Position = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("municipality", String(3), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("occurred_at", String(40), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("data", Text, nullable=False),
    UniqueConstraint("stream_id", "version", name="uq_events_stream_version"),
    UniqueConstraint("municipality", "record_id", name="uq_events_municipality_record"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("position", BigInteger, nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
)
Index("ix_outbox_created", outbox.c.created_at)
