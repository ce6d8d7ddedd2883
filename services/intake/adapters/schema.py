"""Creating intake's tables (until the lead's Alembic migrations take over)."""

from __future__ import annotations

from sqlalchemy import Engine

from services.intake.adapters.tables import intake_metadata
from shared.audit import audit_metadata
from shared.eventstore.schema import metadata as event_store_metadata


def create_tables(engine: Engine) -> None:
    """Create the event log, outbox, intake's tables and the audit log where missing."""
    for metadata in (event_store_metadata, intake_metadata, audit_metadata):
        metadata.create_all(engine, checkfirst=True)
