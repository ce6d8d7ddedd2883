"""The ledelsesinfo FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from services.ledelsesinfo import tables
from services.ledelsesinfo.api import router
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.projection import LedelsesinfoProjection
from shared import observability
from shared.db import make_engine


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()  # type: ignore[call-arg]  # from the environment
    engine = make_engine(settings.own_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker: Any = None
        if settings.run_worker:
            from shared.messaging.runner import ProjectionWorker

            worker = ProjectionWorker(LedelsesinfoProjection(settings.rules()), settings, engine=engine)
            worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            ops.close()

    app = FastAPI(
        title="ledelsesinfo",
        version="0.1.0",
        description="Weekly figures for team leaders and monthly figures for the committee (domain.md §6).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.clock = lambda: datetime.now(UTC)
    app.state.worker = None
    app.include_router(router)

    @app.get("/health", include_in_schema=True, tags=["health"], summary="Liveness (no dependencies)")
    def health() -> dict[str, str]:
        return {"status": "ok", "service": "ledelsesinfo"}

    # operations: request ids, metrics, readiness (shared/observability.py)
    ops = observability.install_projector_service(
        app, "ledelsesinfo", settings, engine, LedelsesinfoProjection.name, tables.metadata
    )

    return app
