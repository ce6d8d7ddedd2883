"""Operating the services: request and correlation ids, Prometheus metrics, readiness.

Every app gets its own `CollectorRegistry` (`Observability.registry`), so that a process (or a test
session) may create many apps without duplicate time series. What this module gives an app:

- `RequestContextMiddleware` (pure ASGI): takes `X-Request-ID` / `X-Correlation-ID` from the request
  (or makes them; an unsafe value, e.g. CPR-shaped, is replaced), puts them into
  `shared.logs.request_id_var` / `correlation_id_var` for every log line of the request, passes the
  correlation id on to the endpoint (intake writes it into the events it appends; the outbox relay
  sends it as the Kafka header `correlation_id`; the projectors log under it), answers both
  headers, counts and times the request per route template and status, and logs one JSON line.
- `GET /metrics`, `GET /ready` (`Readiness`): database reachable (SELECT 1), migrations at head,
  in Kafka mode the broker reachable (`BrokerProbe`: a metadata call with a short timeout, cached),
  for projection services the worker assigned and within `READY_MAX_LAG`.

Metrics (all per app, computed at scrape time where they come from a database or the broker):

    http_requests_total{method,route,status}                 counter
    http_request_duration_seconds{method,route,status}       histogram
    service_info{service,transport}                          1
    intake_records_total{type,status,reason}                 counter: accepted | duplicate | rejected
    intake_group_commit_records                              histogram: records per transaction of
                                                             concurrent single POSTs (group commit)
    outbox_size, outbox_oldest_age_seconds                   intake: unpublished outbox rows
    outbox_published_total                                   intake, when it runs the relay
    projection_lag_events{projection}                        from the worker, else from outside
    projection_lag_seconds{projection}                       age of the oldest event not applied
    projection_worker_in_process{projection}                 1 when this process runs the worker
    projection_assigned{projection}                          worker has its source / partitions
    projection_events_processed_total{projection}            this process's worker
    projection_retries_total{projection}                     this process's worker
    projection_dead_lettered_total{projection}               this process's worker
    projection_duplicates_skipped_total{projection}          this process's worker
    projection_dead_letters{projection}                      rows in the dead_letters table
    followup_deadlines_overdue{deadline,municipality}        followup: overdue now (followup/metrics.py)
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, Engine, MetaData, event, func, inspect, select, text

from shared.logs import correlation_id_var, redact, request_id_var
from shared.messaging.sources import consumer_group

log = logging.getLogger(__name__)
access_log = logging.getLogger("http.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class OpsSettings(BaseSettings):
    """Settings of health checks and metrics, shared by the three services (mixed into their Settings)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    ready_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="How long /ready and /metrics reuse an answer of the broker (and the projection "
        "lag read from outside the worker) before asking again.",
    )
    ready_broker_timeout_seconds: float = Field(
        2.0, gt=0, description="Timeout of the broker check of /ready (a metadata request), in seconds."
    )


def valid_id(value: str | None) -> str | None:
    """A caller's request/correlation id when it is safe to log and store: 1-64 of [A-Za-z0-9._:-],
    nothing a redaction would touch (a CPR-shaped number, a token)."""
    if not value or not _ID.match(value) or redact(value) != value:
        return None
    return value


def new_id() -> str:
    return str(uuid.uuid4())


# --- the per-app registry and HTTP metrics ----------------------------------------------------------


class Observability:
    """Everything one app exposes to operations: its registry, the HTTP metrics, what `/ready` checks."""

    def __init__(self, service: str, *, transport: str = "sql") -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of the body), by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        info = Gauge(
            "service_info",
            "Always 1; the labels name the service and its transport.",
            ["service", "transport"],
            registry=self.registry,
        )
        info.labels(service, transport).set(1)
        self._closers: list[Callable[[], None]] = []

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def on_close(self, fn: Callable[[], None]) -> None:
        self._closers.append(fn)

    def close(self) -> None:
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception:  # closing must not stop the shutdown
                log.debug("observability: close failed", exc_info=True)
        self._closers.clear()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(method, route, code).inc()
        self.latency.labels(method, route, code).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class FunctionCollector:
    """A collector whose metrics are computed by a function at scrape time (errors: no samples)."""

    def __init__(self, name: str, fn: Callable[[], Iterable[Metric]]) -> None:
        self.name = name
        self.fn = fn

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self.fn())
        except Exception as exc:  # a scrape must answer even when a dependency is down
            log.warning("metrics: %s not collected: %s", self.name, type(exc).__name__)
            return iter(())
        return iter(metrics)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at scrape time; no fixed set to check for duplicates


