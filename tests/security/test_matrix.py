"""Who may see what, across the three real services (domain.md §1, §6.4, §8).

Every endpoint of every service (taken from the apps' own route tables, so a new endpoint cannot be
forgotten) x every role and no token x own/other municipality x own/other team (x own/other
caseworker for the `sagsbehandler`) gets exactly the status of the policy below. A `200` is then
checked for what it shows (nothing outside the caller's scope, and what is inside it really there),
and every call for the audit entries it writes: one per child of case-level data, none otherwise.

The services run wired together over the SQL event log (all callers) and over Kafka + PostgreSQL
(a subset of callers), with the scenario of `support.py` imported through intake.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from httpx import Response

from tests.e2e.stack import Stack, running_stack
from tests.security.support import (
    AT,
    CASES,
    CPR,
    CPRS_USED,
    MINTED,
    MONTH,
    OTHER_TEAM,
    OWN_CW,
    OWN_MUNI,
    OWN_TEAM,
    WEEK,
    Caller,
    all_callers,
    app_routes,
    audit_count,
    bearer,
    import_scenario,
    rec,
    token,
)

SERVICES = ("intake", "followup", "ledelsesinfo")
WRITERS = frozenset({"system", "sagsbehandler", "teamleder", "chef"})
CASE_ROLES = frozenset({"chef", "teamleder", "sagsbehandler"})
# Served by another helper's work; if present it is checked leniently (see test_metrics_if_present).
TOLERATED = frozenset({("GET", "/metrics")})

Rule = Callable[[Caller], int]


@dataclass
class Ctx:
    """What the probes need to know about the imported scenario (the children's pseudonyms)."""

    stack: Stack
    child_ids: dict[str, str] = field(default_factory=dict)
    serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))


# --------------------------------------------------------------------------- the policy


def authed(rule: Callable[[Caller], bool], ok: int = 200) -> Rule:
    """401 without a token; else `ok` if the rule allows, 403 if not."""

    def expected(c: Caller) -> int:
        if c.role is None:
            return 401
        return ok if rule(c) else 403

    return expected


def open_to_all(c: Caller) -> int:
    return 200


def sees_case_a(c: Caller) -> bool:
    return c.sees(OWN_MUNI, OWN_TEAM, OWN_CW)


def chef_own(c: Caller) -> bool:
    return c.role == "chef" and c.own_muni


def case_roles_own(c: Caller) -> bool:
    return c.own_muni and c.role in CASE_ROLES


def team_scope(c: Caller) -> bool:
    """Asking for team syd: the chef, or a teamleder / sagsbehandler of syd."""
    return c.own_muni and (c.role == "chef" or (c.role in ("teamleder", "sagsbehandler") and c.own_team))


def worklist_of_sr_a(c: Caller) -> bool:
    """Asking for caseworker sr-a without a team: chef; a teamleder (narrowed to their teams);
    sr-a themself."""
    return c.own_muni and (c.role in ("chef", "teamleder") or (c.role == "sagsbehandler" and c.own_cw))


def weekly_municipality(c: Caller) -> bool:
    """The municipality level: chef, teamleder, udvalg; a sagsbehandler gets their own scope."""
    return c.own_muni and c.role in ("chef", "teamleder", "sagsbehandler", "udvalg")


def report_team(c: Caller) -> bool:
    return c.own_muni and (c.role == "chef" or (c.role == "teamleder" and c.own_team))


def report_team_caseworker(c: Caller) -> bool:
    return report_team(c) or (c.own_muni and c.role == "sagsbehandler" and c.own_team and c.own_cw)


def report_caseworker(c: Caller) -> bool:
    """Caseworker sr-a without a team: a teamleder is resolved to sr-a's team if it is theirs."""
    return c.own_muni and (
        c.role == "chef" or (c.role == "teamleder" and c.own_team) or (c.role == "sagsbehandler" and c.own_cw)
    )


def monthly_municipality(c: Caller) -> bool:
    return c.own_muni and c.role in ("chef", "teamleder", "udvalg")


# --------------------------------------------------------------------------- content checks


def _scenario_cases(team: str | None = None, worker: str | None = None) -> list[tuple[str, str, str, str]]:
    return [
        (case_id, child, t, w)
        for muni, case_id, child, t, w in CASES
        if muni == OWN_MUNI and (team is None or t == team) and (worker is None or w == worker)
    ]


