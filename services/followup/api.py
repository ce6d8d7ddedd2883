"""HTTP endpoints of the follow-up service (spec section 7): a case, the deadline worklist, the
caseload, and the municipality's cadence profile (for the `chef`; a change is an event of the
shared log: services.followup.profiles).

Every endpoint requires a bearer token; the scope is enforced with `shared.auth`; every read of
case-level data about children writes one audit entry per child (`shared.audit.AuditWriter`),
committed before the answer goes out (on PostgreSQL in the read's own transaction, on SQLite
together with the entries of concurrent answers).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from services.followup.profiles import InForce, ProfileConflict, append_profile_change
from services.followup.projection import FollowupProjection, load_profile_changes
from services.followup.queries import caseload, find_case, worklist_json
from shared.audit import AuditWriter
from shared.auth import (
    CurrentPrincipal,
    Principal,
    authorize_scope,
    can_see_case,
    require_role,
    visible_teams,
)
from shared.casework.cadence import HERNING, ProfileChange, ProfileTimeline
from shared.casework.calendar import TZ
from shared.casework.deadlines import DEADLINE_LABELS_DA, STATES
from shared.casework.views import case_view, iso
from shared.db import read_only, write_transaction
from shared.logs import correlation_id_var

SERVICE = "followup"
MUNICIPALITY = r"^[0-9]{3}$"
_SPACE_FOR_PLUS = re.compile(r" (\d{2}(:?\d{2})?)$")

MunicipalityQ = Annotated[
    str, Query(pattern=MUNICIPALITY, description="DST kommunekode, three digits, e.g. `657`")
]
AtQ = Annotated[
    str | None,
    Query(
        description="The moment to evaluate at (ISO 8601, e.g. `2026-11-20T12:00:00+01:00`); default now. "
        "Without an offset it is Copenhagen time; a date alone is its 00:00 Copenhagen time.",
        max_length=64,
    ),
]
TeamQ = Annotated[str | None, Query(min_length=1, max_length=200)]
CaseworkerQ = Annotated[str | None, Query(min_length=1, max_length=200)]


def _unprocessable(detail: str) -> HTTPException:
    # the documented 422 shape (FastAPI's HTTPValidationError): a list of {loc, msg, type}
    return HTTPException(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"type": "value_error", "loc": ["query"], "msg": detail}],
    )


def parse_at(raw: str | None) -> datetime:
    """The `at` parameter as an aware UTC instant (default now). Bad values: 422."""
    if raw is None or not raw.strip():
        return datetime.now(UTC)
    text = raw.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        try:  # an unencoded '+' of the offset arrives as a space
            at = datetime.fromisoformat(_SPACE_FOR_PLUS.sub(r"+\1", text))
        except ValueError:
            raise _unprocessable("at: not an ISO 8601 date-time, e.g. 2026-11-20T12:00:00+01:00") from None
    if not 1900 <= at.year <= 2200:
        raise _unprocessable("at: year out of range")
    if at.tzinfo is None:
        at = at.replace(tzinfo=TZ)
    return at.astimezone(UTC)


def parse_states(raw: list[str] | None) -> tuple[str, ...]:
    if not raw:
        return STATES
    wanted: list[str] = []
    for part in raw:
        for state in part.split(","):
            state = state.strip()
            if not state:
                continue
            if state not in STATES:
                raise _unprocessable(f"state: unknown state {state!r}; one of {', '.join(STATES)}")
            wanted.append(state)
    return tuple(dict.fromkeys(wanted)) or STATES


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _reader(request: Request) -> Engine:
    """The engine for answers that only read (a snapshot, no write lock: `shared.db.read_only`)."""
    return read_only(_engine(request))


def _audit(request: Request) -> AuditWriter:
    writer: AuditWriter = request.app.state.audit
    return writer


def _projection(request: Request) -> FollowupProjection:
    projection: FollowupProjection = request.app.state.projection
    return projection


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)


def _case_roles(principal: Principal, municipality: str) -> None:
    if municipality != principal.municipality:
        raise _forbidden("this municipality is outside your credentials")
    if principal.role not in ("chef", "teamleder", "sagsbehandler"):
        raise _forbidden(f"role {principal.role} may not see cases")


# --------------------------------------------------------------------------- profiles API models


class ProfileUpdate(BaseModel):
    """A change of the municipality's cadence profile and/or caseload target.

    `profile` may name only the fields to change; each period is `{"amount": N, "unit":
    "days"|"weeks"|"months"}` or `null` (no municipal rule: the law alone).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "profile": {"non_placement_then": {"amount": 2, "unit": "months"}},
                    "caseload_target": 22,
                }
            ]
        },
    )

    profile: dict[str, Any] | None = None
    caseload_target: int | None = Field(None, ge=1, le=1000)