# --- request ids, correlation ids, request metrics ------------------------------------------------


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            try:
                return value.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
                return None
    return None


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _client(scope: Scope) -> str | None:
    """The caller's address as `host:port` (uvicorn's own access log, which said it, is off)."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


class RequestContextMiddleware:
    """Request and correlation ids in and out, request metrics and one access-log line per request.

    A valid `X-Correlation-ID` from the caller is kept; otherwise the request id becomes the
    correlation id, and the request's headers are rewritten so that the endpoint (intake stores the
    correlation id in the events it appends) sees the same value that is logged and answered.
    """

    def __init__(self, app: ASGIApp, observability: Observability) -> None:
        self.app = app
        self.ops = observability

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        request_id = valid_id(_header(headers, REQUEST_ID_HEADER.encode())) or new_id()
        given = _header(headers, CORRELATION_ID_HEADER.encode())
        correlation_id = valid_id(given) or request_id
        if given != correlation_id:
            headers = [(k, v) for k, v in headers if k.lower() != CORRELATION_ID_HEADER.encode()]
            headers.append((CORRELATION_ID_HEADER.encode(), correlation_id.encode()))
            scope["headers"] = headers
        status = 500
        extra_headers = [
            (REQUEST_ID_HEADER.encode(), request_id.encode()),
            (CORRELATION_ID_HEADER.encode(), correlation_id.encode()),
        ]

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *(
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() not in (REQUEST_ID_HEADER.encode(), CORRELATION_ID_HEADER.encode())
                    ),
                    *extra_headers,
                ]
            await send(message)

        rid_token = request_id_var.set(request_id)
        cid_token = correlation_id_var.set(correlation_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            seconds = time.perf_counter() - started
            route, method = _route_of(scope), str(scope.get("method", ""))
            self.ops.observe_request(method, route, status, seconds)
            access_log.log(
                logging.DEBUG if route in _QUIET_ROUTES and status < 500 else logging.INFO,
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "http_method": method,
                    "route": route,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "client": _client(scope),
                },
            )
            correlation_id_var.reset(cid_token)
            request_id_var.reset(rid_token)


def add_metrics_route(app: FastAPI, ops: Observability) -> None:
    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (no authentication)")
    def metrics() -> Response:
        return Response(ops.exposition(), media_type=CONTENT_TYPE_LATEST)


# --- readiness -----------------------------------------------------------------------------------


@dataclass
class CheckResult:
    ok: bool
    detail: str = "ok"
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.data}


def _error(exc: BaseException) -> str:
    """An exception for a health answer: its type only (messages may carry URLs with passwords)."""
    return type(exc).__name__


class Cached:
    """A value computed at most once every `seconds` (thread-safe; callers wait for one computation)."""

    def __init__(self, seconds: float, fn: Callable[[], Any]) -> None:
        self.seconds = seconds
        self.fn = fn
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: Any = None

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= self.seconds:
                self._value = self.fn()
                self._at = time.monotonic()
            return self._value


class BrokerProbe:
    """One admin client per app: the broker check of /ready and consumer-group lag, both cached."""

    def __init__(self, bootstrap: str, *, timeout: float = 2.0, cache_seconds: float = 2.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_ms = max(100, int(timeout * 1000))
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._admin: Any = None
        self._check = Cached(cache_seconds, self._describe)
        self._lags: dict[tuple[str, str], Cached] = {}

    def _client(self) -> Any:
        if self._admin is None:
            from kafka import KafkaAdminClient

            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="ops-probe",
                request_timeout_ms=self.timeout_ms,
                bootstrap_timeout_ms=self.timeout_ms,
            )
        return self._admin

    def _describe(self) -> CheckResult:
        with self._lock:
            try:
                cluster = self._client().describe_cluster()
            except Exception as exc:
                return CheckResult(False, f"broker unreachable ({_error(exc)})")
        return CheckResult(True, data={"brokers": len(cluster.get("brokers") or [])})

    def check(self) -> CheckResult:
        result: CheckResult = self._check.get()
        return result

    def group_lag(self, group: str, topic: str) -> int | None:
        """Messages of `topic` the consumer group has not committed yet (None: broker unreachable)."""
        key = (group, topic)
        if key not in self._lags:
            self._lags[key] = Cached(self.cache_seconds, lambda: self._group_lag(group, topic))
        value: int | None = self._lags[key].get()
        return value

    def _group_lag(self, group: str, topic: str) -> int | None:
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        with self._lock:
            try:
                admin = self._client()
                described = admin.describe_topics([topic])
                parts = [p["partition_index"] for t in described for p in t.get("partitions") or []]
                tps = [TopicPartition(topic, p) for p in parts]
                if not tps:
                    return None
                ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
                committed = admin.list_group_offsets({group: tps}).get(group, {})
            except Exception as exc:
                log.debug("broker probe: group lag of %s not read: %s", group, _error(exc))
                return None
        total = 0
        for tp in tps:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else 0
            total += max(0, ends[tp].offset - offset)
        return total

    def close(self) -> None:
        with self._lock:
            if self._admin is not None:
                try:
                    self._admin.close()
                finally:
                    self._admin = None


def migration_heads(service: str) -> set[str]:
    from alembic.script import ScriptDirectory

    from shared.migrations import alembic_config, service_script_location

    cfg = alembic_config("sqlite://", service_script_location(service), f"alembic_version_{service}")
    return set(ScriptDirectory.from_config(cfg).get_heads())


def migration_check(
    conn: Connection, service: str, heads: set[str], tables: Sequence[MetaData], *, allow_unversioned: bool
) -> CheckResult:
    """At head: ok. Behind (or ahead): not ready. No version table: ok only outside production and
    when every table exists (tables made by `auto_create_tables` / tests), else not ready."""
    from alembic.runtime.migration import MigrationContext

    version_table = f"alembic_version_{service}"
    existing = set(inspect(conn).get_table_names())
    if version_table in existing:
        current = set(
            MigrationContext.configure(conn, opts={"version_table": version_table}).get_current_heads()
        )
        if current == heads:
            return CheckResult(True, "at head", {"revision": ",".join(sorted(current))})
        return CheckResult(
            False,
            "not at head; run migrate",
            {"revision": ",".join(sorted(current)) or None, "head": ",".join(sorted(heads))},
        )
    missing = sorted(t for md in tables for t in md.tables if t not in existing)
    if missing:
        return CheckResult(False, "tables missing; run migrate", {"missing": missing[:10]})
    if allow_unversioned:
        return CheckResult(True, "tables present, not managed by Alembic (outside production only)")
    return CheckResult(False, "no Alembic version; run migrate")


class ReadinessCheck(Protocol):
    def __call__(self) -> CheckResult: ...


class Readiness:
    """The checks of GET /ready, in order; a check after a failed database check is skipped."""

    def __init__(
        self,
        service: str,
        engine: Engine,
        *,
        tables: Sequence[MetaData],
        environment: str,
        broker: BrokerProbe | None = None,
        extra: Sequence[tuple[str, ReadinessCheck]] = (),
    ) -> None:
        self.service = service
        self.engine = engine
        self.tables = tables
        self.allow_unversioned = environment != "production"
        self.broker = broker
        self.extra = list(extra)
        self._heads: set[str] | None = None

    def heads(self) -> set[str]:
        if self._heads is None:
            self._heads = migration_heads(self.service)
        return self._heads

    def run(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        checks: dict[str, CheckResult] = {}
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                checks["database"] = CheckResult(True)
                try:
                    checks["migrations"] = migration_check(
                        conn,
                        self.service,
                        self.heads(),
                        self.tables,
                        allow_unversioned=self.allow_unversioned,
                    )
                except Exception as exc:
                    checks["migrations"] = CheckResult(False, f"not readable ({_error(exc)})")
        except Exception as exc:
            checks["database"] = CheckResult(False, f"database unreachable ({_error(exc)})")
            checks["migrations"] = CheckResult(False, "skipped: database unreachable")
        if self.broker is not None:
            checks["broker"] = self.broker.check()
        for name, check in self.extra:
            try:
                checks[name] = check()
            except Exception as exc:
                checks[name] = CheckResult(False, f"check failed ({_error(exc)})")
        ok = all(c.ok for c in checks.values())
        if not ok:
            failing = {k: c.detail for k, c in checks.items() if not c.ok}
            log.warning("%s: not ready", self.service, extra={"failing": str(failing)})
        return ok, {k: c.as_dict() for k, c in checks.items()}

    def response(self) -> JSONResponse:
        ok, checks = self.run()
        doc = {"status": "ready" if ok else "unready", "service": self.service, "checks": checks}
        return JSONResponse(doc, status_code=200 if ok else 503)


def add_ready_route(app: FastAPI, readiness: Readiness) -> None:
    """GET /ready answering `readiness` (the app must not have another)."""
    app.state.readiness = readiness

    @app.get(
        "/ready",
        tags=["health"],
        summary="Readiness (no authentication)",
        description="Database reachable, migrations at head; with transport=kafka the broker reachable; "
        "for a projection service its worker assigned and within `READY_MAX_LAG` events. 200 with "
        '`{"status": "ready", "checks": {...}}`, else 503 with the failing checks.',
        responses={503: {"description": "Not ready: see `checks`"}},
    )
    def ready() -> JSONResponse:
        return readiness.response()


# --- projections ---------------------------------------------------------------------------------


@dataclass
class ProjectionStatus:
    projection: str
    in_process: bool
    assigned: bool | None = None
    lag_events: int | None = None
    lag_seconds: float | None = None
    processed: int = 0
    retries: int = 0
    dead_lettered: int = 0
    skipped_duplicates: int = 0
    reconnects: int = 0
    dead_letter_rows: int | None = None
    error: str | None = None


class ProjectionMonitor:
    """How far a projection is: from the worker in this process when there is one (its own counters,
    lag read in its thread), else from outside (the SQL checkpoint against the event log, or the
    consumer group's committed offsets on Kafka). Exposed as metrics and as a readiness check."""

    def __init__(
        self,
        name: str,
        settings: Any,
        engine: Engine,
        *,
        worker: Callable[[], Any],
        broker: BrokerProbe | None,
        max_lag: int,
        cache_seconds: float = 2.0,
    ) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.worker = worker
        self.broker = broker
        self.max_lag = max_lag
        self._store_engine: Engine | None = None
        self._external = Cached(cache_seconds, self._external_lag)

    def close(self) -> None:
        if self._store_engine is not None:
            self._store_engine.dispose()
            self._store_engine = None

    def _store(self) -> Engine:
        if self.settings.own_database_url == self.settings.event_store_url:
            return self.engine
        if self._store_engine is None:
            from shared.db import make_engine

            self._store_engine = make_engine(self.settings.event_store_url)
        return self._store_engine

    def _external_lag(self) -> tuple[int | None, float | None]:
        if self.settings.transport == "kafka":
            if self.broker is None:
                return None, None
            return self.broker.group_lag(
                consumer_group(self.name, self.settings.kafka_group_id), self.settings.kafka_topic
            ), None
        from shared.eventstore.schema import events
        from shared.messaging.schema import checkpoints

        with self.engine.connect() as conn:
            done = conn.execute(
                select(checkpoints.c.position).where(checkpoints.c.projection == self.name)
            ).scalar()
        position = int(done or 0)
        with self._store().connect() as conn:
            head = conn.execute(select(func.max(events.c.position))).scalar()
            lag = max(0, int(head or 0) - position)
            if not lag:
                return 0, 0.0
            oldest = conn.execute(
                select(events.c.recorded_at)
                .where(events.c.position > position)
                .order_by(events.c.position)
                .limit(1)
            ).scalar()
        return lag, _age_seconds(oldest)

    def dead_letter_rows(self) -> int:
        from shared.messaging.schema import dead_letters

        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(dead_letters).where(dead_letters.c.projection == self.name)
            ).scalar()
        return int(n or 0)

    def status(self) -> ProjectionStatus:
        worker = self.worker()
        if worker is not None:
            return ProjectionStatus(
                self.name,
                True,
                assigned=bool(getattr(worker, "assigned", False)),
                lag_events=getattr(worker, "lag_events", None),
                lag_seconds=getattr(worker, "lag_seconds", None),
                processed=worker.processed,
                retries=worker.retries,
                dead_lettered=worker.dead_lettered,
                skipped_duplicates=worker.skipped_duplicates,
                reconnects=getattr(worker, "reconnects", 0),
                error=worker.last_error,
            )
        try:
            lag, seconds = self._external.get()
            return ProjectionStatus(self.name, False, lag_events=lag, lag_seconds=seconds)
        except Exception as exc:
            return ProjectionStatus(self.name, False, error=_error(exc))

    def check(self) -> CheckResult:
        s = self.status()
        data: dict[str, Any] = {
            "in_process": s.in_process,
            "lag_events": s.lag_events,
            "lag_seconds": None if s.lag_seconds is None else round(s.lag_seconds, 3),
            "max_lag": self.max_lag,
        }
        if s.in_process:
            data["assigned"] = s.assigned
            if not s.assigned:
                return CheckResult(False, "worker has no partitions / source assigned", data)
            if s.lag_events is None:
                return CheckResult(False, "worker lag not known yet", data)
        if s.lag_events is not None and s.lag_events > self.max_lag:
            return CheckResult(False, f"lag {s.lag_events} events exceeds READY_MAX_LAG", data)
        if s.lag_events is None:
            # worker in another process and its lag unreadable from here: the broker/database checks
            # say why; this process itself can answer
            return CheckResult(True, "worker runs elsewhere; lag unknown", data)
        return CheckResult(True, "ok" if s.in_process else "worker runs elsewhere", data)

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        labels = [self.name]
        lag = GaugeMetricFamily(
            "projection_lag_events",
            "Events in the log the projection has not applied yet.",
            labels=["projection"],
        )
        if s.lag_events is not None:
            lag.add_metric(labels, s.lag_events)
        yield lag
        lag_s = GaugeMetricFamily(
            "projection_lag_seconds",
            "Age of the oldest event not yet applied (0 when caught up; from the worker, an upper bound).",
            labels=["projection"],
        )
        if s.lag_seconds is not None:
            lag_s.add_metric(labels, s.lag_seconds)
        yield lag_s
        in_proc = GaugeMetricFamily(
            "projection_worker_in_process",
            "1 when this process runs the projection's worker.",
            labels=["projection"],
        )
        in_proc.add_metric(labels, 1 if s.in_process else 0)
        yield in_proc
        if s.in_process:
            assigned = GaugeMetricFamily(
                "projection_assigned",
                "1 when the worker has its source (Kafka partitions) assigned.",
                labels=["projection"],
            )
            assigned.add_metric(labels, 1 if s.assigned else 0)
            yield assigned
            for metric, value, doc in (
                ("projection_events_processed", s.processed, "Events applied by this process's worker."),
                ("projection_retries", s.retries, "Retries of single events after a failed batch."),
                (
                    "projection_dead_lettered",
                    s.dead_lettered,
                    "Messages this process's worker dead-lettered.",
                ),
                ("projection_duplicates_skipped", s.skipped_duplicates, "Redelivered events skipped."),
                (
                    "projection_source_reopened",
                    s.reconnects,
                    "Times the worker reopened a source that stalled (events behind it, none delivered).",
                ),
            ):
                c = CounterMetricFamily(metric, doc, labels=["projection"])
                c.add_metric(labels, value)
                yield c
        rows = GaugeMetricFamily(
            "projection_dead_letters",
            "Rows in the projection's dead_letters table (every worker's, kept until replay).",
            labels=["projection"],
        )
        try:
            rows.add_metric(labels, self.dead_letter_rows())
        except Exception as exc:
            log.debug("metrics: dead letters not counted: %s", _error(exc))
        yield rows