def check_case(c: Caller, r: Response, ctx: Ctx) -> None:
    body = r.json()
    assert (body["case_id"], body["municipality"], body["team_id"], body["caseworker_id"]) == (
        "S-A",
        OWN_MUNI,
        OWN_TEAM,
        OWN_CW,
    )
    assert body["child_id"] == ctx.child_ids["A"]


def deadlines_check(team: str | None, worker: str | None) -> Callable[[Caller, Response, Ctx], None]:
    def check(c: Caller, r: Response, ctx: Ctx) -> None:
        items = r.json()["deadlines"]
        for item in items:
            assert c.sees(OWN_MUNI, item["team_id"], item["caseworker_id"]), f"out of scope: {item}"
        # a sagsbehandler's worklist is their own
        own_worker = worker or (c.caseworker_id if c.role == "sagsbehandler" else None)
        expected = {
            case_id for case_id, _, t, w in _scenario_cases(team, own_worker) if c.sees(OWN_MUNI, t, w)
        }
        assert {i["case_id"] for i in items} == expected
        assert {i["child_id"] for i in items} == {
            ctx.child_ids[child] for case_id, child, _, _ in _scenario_cases() if case_id in expected
        }

    return check


def caseload_check(team: str | None) -> Callable[[Caller, Response, Ctx], None]:
    def check(c: Caller, r: Response, ctx: Ctx) -> None:
        got = {w["caseworker_id"]: w["open_cases"] for w in r.json()["caseworkers"]}
        if c.role == "sagsbehandler":
            assert c.caseworker_id is not None
            # their own line only, counted within the teams of their token
            mine = [t for _, _, t, _ in _scenario_cases(team, c.caseworker_id) if t in c.teams]
            expected = {c.caseworker_id: len(mine)}
        else:
            expected = {}
            for _, _, t, w in _scenario_cases(team):
                if c.sees(OWN_MUNI, t, w):
                    expected[w] = expected.get(w, 0) + 1
        assert got == expected

    return check


def check_report(c: Caller, r: Response, ctx: Ctx) -> None:
    body = r.json()
    assert body["municipality"] == OWN_MUNI
    committee = c.role == "udvalg"
    assert body["suppressed_small_counts"] is committee
    if committee:
        assert "caseworkers_behind" not in body["figures"]


def check_cpr(c: Caller, r: Response, ctx: Ctx) -> None:
    body = r.json()
    assert (body["child_id"], body["cpr"]) == (ctx.child_ids["A"], CPR["A"])
    assert r.headers["cache-control"] == "no-store"


def check_audit(c: Caller, r: Response, ctx: Ctx) -> None:
    body = r.json()
    assert (body["child_id"], body["municipality"]) == (ctx.child_ids["A"], OWN_MUNI)


def check_accepted(c: Caller, r: Response, ctx: Ctx) -> None:
    assert r.json()["status"] == "accepted"


def check_bulk(c: Caller, r: Response, ctx: Ctx) -> None:
    body = r.json()
    if c.own_muni:
        assert (body["accepted"], body["rejected"]) == (1, 0), body
    else:  # a line for a municipality outside the caller's credentials is refused, line by line
        assert (body["accepted"], body["rejected"]) == (0, 1), body
        assert body["results"][0]["field"] == "municipality"


# --------------------------------------------------------------------------- the probes


def new_record(ctx: Ctx) -> dict[str, Any]:
    """A fresh underretning for a new child of 657 (valid CPR, unique id)."""
    n = next(ctx.serial)
    cpr = f"{1 + n % 28:02d}{1 + n // 28 % 12:02d}15{4000 + n:04d}"
    CPRS_USED.add(cpr)
    return rec(
        f"matrix-{n}",
        "UnderretningReceived",
        OWN_MUNI,
        "2026-10-02T09:00:00+02:00",
        underretning_id=f"U-matrix-{n}",
        child={"cpr": cpr},
        notifier="3",
        reasons=["barn_adfaerd"],
        severity="bekymring",
        team_id="matrix",
    )