def _profile_doc(
    timeline: ProfileTimeline, changes: list[ProfileChange], municipality: str
) -> dict[str, Any]:
    now = datetime.now(UTC)
    current = timeline.change_at(municipality, now)
    return {
        "municipality": municipality,
        "profile": (current.profile if current else HERNING).to_json(),
        "caseload_target": timeline.target(municipality, now),
        "default": current is None,
        "changed_at": iso(current.changed_at) if current else None,
        "changed_by": current.changed_by if current else None,
        "history": [
            {
                "changed_at": iso(c.changed_at),
                "changed_by": c.changed_by,
                "profile": c.profile.to_json(),
                "caseload_target": c.caseload_target,
            }
            for c in changes
        ],
    }


# --------------------------------------------------------------------------- deadlines API models


class DeadlineItem(BaseModel):
    """One deadline of the worklist, with its state at `at` (spec sections 4 and 7)."""

    deadline: str = Field(description="Deadline id: " + ", ".join(DEADLINE_LABELS_DA))
    label: str = Field(description="Danish label of the deadline")
    case_id: str | None
    underretning_id: str | None
    measure_id: str | None
    child_id: str = Field(description="Child pseudonym")
    seq: int = Field(description="Which one of a repeating deadline, from 0")
    starts_at: str = Field(description="ISO 8601, Copenhagen time with offset")
    due: str = Field(description="ISO 8601, Copenhagen time with offset")
    met_at: str | None = Field(description="When met, if by `at`")
    ended_at: str | None = Field(description="When its measure or case ended, if by `at`")
    caseworker_id: str | None = Field(description="The case's caseworker at `at`")
    team_id: str | None
    state: str = Field(description="State at `at`: " + ", ".join(STATES))


class DeadlineScope(BaseModel):
    team_id: str | None
    caseworker_id: str | None
    states: list[str]


class DeadlineList(BaseModel):
    """The worklist: every deadline listed at `at` in the scope, soonest due first (all of them
    unless `limit`/`offset` page it)."""

    municipality: str
    at: str
    scope: DeadlineScope
    labels: dict[str, str]
    count: int = Field(description="How many deadlines this answer holds")
    deadlines: list[DeadlineItem]


_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


# --------------------------------------------------------------------------- router


