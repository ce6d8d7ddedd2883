"""Alembic environment of the ledelsesinfo service's own database."""

from services.ledelsesinfo.tables import metadata as ledelsesinfo_metadata
from shared.audit import audit_metadata
from shared.messaging.schema import runner_metadata
from shared.migrations import run_env

run_env(
    [ledelsesinfo_metadata, audit_metadata, runner_metadata],
    version_table="alembic_version_ledelsesinfo",
)
