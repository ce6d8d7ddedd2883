"""The intake HTTP service."""

from __future__ import annotations

import contextvars
import logging
import re
import types
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import Histogram
from pydantic import BaseModel
from sqlalchemy import Connection

from services.intake.adapters.schema import create_tables
from services.intake.adapters.tables import intake_metadata
from services.intake.api import router
from services.intake.config import Settings
from services.intake.domain.records import RECORD_MODELS, RecordBase, Rejection
from services.intake.openapi import install_openapi
from services.intake.service import IntakeService, Outcome
from shared import observability
from shared.audit import audit_router
from shared.db import make_engine
from shared.eventstore.schema import metadata as event_store_metadata

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
        app.state.relay = None
        if settings.transport == "kafka" and settings.run_relay:
            from shared.messaging.relay import OutboxRelay

            relay = OutboxRelay(
                engine,
                settings.kafka_bootstrap_servers,
                topics=(settings.kafka_topic, settings.kafka_dlq_topic),
                partitions=settings.kafka_partitions,
            )
            relay.start()
            app.state.relay = relay
            log.info("intake: outbox relay started")
        try:
            yield
        finally:
            if relay is not None:
                relay.stop()
            app.state.relay = None
            ops.close()
            engine.dispose()

    app = FastAPI(title="Intake", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.intake = CountedIntakeService(engine, settings, clock=clock)
    app.state.relay = None
    app.include_router(_without_ready(router))
    app.include_router(audit_router("intake"))

    # operations: request ids, metrics, readiness (shared/observability.py)
    ops = observability.install(app, "intake", settings)
    outcomes = observability.RecordOutcomes(
        ops.registry, engine, labels=outcome_labels, parse_labels=parse_rejection_labels
    )
    ops.on_close(outcomes.close)
    app.state.record_outcomes = outcomes
    app.state.intake.outcomes = outcomes
    app.state.intake.group_commits = Histogram(
        "intake_group_commit_records",
        "Records per committed transaction of concurrent single POST /records (group commit).",
        buckets=GROUP_COMMIT_BUCKETS,
        registry=ops.registry,
    )
    ops.add_collector(observability.outbox_collector(engine, lambda: app.state.relay))
    # The broker is this process's dependency only when it runs the relay: the outbox keeps intake
    # accepting records while Kafka is away (a separate relay process, as in compose, catches up).
    broker = observability.broker_probe(settings) if settings.run_relay else None
    if broker is not None:
        ops.on_close(broker.close)
    observability.add_ready_route(
        app,
        observability.Readiness(
            "intake",
            engine,
            tables=[event_store_metadata, intake_metadata],  # checked only without Alembic
            environment=settings.environment,
            broker=broker,
        ),
    )
    install_openapi(app)
    return app


def _without_ready(source: APIRouter) -> APIRouter:
    """api.py's router without its GET /ready: this app's /ready is shared/observability's."""
    out = APIRouter()
    out.routes.extend(r for r in source.routes if getattr(r, "path", None) != "/ready")
    return out


# --- the records counter --------------------------------------------------------------------------

_writing_many: contextvars.ContextVar[bool] = contextvars.ContextVar("writing_many", default=False)


def _record_type(record: Any) -> str:
    value = getattr(record, "type", None)
    return value if isinstance(value, str) else "unknown"


GROUP_COMMIT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class CountedIntakeService(IntakeService):
    """The service of the HTTP app: every outcome of `parse`, `write` and `write_many` goes to
    `intake_records_total` (`RecordOutcomes` counts a written one when its transaction commits).
    `write_many` may fall back to `write` record by record: those are counted once, by `write_many`.
    Each committed group-commit transaction of single POSTs goes to `intake_group_commit_records`."""

    outcomes: observability.RecordOutcomes | None = None
    group_commits: Histogram | None = None

    def commit_batch(self, batch: Sequence[tuple[RecordBase, str]]) -> list[Outcome | Exception]:
        results = super().commit_batch(batch)  # committed when it returns
        if self.group_commits is not None:
            self.group_commits.observe(len(batch))
        return results

    def parse(self, obj: Any) -> RecordBase | Rejection:
        parsed = super().parse(obj)
        if self.outcomes is not None and isinstance(parsed, Rejection):
            self.outcomes.parse_rejected(obj, parsed)
        return parsed

    def write(self, conn: Connection, record: RecordBase, correlation_id: str | None = None) -> Outcome:
        outcome = super().write(conn, record, correlation_id)
        if self.outcomes is not None and not _writing_many.get():
            self.outcomes.written(conn, _record_type(record), outcome)
        return outcome

    def write_many(
        self, conn: Connection, records: Sequence[RecordBase], *args: Any, **kwargs: Any
    ) -> list[Outcome]:
        token = _writing_many.set(True)
        try:
            written = super().write_many(conn, records, *args, **kwargs)
        finally:
            _writing_many.reset(token)
        if self.outcomes is not None:
            self.outcomes.written_many(
                conn, ((_record_type(r), o) for r, o in zip(records, written, strict=True))
            )
        return written


# --- labels of the records counter (intake_records_total{type, status, reason}) ----------------------

_INDEX = re.compile(r"\[\d+\]")
_NOT_PARSED = frozenset({"record", "line", "body"})


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            yield from _models(arg)


@lru_cache(maxsize=1)
def reason_fields() -> frozenset[str]:
    """Every field path a record can have (`data.child.cpr`, ...): the bounded values of `reason`."""
    paths: set[str] = set(_NOT_PARSED)

    def walk(model: type[BaseModel], prefix: str, depth: int) -> None:
        for name, info in model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            paths.add(path)
            if depth < 6:
                for sub in _models(info.annotation):
                    walk(sub, path, depth + 1)

    for model in RECORD_MODELS.values():
        walk(model, "", 0)
    return frozenset(paths)


def reason_label(field: str | None) -> str:
    """The field at fault as a label: list indices dropped, cut back to a known field path (a field
    the caller invented is reported as its parent), `other` when nothing is left."""
    if not field:
        return "other"
    path = _INDEX.sub("", field)
    known = reason_fields()
    while path not in known and "." in path:
        path = path.rsplit(".", 1)[0]
    return path if path in known else "other"


def outcome_labels(outcome: Any) -> tuple[str, str]:
    """(status, reason) of an `Outcome` of `IntakeService.write`."""
    status = outcome.status
    if status in ("accepted", "duplicate"):
        return status, ""
    if status in ("conflict", "busy"):
        return "rejected", status
    return "rejected", reason_label(outcome.field)


def parse_rejection_labels(obj: Any, rejection: Any) -> tuple[str, str]:
    """(type, reason) of a record the parser refused; the type only when it is a known one."""
    record_type = obj.get("type") if isinstance(obj, dict) else None
    if not isinstance(record_type, str) or record_type not in RECORD_MODELS:
        record_type = "unknown"
    return record_type, reason_label(rejection.field)