def _age_seconds(iso: Any) -> float | None:
    if not iso:
        return None
    try:
        at = datetime.fromisoformat(str(iso))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - at).total_seconds())


# --- intake: outbox and records -------------------------------------------------------------------


def outbox_collector(engine: Engine, relay: Callable[[], Any]) -> FunctionCollector:
    def collect() -> Iterator[Metric]:
        from shared.messaging.relay import outbox_size

        size, oldest = outbox_size(engine)
        g = GaugeMetricFamily("outbox_size", "Events in the outbox not yet published to Kafka.")
        g.add_metric([], size)
        yield g
        age = GaugeMetricFamily(
            "outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when empty)."
        )
        age.add_metric([], (_age_seconds(oldest) or 0.0) if size else 0.0)
        yield age
        r = relay()
        if r is not None:
            c = CounterMetricFamily("outbox_published", "Outbox rows this process's relay published.")
            c.add_metric([], r.published)
            yield c

    return FunctionCollector("outbox", collect)


class _Outcome(Protocol):
    @property
    def record_id(self) -> str | None: ...

    @property
    def retry_later(self) -> bool: ...


OutcomeLabels = Callable[[Any], tuple[str, str]]
ParseLabels = Callable[[Any, Any], tuple[str, str]]
_PENDING = "ops.record_outcomes"


