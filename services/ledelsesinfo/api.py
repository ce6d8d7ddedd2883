"""HTTP endpoints of ledelsesinfo (domain.md §6.3, §7, §8). Reports carry aggregates only, so reading
them writes no audit entry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine

from services.ledelsesinfo import profiles, store
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.domain.figures import COUNT_BASED, FIGURES, MONTHLY_IDS, Kind
from services.ledelsesinfo.domain.periods import (
    MONTH,
    WEEK,
    BadPeriod,
    month_index,
    parse_month,
    week_end,
    week_index,
)
from services.ledelsesinfo.export import to_csv, to_xlsx
from services.ledelsesinfo.reports import (
    Cell,
    FigureValue,
    Report,
    figure_json,
    monthly_point_periods,
    monthly_report,
    report_json,
    suppress,
    weekly_report,
)
from shared.auth import CurrentPrincipal, Principal, authorize_scope, require_role
from shared.db import read_only

router = APIRouter()

Municipality = Annotated[str, Query(pattern=r"^[0-9]{3}$", description="DST kommunekode, e.g. 657")]
Format = Annotated[Literal["json", "csv", "xlsx"], Query(alias="format", description="json, csv or xlsx")]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _reader(request: Request) -> Engine:
    """The engine for answers that only read (a snapshot, no write lock: `shared.db.read_only`)."""
    return read_only(_engine(request))


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _bad_request(detail: str) -> HTTPException:
    # the documented 422 shape (FastAPI's HTTPValidationError): a list of {loc, msg, type}
    return HTTPException(status_code=422, detail=[{"type": "value_error", "loc": ["query"], "msg": detail}])


def _resolve_scope(conn: Connection, principal: Principal, municipality: str, team_id: str | None,
                   caseworker_id: str | None) -> tuple[str | None, str | None]:
    """A sagsbehandler without a scope gets their own; a teamleder asking for a caseworker without a
    team gets the caseworker's team among their own (when it is one team)."""
    if principal.role == "sagsbehandler" and caseworker_id is None and team_id is None:
        return None, principal.caseworker_id
    if principal.role == "teamleder" and caseworker_id and team_id is None \
            and municipality == principal.municipality:
        teams = [t for t in store.caseworker_teams(conn, municipality, caseworker_id) if t in principal.teams]
        if len(teams) == 1:
            return teams[0], caseworker_id
        if len(teams) > 1:
            raise _bad_request("the caseworker has figures in several of your teams: give team_id")
    return team_id, caseworker_id


