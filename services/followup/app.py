"""The follow-up HTTP service (and, unless `RUN_WORKER=false`, its projection worker)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine, MetaData

from services.followup.api import followup_router
from services.followup.checkpoint import WalCheckpointer
from services.followup.config import Settings
from services.followup.metrics import overdue_collector
from services.followup.profiles import event_store_for
from services.followup.projection import FollowupProjection
from services.followup.tables import metadata as followup_metadata
from shared import observability
from shared.audit import AuditWriter, audit_metadata, audit_router
from shared.db import make_engine

log = logging.getLogger(__name__)

DESCRIPTION = """Case state, legal deadlines (frister) and caseload for the children's department.

The follow-up projection keeps every child's events and derives each case's phase, caseworker
(with history), underretninger, investigations, measures, waiting lists and every deadline of
Barnets Lov that applies (spec section 4), evaluated at any moment with `at`. Municipal follow-up
cadences (Herning's by default) and the caseload target are set per municipality by the `chef`
(`/profiles/{municipality}`), each change kept with who and when: a change is a
`CadenceProfileChanged` event in the shared log, so every service (the weekly reports too) and every
rebuild of this one knows it."""


def all_metadata() -> list[MetaData]:
    """Every table the service needs in its own database (the runner's checkpoints included)."""
    from shared.messaging.schema import runner_metadata

    return [followup_metadata, audit_metadata, runner_metadata]


def create_tables(engine: Engine) -> None:
    for md in all_metadata():
        md.create_all(engine)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()  # type: ignore[call-arg]  # read from the environment
    engine = make_engine(settings.own_database_url)
    if settings.auto_create_tables:
        create_tables(engine)
    projection = FollowupProjection(settings)
    # the shared event log (intake's database): `PUT /profiles` appends its change there
    same_db = settings.event_store_url == settings.own_database_url
    store_engine = engine if same_db else make_engine(settings.event_store_url)
    # SQLite: the log is checkpointed by a thread of its own, not in requests' commits
    sqlite_file = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
    checkpointer = WalCheckpointer(engine) if sqlite_file else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if checkpointer is not None:
            checkpointer.start()
        worker = None
        if settings.run_worker:
            from shared.messaging.runner import ProjectionWorker

            worker = ProjectionWorker(FollowupProjection(settings), settings, engine=engine)
            worker.start()
            app.state.worker = worker
            log.info("followup: projection worker started")
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            if checkpointer is not None:
                checkpointer.stop()
            ops.close()
            engine.dispose()
            if store_engine is not engine:
                store_engine.dispose()

    app = FastAPI(title="Follow-up", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.audit = AuditWriter(engine)
    app.state.projection = projection
    app.state.store_engine = store_engine
    app.state.event_store = event_store_for(settings.transport, settings.kafka_topic)
    app.state.checkpointer = checkpointer
    app.state.worker = None

    @app.get("/health", tags=["health"], summary="Liveness (no authentication, no dependencies)")
    def health() -> dict[str, str]:
        return {"status": "ok", "service": "followup"}

    # operations: request ids, metrics, readiness (shared/observability.py)
    ops = observability.install_projector_service(
        app, "followup", settings, engine, projection.name, followup_metadata, [overdue_collector(engine)]
    )

    app.include_router(followup_router())
    app.include_router(audit_router("followup"))
    return app