class BulkTally:
    """One bulk import's bookkeeping, so that the records counter ends up equal to its summary: lines
    deferred to the end are counted once with their final result; lines that never reached the
    parser (not JSON, oversize, another municipality) are counted as `unknown` / `line`."""

    def __init__(self, outcomes: RecordOutcomes | None) -> None:
        self.outcomes = outcomes
        self.rejected = 0
        self.deferred: dict[str, tuple[str, str]] = {}
        self._token: contextvars.Token[BulkTally | None] | None = None

    def finish(self, rejected_in_summary: int) -> None:
        if self._token is not None:
            _bulk_var.reset(self._token)
            self._token = None
        if self.outcomes is None:
            return
        for record_type, reason in self.deferred.values():
            self.outcomes.count(record_type, "rejected", reason)
            self.rejected += 1
        self.deferred.clear()
        gap = rejected_in_summary - self.rejected
        if gap > 0:
            self.outcomes.count("unknown", "rejected", "line", gap)


_bulk_var: contextvars.ContextVar[BulkTally | None] = contextvars.ContextVar("bulk_tally", default=None)


class RecordOutcomes:
    """`intake_records_total{type, status, reason}`: each record counted once, when the transaction
    that decided it commits (a transaction rolled back or run again after a deadlock counts nothing
    twice). `status` is accepted, duplicate or rejected; `reason` a bounded label (the field at fault,
    `conflict`, `busy`), never the free text."""

    def __init__(
        self, registry: CollectorRegistry, engine: Engine, *, labels: OutcomeLabels, parse_labels: ParseLabels
    ) -> None:
        self.labels = labels
        self.parse_labels = parse_labels
        self.counter = Counter(
            "intake_records",
            "Records received, by record type, status (accepted, duplicate, rejected) and reason.",
            ["type", "status", "reason"],
            registry=registry,
        )
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine, "rollback", self._on_rollback)
        self._engine = engine

    def close(self) -> None:
        event.remove(self._engine, "commit", self._on_commit)
        event.remove(self._engine, "rollback", self._on_rollback)

    def count(self, record_type: str, status: str, reason: str, n: int = 1) -> None:
        self.counter.labels(record_type, status, reason).inc(n)

    # called by IntakeService
    def written(self, conn: Connection, record_type: str, outcome: _Outcome) -> None:
        """An outcome of `IntakeService.write`, counted when `conn`'s transaction commits."""
        conn.info.setdefault(_PENDING, []).append((record_type, outcome))

    def written_many(self, conn: Connection, outcomes: Iterable[tuple[str, _Outcome]]) -> None:
        """(record type, outcome) pairs of `IntakeService.write_many`, counted on commit."""
        conn.info.setdefault(_PENDING, []).extend(outcomes)

    def parse_rejected(self, obj: Any, rejection: Any) -> None:
        """A record refused by the parser (never written): counted at once, as `type`, `reason`
        from `parse_labels(obj, rejection)`."""
        record_type, reason = self.parse_labels(obj, rejection)
        self.count(record_type, "rejected", reason)
        tally = _bulk_var.get()
        if tally is not None:
            tally.rejected += 1

    def bulk(self) -> BulkTally:
        tally = BulkTally(self)
        tally._token = _bulk_var.set(tally)
        return tally

    def _on_rollback(self, conn: Connection) -> None:
        conn.info.pop(_PENDING, None)

    def _on_commit(self, conn: Connection) -> None:
        pending = conn.info.pop(_PENDING, None)
        if not pending:
            return
        tally = _bulk_var.get()
        counts: dict[tuple[str, str, str], int] = {}
        for record_type, outcome in pending:
            status, reason = self.labels(outcome)
            if tally is not None:
                key = str(outcome.record_id)
                if outcome.retry_later:
                    tally.deferred[key] = (record_type, reason)  # a later pass of the import decides
                    continue
                if tally.deferred:
                    tally.deferred.pop(key, None)
                if status == "rejected":
                    tally.rejected += 1
            labels = (record_type, status, reason)
            counts[labels] = counts.get(labels, 0) + 1
        for (record_type, status, reason), n in counts.items():
            self.count(record_type, status, reason, n)


