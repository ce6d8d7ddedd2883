"""Alembic environment of intake's database: the event log, the outbox and intake's own tables."""

from services.intake.adapters.tables import intake_metadata
from shared.audit import audit_metadata
from shared.eventstore.schema import metadata as eventstore_metadata
from shared.migrations import run_env

run_env([eventstore_metadata, intake_metadata, audit_metadata], version_table="alembic_version_intake")