@dataclass(frozen=True)
class Probe:
    """One request to one endpoint, its policy, what a 200 must show, and the audit it writes."""

    name: str
    service: str
    method: str
    path: str  # the route template, as the app declares it
    expect: Rule
    url: Callable[[Ctx], str] | None = None  # default: the path itself
    params: dict[str, str] = field(default_factory=dict)
    query: Callable[[Ctx], dict[str, str]] | None = None  # more parameters, from the scenario
    body: Callable[[Ctx], dict[str, Any]] | None = None
    ndjson: Callable[[Ctx], str] | None = None
    check: Callable[[Caller, Response, Ctx], None] | None = None
    audit: str = "none"  # none | one | per_child (children in the body's deadlines)

    def send(self, ctx: Ctx, headers: dict[str, str]) -> Response:
        client = getattr(ctx.stack, self.service)
        url = self.url(ctx) if self.url else self.path
        params = {**self.params, **(self.query(ctx) if self.query else {})}
        if self.ndjson is not None:
            return client.request(  # type: ignore[no-any-return]
                self.method,
                url,
                params=params,
                content=self.ndjson(ctx).encode(),
                headers={**headers, "Content-Type": "application/x-ndjson"},
            )
        payload = self.body(ctx) if self.body else None
        return client.request(self.method, url, params=params, json=payload, headers=headers)  # type: ignore[no-any-return]


M = {"municipality": OWN_MUNI}
DOCS = [
    ("/openapi.json", "OpenAPI document"),
    ("/docs", "Swagger UI"),
    ("/docs/oauth2-redirect", "Swagger UI OAuth redirect"),
    ("/redoc", "ReDoc"),
]

