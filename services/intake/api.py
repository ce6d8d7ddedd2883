"""Intake's HTTP endpoints: records in (one, or a streamed NDJSON bulk), and the CPR vault."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from starlette.background import BackgroundTask

from services.intake.adapters import repository as repo
from services.intake.adapters.vault import ChildForgotten, ChildUnknown
from services.intake.bulk import BulkImport, LineSplitter
from services.intake.config import Settings
from services.intake.domain.records import Rejection
from services.intake.group import submit as group_commit
from services.intake.service import IntakeService, Outcome
from shared.audit import write_audit
from shared.auth import CurrentPrincipal, authorize_scope, can_see_case, require_role
from shared.db import is_transient
from shared.eventstore.schema import events
from shared.observability import bulk_tally

log = logging.getLogger(__name__)

SERVICE = "intake"
MUNICIPALITY_QUERY = Query(pattern=r"^[0-9]{3}$", description="DST municipality code, e.g. 657")
ChildIdPath = Annotated[
    str, Path(min_length=1, max_length=64, description="The child's pseudonym (child_id)")
]
_STATUS_CODES = {"accepted": 201, "duplicate": 200, "conflict": 409, "rejected": 422, "busy": 503}

router = APIRouter()


# --- response documents (for OpenAPI) ---------------------------------------------------------


class RecordAccepted(BaseModel):
    status: Literal["accepted"]
    record_id: str
    event_id: str
    position: int
    change: bool | None = Field(
        None, description="CaseworkerAssigned only: false when it is no change of caseworker"
    )


class RecordDuplicate(BaseModel):
    status: Literal["duplicate"]
    record_id: str
    position: int | None = None


class RecordRefused(BaseModel):
    status: Literal["rejected", "conflict", "busy"]
    record_id: str | None = None
    reason: str = Field(description="Which field and why, e.g. `data.case_id: no case 'S-1' ...`")
    field: str | None = Field(None, description="JSON path of the field at fault")


class BulkLine(BaseModel):
    line: int = Field(description="Physical line number in the file, from 1")
    record_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None
    field: str | None = None


class BulkResult(BaseModel):
    lines: int
    accepted: int
    duplicate: int
    rejected: int
    results: list[BulkLine]


# --- helpers ------------------------------------------------------------------------------------


def _service(request: Request) -> IntakeService:
    service: IntakeService = request.app.state.intake
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _correlation_id(request: Request) -> str:
    given = request.headers.get("x-correlation-id", "")
    return given if 0 < len(given) <= 64 and given.isprintable() else str(uuid.uuid4())


def _refused(code: int, reason: str, field: str | None, record_id: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=code,
        content={"status": "rejected", "record_id": record_id, "reason": reason, "field": field},
    )


class _TooLarge(Exception):
    pass


RETRY_AFTER_SECONDS = 5


def _unavailable(what: str) -> JSONResponse:
    """503 with Retry-After: the event store is not reachable; nothing was stored, send again later."""
    return JSONResponse(
        status_code=503,
        content={
            "status": "busy",
            "record_id": None,
            "reason": f"{what}: the event store is not reachable right now; nothing was stored, send again",
            "field": None,
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _representable(moment: datetime) -> bool:
    """An aware time that also exists in UTC (0001-01-01T00:30+01:00 does not)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _has_nul(obj: Any) -> bool:
    """True if any key or string value holds a NUL character (PostgreSQL text cannot store one)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


# --- records ------------------------------------------------------------------------------------


@router.post(
    "/records",
    tags=["records"],
    summary="Submit one record",
    description=(
        "One record (spec section 3) as JSON. `201` accepted (one event appended), `200` duplicate "
        "(same record_id and content seen before: nothing changes), `409` conflict (same record_id, "
        "different content), `422` rejected with the field and the reason, `403` a municipality "
        "outside your credentials, `413` a body over the limit."
    ),
    status_code=201,
    responses={
        201: {"model": RecordAccepted, "description": "Accepted: one event appended"},
        200: {"model": RecordDuplicate, "description": "Duplicate: seen before with the same content"},
        409: {"model": RecordRefused, "description": "Conflict: record_id seen before with other content"},
        413: {"model": RecordRefused, "description": "Body too large"},
        422: {"model": RecordRefused, "description": "Rejected: which field and why"},
        503: {
            "model": RecordRefused,
            "description": "Busy: concurrent writers, or the event store unreachable; send again "
            "(Retry-After)",
        },
    },
)
async def post_record(request: Request, principal: CurrentPrincipal) -> JSONResponse:
    authorize_scope(principal, principal.municipality, purpose="write")
    settings = _settings(request)
    try:
        body = await _read_limited(request, settings.max_body_bytes)
    except _TooLarge:
        return _refused(
            413,
            f"body: larger than {settings.max_body_bytes} bytes; one record is far smaller "
            "(send many records to POST /records/bulk)",
            "body",
        )
    try:
        obj: Any = json.loads(body)
    except UnicodeDecodeError:
        return _refused(422, "body: not valid UTF-8 text", "body")
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return _refused(422, f"body: not valid JSON ({exc.msg} at {where})", "body")
    except (ValueError, RecursionError):  # an integer of thousands of digits, nesting thousands deep
        return _refused(422, "body: JSON nested too deep or with a number too long to read", "body")
    if _has_nul(obj):
        return _refused(422, "body: text may not contain NUL characters (\\u0000)", "body")
    service = _service(request)
    parsed = service.parse(obj)
    if isinstance(parsed, Rejection):
        return _refused(422, parsed.reason, parsed.field, parsed.record_id)
    if not _representable(parsed.occurred_at):
        return _refused(
            422, "occurred_at: out of range (before year 1 in UTC)", "occurred_at", parsed.record_id
        )
    authorize_scope(principal, parsed.municipality, purpose="write")
    try:
        outcome: Outcome = await group_commit(service, parsed, _correlation_id(request))
    except Exception as exc:  # a database outage (any driver or pool error) becomes a 503
        if not is_transient(exc):  # a database outage, not a bug
            raise
        log.warning("intake: event store not reachable: %s", type(exc).__name__)
        return _unavailable("record")
    log.info("intake: record %s %s (%s)", outcome.record_id, outcome.status, type(parsed).__name__)
    headers = {"Retry-After": "1"} if outcome.status == "busy" else None
    return JSONResponse(
        status_code=_STATUS_CODES[outcome.status], content=outcome.response(), headers=headers
    )


@router.post(
    "/records/bulk",
    tags=["records"],
    summary="Submit many records as NDJSON (streamed)",
    description=(
        "One record per line (`application/x-ndjson`); blank lines are skipped. The body is read as a "
        "stream and committed in chunks; every line gets its own result (`accepted`, `duplicate` or "
        "`rejected` with the reason) and one bad line never stops or rolls back the good ones. A line "
        "naming a case, measure or underretning that a later line of the same body supplies is "
        "retried after the end. Re-sending the same file reports every line as `duplicate`."
    ),
    response_model=BulkResult,
    responses={
        200: {"description": "Per-line results in line order"},
        503: {
            "model": RecordRefused,
            "description": "The event store is not reachable: chunks committed before stay (re-sending "
            "reports them as duplicate); send the file again later",
        },
    },
)
async def post_bulk(request: Request, principal: CurrentPrincipal) -> StreamingResponse | JSONResponse:
    authorize_scope(principal, principal.municipality, purpose="write")
    settings = _settings(request)
    importer = BulkImport(_service(request), principal.municipality, correlation_id=_correlation_id(request))
    splitter = LineSplitter(settings.max_line_bytes)
    tally = bulk_tally(request.app)  # metrics: this import's records counted once (shared/observability.py)
    try:
        async for chunk in request.stream():
            for line_no, raw in splitter.feed(chunk):
                if importer.add(line_no, raw):
                    await run_in_threadpool(importer.flush)
        for line_no, raw in splitter.end():
            if importer.add(line_no, raw):
                await run_in_threadpool(importer.flush)
        summary = await run_in_threadpool(importer.finish)
        tally.finish(summary.rejected)  # metrics
    except Exception as exc:  # a database outage (any driver or pool error) becomes a 503
        importer.close()
        if not is_transient(exc):  # a database outage, not a bug
            raise
        log.warning("intake: event store not reachable during a bulk import: %s", type(exc).__name__)
        return _unavailable("bulk")
    except BaseException:
        importer.close()
        raise
    log.info(
        "intake: bulk import %s for %s: %d lines, %d accepted, %d duplicate, %d rejected",
        importer.correlation_id,
        principal.municipality,
        summary.lines,
        summary.accepted,
        summary.duplicate,
        summary.rejected,
    )
    return StreamingResponse(
        importer.iter_json(), media_type="application/json", background=BackgroundTask(importer.close)
    )


# --- the CPR vault ------------------------------------------------------------------------------


@router.get(
    "/children/{child_id}/cpr",
    tags=["children"],
    summary="Show a child's CPR number (audited)",
    description=(
        "For roles that may see one of the child's cases or underretninger. Writes an audit entry. "
        "`410 Gone` after the child was forgotten."
    ),
    responses={403: {"description": "Not your scope"}, 404: {"description": "Unknown child"}, 410: {}},
)
def get_cpr(
    request: Request,
    principal: CurrentPrincipal,
    child_id: ChildIdPath,
    municipality: Annotated[str, MUNICIPALITY_QUERY],
) -> JSONResponse:
    if municipality != principal.municipality:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this municipality is outside your credentials")
    require_role(principal, "chef", "teamleder", "sagsbehandler")
    service = _service(request)
    with service.engine.begin() as conn:
        scopes = repo.child_scopes(conn, municipality, child_id)
        if not scopes:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such child in this municipality")
        if not any(can_see_case(principal, municipality, team, worker) for team, worker in scopes):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "none of this child's cases is in your scope")
        try:
            identity = service.vault.reveal(conn, municipality, child_id)
        except ChildUnknown:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no identity stored for this child") from None
        except ChildForgotten:
            raise HTTPException(
                status.HTTP_410_GONE, "this child was forgotten: the identity is destroyed for good"
            ) from None
        write_audit(conn, principal, [child_id], "GET /children/{child_id}/cpr", SERVICE)
    return JSONResponse(
        {"child_id": child_id, "municipality": municipality, **identity},
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/children/{child_id}/forget",
    tags=["children"],
    summary="Forget a child's identity (chef only)",
    description=(
        "Destroys the child's key: the CPR can never be recovered, while the pseudonymous events and "
        "all statistics stay. Idempotent."
    ),
    responses={
        403: {"description": "Not chef / not your municipality"},
        404: {"description": "Unknown child"},
    },
)
def forget_child(
    request: Request,
    principal: CurrentPrincipal,
    child_id: ChildIdPath,
    municipality: Annotated[str, MUNICIPALITY_QUERY],
) -> dict[str, Any]:
    require_role(principal, "chef")
    if municipality != principal.municipality:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this municipality is outside your credentials")
    service = _service(request)
    with service.engine.begin() as conn:
        try:
            result = service.vault.forget(conn, municipality, child_id, by=principal.sub)
        except ChildUnknown:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no identity stored for this child") from None
        write_audit(conn, principal, [child_id], "POST /children/{child_id}/forget", SERVICE)
    return {
        "child_id": child_id,
        "municipality": municipality,
        "status": result.status,
        "forgotten_at": result.forgotten_at,
    }


# --- health -------------------------------------------------------------------------------------


@router.get("/health", tags=["health"], summary="Liveness (no authentication)")
def health() -> dict[str, str]:
    return {"status": "ok", "service": SERVICE}


@router.get(
    "/ready", tags=["health"], summary="Readiness: event store reachable, tables in place (no authentication)"
)
def ready(request: Request) -> JSONResponse:
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(select(events.c.position).limit(1))
    except Exception:
        log.warning("intake: event store not reachable", exc_info=True)
        return JSONResponse(status_code=503, content={"status": "unavailable", "service": SERVICE})
    return JSONResponse({"status": "ready", "service": SERVICE})
