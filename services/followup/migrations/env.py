"""Alembic environment of the follow-up service's own database."""

from services.followup.tables import metadata as followup_metadata
from shared.audit import audit_metadata
from shared.messaging.schema import runner_metadata
from shared.migrations import run_env

run_env([followup_metadata, audit_metadata, runner_metadata], version_table="alembic_version_followup")