PROBES: list[Probe] = [
    # ---- intake
    Probe(
        "POST /records",
        "intake",
        "POST",
        "/records",
        authed(lambda c: c.role in WRITERS and c.own_muni, 201),
        body=new_record,
        check=check_accepted,
    ),
    Probe(
        "POST /records/bulk",
        "intake",
        "POST",
        "/records/bulk",
        authed(lambda c: c.role in WRITERS),
        ndjson=lambda ctx: json.dumps(new_record(ctx)) + "\n",
        check=check_bulk,
    ),
    Probe(
        "GET cpr of child A",
        "intake",
        "GET",
        "/children/{child_id}/cpr",
        authed(sees_case_a),
        url=lambda ctx: f"/children/{ctx.child_ids['A']}/cpr",
        params=M,
        check=check_cpr,
        audit="one",
    ),
    Probe(
        "POST forget child F",
        "intake",
        "POST",
        "/children/{child_id}/forget",
        authed(chef_own),
        url=lambda ctx: f"/children/{ctx.child_ids['F']}/forget",
        params=M,
        audit="one",
    ),
    Probe(
        "GET /audit intake",
        "intake",
        "GET",
        "/audit",
        authed(chef_own),
        query=lambda ctx: {"child_id": ctx.child_ids["A"]},
        params=M,
        check=check_audit,
    ),
    # ---- followup
    Probe(
        "GET case S-A",
        "followup",
        "GET",
        "/cases/{case_id}",
        authed(sees_case_a),
        url=lambda ctx: "/cases/S-A",
        params={**M, "at": AT},
        check=check_case,
        audit="one",
    ),
    Probe(
        "GET /deadlines",
        "followup",
        "GET",
        "/deadlines",
        authed(case_roles_own),
        params={**M, "at": AT},
        check=deadlines_check(None, None),
        audit="per_child",
    ),
    Probe(
        "GET /deadlines team",
        "followup",
        "GET",
        "/deadlines",
        authed(team_scope),
        params={**M, "at": AT, "team_id": OWN_TEAM},
        check=deadlines_check(OWN_TEAM, None),
        audit="per_child",
    ),
    Probe(
        "GET /deadlines team+caseworker",
        "followup",
        "GET",
        "/deadlines",
        authed(sees_case_a),
        params={**M, "at": AT, "team_id": OWN_TEAM, "caseworker_id": OWN_CW},
        check=deadlines_check(OWN_TEAM, OWN_CW),
        audit="per_child",
    ),
    Probe(
        "GET /deadlines caseworker",
        "followup",
        "GET",
        "/deadlines",
        authed(worklist_of_sr_a),
        params={**M, "at": AT, "caseworker_id": OWN_CW},
        check=deadlines_check(None, OWN_CW),
        audit="per_child",
    ),
    Probe(
        "GET /deadlines other team",
        "followup",
        "GET",
        "/deadlines",
        authed(
            lambda c: (
                c.own_muni
                and (c.role == "chef" or (c.role in ("teamleder", "sagsbehandler") and not c.own_team))
            )
        ),
        params={**M, "at": AT, "team_id": OTHER_TEAM},
        check=deadlines_check(OTHER_TEAM, None),
        audit="per_child",
    ),
    Probe(
        "GET /caseload",
        "followup",
        "GET",
        "/caseload",
        authed(case_roles_own),
        params={**M, "at": AT},
        check=caseload_check(None),
    ),
    Probe(
        "GET /caseload team",
        "followup",
        "GET",
        "/caseload",
        authed(team_scope),
        params={**M, "at": AT, "team_id": OWN_TEAM},
        check=caseload_check(OWN_TEAM),
    ),
    Probe(
        "GET profile",
        "followup",
        "GET",
        "/profiles/{municipality}",
        authed(chef_own),
        url=lambda ctx: f"/profiles/{OWN_MUNI}",
    ),
    Probe(
        "PUT profile",
        "followup",
        "PUT",
        "/profiles/{municipality}",
        authed(chef_own),
        url=lambda ctx: f"/profiles/{OWN_MUNI}",
        body=lambda ctx: {"caseload_target": 25},
    ),
    Probe(
        "GET /audit followup",
        "followup",
        "GET",
        "/audit",
        authed(chef_own),
        query=lambda ctx: {"child_id": ctx.child_ids["A"]},
        params=M,
        check=check_audit,
    ),
    # ---- ledelsesinfo
    Probe(
        "weekly municipality",
        "ledelsesinfo",
        "GET",
        "/reports/weekly",
        authed(weekly_municipality),
        params={**M, "week": WEEK},
        check=check_report,
    ),
    Probe(
        "weekly team",
        "ledelsesinfo",
        "GET",
        "/reports/weekly",
        authed(report_team),
        params={**M, "week": WEEK, "team_id": OWN_TEAM},
        check=check_report,
    ),
    Probe(
        "weekly team+caseworker",
        "ledelsesinfo",
        "GET",
        "/reports/weekly",
        authed(report_team_caseworker),
        params={**M, "week": WEEK, "team_id": OWN_TEAM, "caseworker_id": OWN_CW},
        check=check_report,
    ),
    Probe(
        "weekly caseworker",
        "ledelsesinfo",
        "GET",
        "/reports/weekly",
        authed(report_caseworker),
        params={**M, "week": WEEK, "caseworker_id": OWN_CW},
        check=check_report,
    ),
    Probe(
        "weekly csv",
        "ledelsesinfo",
        "GET",
        "/reports/weekly",
        authed(weekly_municipality),
        params={**M, "week": WEEK, "format": "csv"},
    ),
    Probe(
        "monthly municipality",
        "ledelsesinfo",
        "GET",
        "/reports/monthly",
        authed(monthly_municipality),
        params={**M, "month": MONTH},
        check=check_report,
    ),
    Probe(
        "monthly team",
        "ledelsesinfo",
        "GET",
        "/reports/monthly",
        authed(report_team),
        params={**M, "month": MONTH, "team_id": OWN_TEAM},
        check=check_report,
    ),
    Probe(
        "compare",
        "ledelsesinfo",
        "GET",
        "/reports/compare",
        authed(lambda c: c.role == "chef"),
        params={"month": MONTH, "figure": "underretninger_by_notifier_12m"},
    ),
    Probe(
        "PUT population",
        "ledelsesinfo",
        "PUT",
        "/population/{municipality}",
        authed(chef_own),
        url=lambda ctx: f"/population/{OWN_MUNI}",
        body=lambda ctx: {"year": 2026, "children": 18000},
    ),
    Probe("GET population", "ledelsesinfo", "GET", "/population", authed(lambda c: c.role == "chef")),
]
for _svc in SERVICES:
    PROBES += [
        Probe(f"{_svc} /health", _svc, "GET", "/health", open_to_all),
        Probe(f"{_svc} /ready", _svc, "GET", "/ready", open_to_all),
    ]
    PROBES += [Probe(f"{_svc} {label}", _svc, "GET", path, open_to_all) for path, label in DOCS]