def followup_router() -> APIRouter:
    router = APIRouter()

    @router.get("/cases/{case_id}", tags=["cases"], summary="A case as of a moment, with its deadlines")
    def get_case(
        request: Request,
        principal: CurrentPrincipal,
        case_id: Annotated[str, Path(min_length=1, max_length=200)],
        municipality: MunicipalityQ,
        at: AtQ = None,
    ) -> dict[str, Any]:
        t = parse_at(at)
        _case_roles(principal, municipality)
        with _audit(request).reading() as (conn, note):
            row = find_case(conn, municipality, case_id)
            if row is None:
                raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="no such case")
            if not can_see_case(principal, municipality, row.team_id, row.caseworker_id):
                raise _forbidden("this case is outside your scope")
            picture = _projection(request).picture(conn, row.stream_id)
            if picture is None or case_id not in picture.cases:
                raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="no such case")
            view = case_view(picture, case_id, t)
            note(principal, [picture.child_id], "GET /cases/{case_id}", SERVICE)
        return view  # its audit entry is committed

    @router.get(
        "/deadlines",
        tags=["deadlines"],
        summary="The deadline worklist at a moment",
        response_model=DeadlineList,
        response_class=JSONResponse,
    )
    def get_deadlines(
        request: Request,
        principal: CurrentPrincipal,
        municipality: MunicipalityQ,
        team_id: TeamQ = None,
        caseworker_id: CaseworkerQ = None,
        state: Annotated[
            list[str] | None,
            Query(description="Comma-separated (or repeated): " + ", ".join(STATES) + "; default all"),
        ] = None,
        at: AtQ = None,
        limit: Annotated[
            int | None,
            Query(ge=1, le=100_000, description="Paging: at most this many deadlines; default all"),
        ] = None,
        offset: Annotated[
            int,
            Query(ge=0, le=10_000_000, description="Paging: skip this many deadlines first; default 0"),
        ] = 0,
    ) -> Response:
        t = parse_at(at)
        states = parse_states(state)
        if principal.role == "sagsbehandler" and caseworker_id is None:
            caseworker_id = principal.caseworker_id  # a caseworker's worklist is their own
        authorize_scope(principal, municipality, team_id, caseworker_id, purpose="cases")
        # a teamleder's and a sagsbehandler's view stops at the teams of their token
        teams = frozenset({team_id}) if team_id is not None else visible_teams(principal)
        with _audit(request).reading() as (conn, note):
            found = worklist_json(
                conn,
                municipality,
                t,
                teams=teams,
                caseworker_id=caseworker_id,
                states=states,
                limit=limit,
                offset=offset,
            )
            note(principal, found.child_ids, "GET /deadlines", SERVICE)
        head = {
            "municipality": municipality,
            "at": iso(t),
            "scope": {"team_id": team_id, "caseworker_id": caseworker_id, "states": list(states)},
            "labels": DEADLINE_LABELS_DA,
            "count": len(found.items),
        }
        # the items are JSON text already: spliced in, not parsed and re-encoded
        body = found.in_document(_encode_json(head)[:-1].encode() + b',"deadlines":', b"}")
        return Response(body, media_type="application/json")

    @router.get("/caseload", tags=["caseload"], summary="Open cases per caseworker at a moment")
    def get_caseload(
        request: Request,
        principal: CurrentPrincipal,
        municipality: MunicipalityQ,
        team_id: TeamQ = None,
        at: AtQ = None,
    ) -> dict[str, Any]:
        t = parse_at(at)
        own = principal.caseworker_id if principal.role == "sagsbehandler" else None
        authorize_scope(principal, municipality, team_id, own, purpose="cases")
        # a teamleder's and a sagsbehandler's view stops at the teams of their token
        teams = frozenset({team_id}) if team_id is not None else visible_teams(principal)
        with _reader(request).connect() as conn:
            counts = caseload(conn, municipality, t, teams=teams)
            target = _projection(request).timeline(conn, [municipality]).target(municipality, t)
        if own is not None:
            counts = {own: counts.get(own, 0)}
        return {
            "municipality": municipality,
            "at": iso(t),
            "scope": {"team_id": team_id},
            "target": target,
            "caseworkers": [
                {"caseworker_id": cw, "open_cases": n, "target": target, "over_target": n > target}
                for cw, n in sorted(counts.items())
            ],
        }

    @router.get("/profiles/{municipality}", tags=["profiles"], summary="Cadence profile and caseload target")
    def get_profile(
        request: Request,
        principal: CurrentPrincipal,
        municipality: Annotated[str, Path(pattern=MUNICIPALITY)],
    ) -> dict[str, Any]:
        require_role(principal, "chef")
        authorize_scope(principal, municipality, purpose="cases")
        projection = _projection(request)
        with _reader(request).connect() as conn:
            changes = load_profile_changes(conn, [municipality])
        return _profile_doc(projection.timeline_of(changes), changes, municipality)

    @router.put("/profiles/{municipality}", tags=["profiles"], summary="Change the cadence profile / target")
    def put_profile(
        request: Request,
        principal: CurrentPrincipal,
        municipality: Annotated[str, Path(pattern=MUNICIPALITY)],
        body: ProfileUpdate,
    ) -> dict[str, Any]:
        """Appends a `CadenceProfileChanged` (the whole profile and target in force from now on) to
        the shared event log, where every service learns it, and applies it here at once."""
        require_role(principal, "chef")
        authorize_scope(principal, municipality, purpose="cases")
        if body.profile is None and body.caseload_target is None:
            raise _unprocessable("give a profile, a caseload_target, or both")
        projection = _projection(request)
        engine = _engine(request)

        def in_force_here(at: datetime) -> InForce:
            # before the municipality's first event: follow-up's own timeline (older changes)
            with engine.connect() as conn:
                timeline = projection.timeline(conn, [municipality])
            return InForce(timeline.profile(municipality, at), timeline.target(municipality, at))

        def complete(current: InForce) -> InForce:
            try:
                profile = (
                    current.profile
                    if body.profile is None
                    else type(current.profile).from_json(body.profile, current.profile)
                )
            except (ValueError, TypeError) as exc:
                raise _unprocessable(f"profile: {exc}") from None
            return InForce(profile, body.caseload_target or current.caseload_target)

        # the change is an event of the shared log (every service learns it from there) ...
        try:
            stored = append_profile_change(
                request.app.state.store_engine,
                request.app.state.event_store,
                municipality,
                principal.sub,
                complete,
                in_force_here,
                correlation_id=correlation_id_var.get(),
            )
        except ProfileConflict:
            raise HTTPException(
                status_code=status.HTTP_409_CONFLICT,
                detail="other changes of this profile kept coming first; send the change again",
            ) from None
        # ... and applied here at once (the worker meets it later and finds it applied)
        with write_transaction(engine) as conn:
            projection.apply(conn, [stored])
            changes = load_profile_changes(conn, [municipality])
        return _profile_doc(projection.timeline_of(changes), changes, municipality)

    return router