def bulk_tally(app: Any) -> BulkTally:
    """For POST /records/bulk: start counting one import (`.finish(summary.rejected)` at its end)."""
    outcomes: RecordOutcomes | None = getattr(app.state, "record_outcomes", None)
    return outcomes.bulk() if outcomes is not None else BulkTally(None)


# --- wiring --------------------------------------------------------------------------------------


def install(app: FastAPI, service: str, settings: Any) -> Observability:
    """Per-app registry, the request middleware and GET /metrics; returns the app's `Observability`
    (also `app.state.ops`). The caller adds its collectors and `add_ready_route`."""
    ops = Observability(service, transport=settings.transport)
    app.state.ops = ops
    app.add_middleware(RequestContextMiddleware, observability=ops)
    add_metrics_route(app, ops)
    return ops


def install_projector_service(
    app: FastAPI,
    service: str,
    settings: Any,
    engine: Engine,
    projection_name: str,
    tables: MetaData,
    collectors: Sequence[Collector] = (),
) -> Observability:
    """`install` for a service whose projection feeds its API (follow-up, ledelsesinfo): request
    middleware and GET /metrics, the projection's lag and counters (`app.state.projection_monitor`,
    reading `app.state.worker`), the broker probe on Kafka, and GET /ready over the database,
    the tables (outside production), the broker and the projection's lag."""
    ops = install(app, service, settings)
    broker = broker_probe(settings)
    if broker is not None:
        ops.on_close(broker.close)
    monitor = ProjectionMonitor(
        projection_name,
        settings,
        engine,
        worker=lambda: app.state.worker,
        broker=broker,
        max_lag=settings.ready_max_lag,
        cache_seconds=settings.ready_cache_seconds,
    )
    ops.on_close(monitor.close)
    app.state.projection_monitor = monitor
    ops.add_collector(FunctionCollector("projection", monitor.collect))
    for collector in collectors:
        ops.add_collector(collector)
    add_ready_route(
        app,
        Readiness(
            service,
            engine,
            tables=[tables],  # checked only without Alembic (outside production)
            environment=settings.environment,
            broker=broker,
            extra=[("projection", monitor.check)],
        ),
    )
    return ops


def broker_probe(settings: Any) -> BrokerProbe | None:
    if settings.transport != "kafka":
        return None
    return BrokerProbe(
        settings.kafka_bootstrap_servers,
        timeout=settings.ready_broker_timeout_seconds,
        cache_seconds=settings.ready_cache_seconds,
    )


def serve_worker_metrics(service: str, settings: Any, worker: Any, port: int) -> Callable[[], None]:
    """For a worker-only process (`python -m services.<svc> work`): its projection metrics on
    http://HOST:port/metrics (prometheus_client's own server). Returns the function that stops it."""
    from prometheus_client import start_http_server

    ops = Observability(service, transport=settings.transport)
    monitor = ProjectionMonitor(
        worker.projection.name,
        settings,
        worker.engine,
        worker=lambda: worker,
        broker=None,
        max_lag=getattr(settings, "ready_max_lag", 0),
        cache_seconds=settings.ready_cache_seconds,
    )
    ops.add_collector(FunctionCollector("projection", monitor.collect))
    server, thread = start_http_server(port, addr=settings.host, registry=ops.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)
        monitor.close()

    return stop
