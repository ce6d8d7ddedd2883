"""Shared pieces of the security tests: the scenario, the callers, tokens, routes and audit counts.

The scenario (imported through intake, read back through follow-up and ledelsesinfo):

| municipality | case | child | team | caseworker |
|---|---|---|---|---|
| 657 | S-A | A | syd  | sr-a |
| 657 | S-B | B | syd  | sr-b |
| 657 | S-N | N | nord | sr-n |
| 657 | S-F | F | syd  | sr-a |  (F is the child the matrix asks intake to forget)
| 101 | S-A | X | syd  | sr-a |  (same ids in another municipality, on purpose)

Each child has an underretning (received Thursday 1 October 2026, never assessed) that opened its
case, so at `AT` every case has listed deadlines (acute assessment overdue, receipt due soon).

The callers of the matrix hold tokens for 657 ("own") or 101 ("other"), for team syd ("own") or
nord ("other"), as caseworker sr-a ("own") or sr-b ("other").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from shared.audit import audit_log
from shared.mint_token import mint_token
from tests.e2e.stack import SECRET, Stack

OWN_MUNI, OTHER_MUNI = "657", "101"
OWN_TEAM, OTHER_TEAM = "syd", "nord"
OWN_CW, OTHER_CW = "sr-a", "sr-b"
AT = "2026-10-05T12:00:00+02:00"  # the moment follow-up is asked about
WEEK, MONTH = "2026-W40", "2026-10"

# CPR numbers of the scenario (valid dates, century digit 4 -> 20xx for years 00-36)
CPR = {"A": "1203154321", "B": "0507164322", "N": "2211134323", "F": "1809144324", "X": "0404124325"}

# Every other CPR number the security tests send (valid or not), for the log and payload scans
CPRS_USED: set[str] = set()


def test_cprs() -> set[str]:
    """The 10 digits of every CPR number the security tests have sent so far."""
    return {c.replace("-", "") for c in (*CPR.values(), *CPRS_USED)}


test_cprs.__test__ = False  # type: ignore[attr-defined]  # not a test


# (municipality, case_id, child, team_id, caseworker_id)
CASES: tuple[tuple[str, str, str, str, str], ...] = (
    (OWN_MUNI, "S-A", "A", OWN_TEAM, OWN_CW),
    (OWN_MUNI, "S-B", "B", OWN_TEAM, OTHER_CW),
    (OWN_MUNI, "S-N", "N", OTHER_TEAM, "sr-n"),
    (OWN_MUNI, "S-F", "F", OWN_TEAM, OWN_CW),
    (OTHER_MUNI, "S-A", "X", OWN_TEAM, OWN_CW),
)


def rec(rid: str, type_: str, municipality: str, at: str, **data: Any) -> dict[str, Any]:
    return {"record_id": rid, "type": type_, "municipality": municipality, "occurred_at": at, "data": data}


def scenario_records(municipality: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for muni, case_id, child, team, worker in CASES:
        if muni != municipality:
            continue
        uid = f"U-{child}"
        out += [
            rec(
                f"{muni}-{child}-1",
                "UnderretningReceived",
                muni,
                "2026-10-01T09:00:00+02:00",
                underretning_id=uid,
                child={"cpr": CPR[child]},
                notifier="2",
                reasons=["barn_skole"],
                severity="bekymring",
                team_id=team,
            ),
            rec(
                f"{muni}-{child}-2",
                "CaseOpened",
                muni,
                "2026-10-01T10:00:00+02:00",
                case_id=case_id,
                child={"cpr": CPR[child]},
                team_id=team,
                underretning_id=uid,
            ),
            rec(
                f"{muni}-{child}-3",
                "CaseworkerAssigned",
                muni,
                "2026-10-01T10:05:00+02:00",
                case_id=case_id,
                caseworker_id=worker,
            ),
        ]
    return out


def import_scenario(stack: Stack) -> None:
    for muni in (OWN_MUNI, OTHER_MUNI):
        records = scenario_records(muni)
        result = stack.bulk(records, municipality=muni)
        assert result.status_code == 200, result.text
        body = result.json()
        assert (body["accepted"], body["rejected"]) == (len(records), 0), body
    stack.sync()


# --------------------------------------------------------------------------- tokens

MINTED: set[str] = set()  # every token the security tests produce, to scan logs for


def token(
    role: str,
    municipality: str = OWN_MUNI,
    teams: tuple[str, ...] = (),
    caseworker_id: str | None = None,
    *,
    sub: str | None = None,
    secret: str = SECRET,
    ttl_minutes: float = 24 * 60,  # some are minted once per session: outlive a slow suite
) -> str:
    minted = mint_token(
        role=role,
        municipality=municipality,
        teams=teams,
        caseworker_id=caseworker_id,
        sub=sub or f"{role}-{municipality}-{'-'.join(teams) or 'x'}-{caseworker_id or 'x'}",
        secret=secret,
        ttl_minutes=ttl_minutes,
    )
    MINTED.add(minted)
    return minted


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT built by hand (PyJWT refuses to build some attacks): HMAC-SHA256 with `key`, or no
    signature at all when `key` is None."""
    claims = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    made = f"{signing_input}.{_b64(signature)}"
    MINTED.add(made)
    return made


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@dataclass(frozen=True)
class Caller:
    """Who calls: a role (None = no token) with a token for own/other municipality, team, caseworker."""

    role: str | None
    own_muni: bool = True
    own_team: bool = True
    own_cw: bool = True

    @property
    def name(self) -> str:
        if self.role is None:
            return "no token"
        parts = [
            self.role,
            "own-muni" if self.own_muni else "OTHER-muni",
            "own-team" if self.own_team else "OTHER-team",
        ]
        if self.role == "sagsbehandler":
            parts.append("own-cw" if self.own_cw else "OTHER-cw")
        return " ".join(parts)

    @property
    def municipality(self) -> str:
        return OWN_MUNI if self.own_muni else OTHER_MUNI

    @property
    def teams(self) -> tuple[str, ...]:
        return (OWN_TEAM,) if self.own_team else (OTHER_TEAM,)

    @property
    def caseworker_id(self) -> str | None:
        if self.role != "sagsbehandler":
            return None
        return OWN_CW if self.own_cw else OTHER_CW

    def token(self) -> str | None:
        if self.role is None:
            return None
        return token(self.role, self.municipality, self.teams, self.caseworker_id)

    def headers(self) -> dict[str, str]:
        tok = self.token()
        return {} if tok is None else bearer(tok)

    def sees(self, municipality: str, team_id: str | None, caseworker_id: str | None) -> bool:
        """The oracle of domain.md §1: may this caller see a case with this team and caseworker?"""
        if self.role is None or municipality != self.municipality:
            return False
        if self.role == "chef":
            return True
        if self.role == "teamleder":
            return team_id in self.teams
        if self.role == "sagsbehandler":
            return caseworker_id == self.caseworker_id and team_id in self.teams
        return False


def all_callers() -> list[Caller]:
    """No token, then every role x own/other municipality x own/other team (x own/other caseworker)."""
    callers = [Caller(None)]
    for role in ("sagsbehandler", "teamleder", "chef", "udvalg", "system"):
        for own_muni in (True, False):
            for own_team in (True, False):
                for own_cw in (True, False) if role == "sagsbehandler" else (True,):
                    callers.append(Caller(role, own_muni, own_team, own_cw))
    return callers


# --------------------------------------------------------------------------- routes and audit


def app_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD left out: Starlette adds it to GET)."""
    for route in iter_route_contexts(app.routes):
        path = route.path
        for method in sorted(route.methods or ()):
            if method != "HEAD" and path is not None:
                yield method, path


def audit_count(app: Any) -> int:
    """Rows in the service's audit log (0 for a service without one)."""
    engine = app.state.engine
    from sqlalchemy import inspect

    with engine.connect() as conn:
        if not inspect(conn).has_table(audit_log.name):
            return 0
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def audit_rows(app: Any) -> list[dict[str, Any]]:
    with app.state.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def now_utc() -> datetime:
    return datetime.now(UTC)
