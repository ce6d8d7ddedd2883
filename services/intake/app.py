"""The intake HTTP service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from services.intake.adapters.schema import create_tables
from services.intake.api import router
from services.intake.config import Settings
from services.intake.openapi import install_openapi
from services.intake.service import IntakeService
from shared.audit import audit_router
from shared.db import make_engine

log = logging.getLogger(__name__)

DESCRIPTION = """Every underretning and case activity comes in here as a **record** (spec section 3) and
leaves as exactly one event in the event log. Records are validated (envelope, codes, CPR, times,
references) and checked against the rules at the door (one open case per child, a measure cannot
start on a closed case or end twice). CPR numbers never reach the events: they carry the pseudonym
`child_id`; the CPR is kept only encrypted under a per-child key that `forget` destroys."""


def create_app(settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The intake app. `clock` (tests) replaces `now` for the 24-hours-ahead and CPR-date checks."""
    settings = settings or Settings()  # type: ignore[call-arg]  # read from the environment
    engine = make_engine(settings.event_store_url)
    if settings.auto_create_tables:
        create_tables(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        relay = None
        if settings.transport == "kafka" and settings.run_relay:
            from shared.messaging.relay import OutboxRelay

            relay = OutboxRelay(
                engine,
                settings.kafka_bootstrap_servers,
                topics=(settings.kafka_topic, settings.kafka_dlq_topic),
                partitions=settings.kafka_partitions,
            )
            relay.start()
            log.info("intake: outbox relay started")
        try:
            yield
        finally:
            if relay is not None:
                relay.stop()
            engine.dispose()

    app = FastAPI(title="Intake", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.intake = IntakeService(engine, settings, clock=clock)
    app.include_router(router)
    app.include_router(audit_router("intake"))
    install_openapi(app)
    return app