# The subset of callers run over Kafka + PostgreSQL.
KAFKA_CALLERS = [
    Caller(None),
    Caller("sagsbehandler"),
    Caller("sagsbehandler", own_cw=False),
    Caller("sagsbehandler", own_team=False),
    Caller("teamleder"),
    Caller("teamleder", own_team=False),
    Caller("chef"),
    Caller("chef", own_muni=False),
    Caller("udvalg"),
    Caller("system"),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(
    scope="module",
    params=["sql", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.postgres])],
)
def ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    tmp: Path = tmp_path_factory.mktemp(f"matrix-{request.param}")
    with running_stack(request.param, tmp, request) as stack:
        import_scenario(stack)
        context = Ctx(stack)
        chef = bearer(token("chef", sub="matrix-setup"))
        for case_id, child, _, _ in _scenario_cases():
            r = stack.followup.get(f"/cases/{case_id}", params={**M, "at": AT}, headers=chef)
            assert r.status_code == 200, r.text
            context.child_ids[child] = r.json()["child_id"]
        yield context


def _callers(ctx: Ctx) -> list[Caller]:
    return all_callers() if ctx.stack.transport == "sql" else KAFKA_CALLERS


# --------------------------------------------------------------------------- the tests


def test_every_route_of_every_service_is_in_the_matrix(ctx: Ctx) -> None:
    served = {
        (svc, method, path) for svc in SERVICES for method, path in app_routes(getattr(ctx.stack, svc).app)
    }
    probed = {(p.service, p.method, p.path) for p in PROBES}
    unknown = {r for r in served - probed if (r[1], r[2]) not in TOLERATED}
    assert not unknown, f"routes without an expectation in the matrix (add them to PROBES): {sorted(unknown)}"
    stale = probed - served
    assert not stale, f"the matrix names routes no service serves: {sorted(stale)}"


def test_the_matrix_is_as_large_as_claimed(ctx: Ctx) -> None:
    if ctx.stack.transport == "sql":
        assert len(all_callers()) == 25
        assert len(PROBES) * len(all_callers()) >= 25 * 38


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_matrix(ctx: Ctx, probe: Probe) -> None:
    apps = {svc: getattr(ctx.stack, svc).app for svc in SERVICES}
    failures: list[str] = []
    for caller in _callers(ctx):
        headers = caller.headers()
        before = {svc: audit_count(app) for svc, app in apps.items()}
        response = probe.send(ctx, headers)
        written = {svc: audit_count(app) - before[svc] for svc, app in apps.items()}
        want = probe.expect(caller)
        where = f"{caller.name}: {probe.method} {probe.path} ({probe.name})"
        if response.status_code != want:
            failures.append(f"{where}: expected {want}, got {response.status_code} {response.text[:200]}")
            continue
        tok = headers.get("Authorization", "Bearer ")[len("Bearer ") :]
        if tok and tok in response.text:
            failures.append(f"{where}: the response echoes the token")
        if want == 401 and response.headers.get("www-authenticate") != "Bearer":
            failures.append(f"{where}: 401 without WWW-Authenticate: Bearer")
        expected_audit = {svc: 0 for svc in SERVICES}
        if response.status_code == 200 and probe.audit == "one":
            expected_audit[probe.service] = 1
        elif response.status_code == 200 and probe.audit == "per_child":
            expected_audit[probe.service] = len({d["child_id"] for d in response.json()["deadlines"]})
        if written != expected_audit:
            failures.append(f"{where}: audit entries written {written}, expected {expected_audit}")
        if response.status_code in (200, 201) and probe.check is not None:
            try:
                probe.check(caller, response, ctx)
            except AssertionError as exc:
                failures.append(f"{where}: wrong content: {exc}")
    assert not failures, "\n".join(failures)


def test_metrics_if_present(ctx: Ctx) -> None:
    """/metrics belongs to another piece of work: if a service serves it, it may be open (an
    internal scrape endpoint) or guarded, but never shows a child or a CPR and never a 5xx."""
    for svc in SERVICES:
        client = getattr(ctx.stack, svc)
        if ("GET", "/metrics") not in set(app_routes(client.app)):
            continue
        for caller in _callers(ctx):
            r = client.get("/metrics", headers=caller.headers())
            allowed = {200, 401} if caller.role is None else {200, 403}
            assert r.status_code in allowed, (svc, caller.name, r.status_code)
            for child_id in ctx.child_ids.values():
                assert child_id not in r.text
            for cpr in CPR.values():
                assert cpr not in r.text and f"{cpr[:6]}-{cpr[6:]}" not in r.text
            assert not any(tok in r.text for tok in MINTED)