def _render(report: Report, fmt: str) -> Any:
    stem = f"ledelsesinfo-{report.municipality}-{report.period}"
    if report.team_id:
        stem += f"-{report.team_id}"
    if report.caseworker_id:
        stem += f"-{report.caseworker_id}"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)
    if fmt == "csv":
        return Response(to_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'})
    if fmt == "xlsx":
        return Response(to_xlsx(report), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{stem}.xlsx"'})
    return report_json(report)


def caseload_target(conn: Connection, settings: Settings, municipality: str, end: datetime) -> int:
    """The caseload target in force at the end of a period (`end`, exclusive): the municipality's
    latest `CadenceProfileChanged` before it, else the settings' target (domain.md §5)."""
    target = profiles.target_before(conn, municipality, end)
    return settings.target_for(municipality) if target is None else target


def build_monthly(conn: Connection, municipality: str, month: str, team_id: str | None,
                  now: datetime) -> Report:
    scope = store.Scope(team_id)
    points = store.read_points(conn, municipality, MONTH, monthly_point_periods(month), scope)
    state = store.read_state(conn, municipality, MONTH, month_index(month), scope)
    return monthly_report(municipality=municipality, month=month, team_id=team_id, points=points,
                          state=state, generated_at=now)


@router.get("/reports/weekly", summary="Weekly figures for team leaders (domain.md §6.1)")
def get_weekly(
    request: Request,
    principal: CurrentPrincipal,
    municipality: Municipality,
    week: Annotated[str, Query(description="ISO week, e.g. 2026-W47")],
    team_id: Annotated[str | None, Query(min_length=1)] = None,
    caseworker_id: Annotated[str | None, Query(min_length=1)] = None,
    fmt: Format = "json",
) -> Any:
    try:
        index = week_index(week)
    except BadPeriod as exc:
        raise _bad_request(str(exc)) from None
    settings = _settings(request)
    with _reader(request).connect() as conn:
        team_id, caseworker_id = _resolve_scope(conn, principal, municipality, team_id, caseworker_id)
        authorize_scope(principal, municipality, team_id, caseworker_id, purpose="reports")
        scope = store.Scope(team_id, caseworker_id)
        points = store.read_points(conn, municipality, WEEK, [index], scope)
        state = store.read_state(conn, municipality, WEEK, index, scope)
        target = caseload_target(conn, settings, municipality, week_end(week))
    report = weekly_report(
        municipality=municipality, week=week, team_id=team_id, caseworker_id=caseworker_id, points=points,
        state=state, generated_at=_now(request), caseload_target=target,
    )
    if principal.role == "udvalg":
        report = suppress(report)
    return _render(report, fmt)


@router.get("/reports/monthly", summary="Monthly figures for the committee (domain.md §6.2)")
def get_monthly(
    request: Request,
    principal: CurrentPrincipal,
    municipality: Municipality,
    month: Annotated[str, Query(description="Calendar month, e.g. 2026-11")],
    team_id: Annotated[str | None, Query(min_length=1)] = None,
    fmt: Format = "json",
) -> Any:
    try:
        parse_month(month)
    except BadPeriod as exc:
        raise _bad_request(str(exc)) from None
    authorize_scope(principal, municipality, team_id, None, purpose="reports")
    with _reader(request).connect() as conn:
        report = build_monthly(conn, municipality, month, team_id, _now(request))
    if principal.role == "udvalg":
        report = suppress(report)
    return _render(report, fmt)


def _per_1000(fv: FigureValue, children: int | None) -> Any:
    if not children or fv.figure.id not in COUNT_BASED:
        return None

    def scale(cell: Cell) -> float | None:
        return None if cell.value is None else cell.value * 1000 / children

    if fv.figure.kind == Kind.BREAKDOWN:
        return {k: scale(c) for k, c in fv.entries.items()}
    return scale(fv.cell) if fv.cell is not None else None


@router.get("/reports/compare", summary="One monthly figure for every municipality side by side (chef)")
def get_compare(
    request: Request,
    principal: CurrentPrincipal,
    month: Annotated[str, Query(description="Calendar month, e.g. 2026-11")],
    figure: Annotated[str, Query(description="A monthly figure id of domain.md §6.2")],
) -> dict[str, Any]:
    """Counts are also given per 1,000 children where the municipality's child population is loaded.
    Other municipalities' small counts are suppressed as for the committee (§6.4); your own are exact."""
    require_role(principal, "chef")
    try:
        year, _ = parse_month(month)
    except BadPeriod as exc:
        raise _bad_request(str(exc)) from None
    if figure not in MONTHLY_IDS:
        raise _bad_request(f"figure must be one of the monthly figures: {', '.join(MONTHLY_IDS)}")
    now = _now(request)
    rows: list[dict[str, Any]] = []
    with _reader(request).connect() as conn:
        for municipality in store.municipalities(conn):
            report = build_monthly(conn, municipality, month, None, now)
            if municipality != principal.municipality:
                report = suppress(report)
            fv = report.get(figure)
            pop = store.population_for(conn, municipality, year)
            children = pop[1] if pop else None
            rows.append({
                "municipality": municipality,
                "value": figure_json(fv),
                "children": children,
                "population_year": pop[0] if pop else None,
                "per_1000_children": _per_1000(fv, children),
                "suppressed_small_counts": report.suppressed,
            })
    fig = FIGURES[figure]
    return {
        "month": month,
        "figure": figure,
        "label": fig.label,
        "kind": fig.kind.value,
        "per_1000_children_applies": figure in COUNT_BASED,
        "generated_at": now.isoformat(),
        "municipalities": rows,
    }


class PopulationIn(BaseModel):
    year: int = Field(ge=1900, le=2200, description="The year the count is for (DST: 1 January).")
    children: int = Field(ge=0, description="Children 0-17 years living in the municipality.")


@router.put("/population/{municipality}", summary="Load a municipality's child population (chef, own)")
def put_population(
    request: Request,
    principal: CurrentPrincipal,
    municipality: Annotated[str, Path(pattern=r"^[0-9]{3}$")],
    body: PopulationIn,
) -> dict[str, Any]:
    require_role(principal, "chef")
    if municipality != principal.municipality:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail="a chef may load the population of their own municipality only")
    with _engine(request).begin() as conn:
        store.put_population(conn, municipality, body.year, body.children)
    return {"municipality": municipality, "year": body.year, "children": body.children}


@router.get("/population", summary="Loaded child populations (chef)")
def get_population(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    require_role(principal, "chef")
    with _reader(request).connect() as conn:
        return {"population": store.all_population(conn)}
