"""Each service's Alembic revisions build exactly the tables its code declares, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from shared.db import make_engine
from shared.migrations import migrate_service, service_at_head

SERVICES = ["intake", "followup", "ledelsesinfo"]


def _declared(service: str) -> list[MetaData]:
    from shared.audit import audit_metadata
    from shared.messaging.schema import runner_metadata

    if service == "intake":
        from services.intake.adapters.tables import intake_metadata
        from shared.eventstore.schema import metadata as eventstore_metadata

        return [eventstore_metadata, intake_metadata, audit_metadata]
    if service == "followup":
        from services.followup.tables import metadata

        return [metadata, audit_metadata, runner_metadata]
    from services.ledelsesinfo.tables import metadata as li_metadata

    return [li_metadata, audit_metadata, runner_metadata]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_reach_head_and_match_the_models(
    service: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/{service}.db"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    engine = make_engine(url)
    assert not service_at_head(service, engine)
    migrate_service(service, url)
    migrate_service(service, url)  # a second run is a no-op
    assert service_at_head(service, engine)
    with engine.connect() as conn:
        opts = {"compare_type": True, "version_table": f"alembic_version_{service}"}
        ctx = MigrationContext.configure(conn, opts=opts)
        combined = MetaData()
        for md in _declared(service):
            for table in md.tables.values():
                table.to_metadata(combined)
        diffs = compare_metadata(ctx, combined)
    engine.dispose()
    assert diffs == []
