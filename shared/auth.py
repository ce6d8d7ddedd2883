"""Bearer-JWT authentication and scope authorisation shared by the three services (domain.md §1, §8).

Authentication: `CurrentPrincipal` (a FastAPI dependency) turns the `Authorization: Bearer` token into
a `Principal`; any problem with the token is `401` with `WWW-Authenticate: Bearer`, and the token is
never echoed. Authorisation: `authorize_scope` (raises `403`), `can_see_case` (for filtering lists)
and `visible_teams` decide what a principal may see.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn, cast, get_args

import jwt
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.config import ServiceSettings

Role = Literal["sagsbehandler", "teamleder", "chef", "udvalg", "system"]
ROLES: frozenset[str] = frozenset(get_args(Role))
Purpose = Literal["cases", "reports", "write"]

LEEWAY_SECONDS = 30
MUNICIPALITY_RE = re.compile(r"^[0-9]{3}$")
_WRITERS: frozenset[str] = frozenset({"system", "sagsbehandler", "teamleder", "chef"})


class AuthError(Exception):
    """The token is missing, malformed, expired, badly signed or lacks a valid claim.

    The message names the problem only; it never contains the token.
    """


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: who, which role, and the scope the credentials grant."""

    sub: str
    role: Role
    municipality: str
    teams: frozenset[str]
    caseworker_id: str | None


# --------------------------------------------------------------------------- authentication


def _verification_key(settings: ServiceSettings) -> str:
    if settings.auth_jwt_algorithm == "RS256":
        return settings.auth_jwt_public_key
    return settings.auth_jwt_secret


def decode_token(token: str, settings: ServiceSettings) -> Principal:
    """Verify `token` with the configured algorithm and key and return its principal.

    Only `settings.auth_jwt_algorithm` is accepted (no `alg: none`, no HS/RS confusion); `exp` is
    required; clocks may differ by 30 s. Raises `AuthError` on any problem.
    """
    algorithm = settings.auth_jwt_algorithm
    key = _verification_key(settings)
    if not key:
        raise AuthError("no verification key configured")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={"require": ["exp", "sub"], "verify_signature": True},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("bad token signature") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError("token algorithm not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the claim {exc.claim!r}") from None
    except (jwt.InvalidTokenError, ValueError, TypeError):
        # Messages of the library may quote parts of the token: use our own.
        raise AuthError("malformed or invalid token") from None
    return principal_from_claims(claims)


class _VerifiedTokens:
    """Tokens verified recently, so that a client sending the same token with every request pays the
    signature check once per `ttl` seconds instead of every time.

    Only tokens that passed `decode_token` are kept, keyed by the token *and* the algorithm and key
    that verified it (a service with another key never sees them). An entry lives `ttl` seconds and
    never beyond the token's own `exp` (plus the same leeway `decode_token` grants), so an expired
    token is refused exactly as without the cache. Bounded: the oldest entries go first.
    """

    def __init__(self, ttl: float = 30.0, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, token: str, settings: ServiceSettings) -> Principal:
        key = (token, settings.auth_jwt_algorithm, _verification_key(settings))
        now = time.time()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        principal = decode_token(token, settings)  # raises AuthError
        until = now + self.ttl
        exp = _unverified_exp(token)
        if exp is None:
            return principal  # cannot happen after decode_token (exp is required): do not keep it
        until = min(until, exp + LEEWAY_SECONDS)
        with self._lock:
            self._entries[key] = (until, principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return principal

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _unverified_exp(token: str) -> float | None:
    """The `exp` of a token already verified by `decode_token` (read again without checking)."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


verified_tokens = _VerifiedTokens()


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Validate the domain claims (`sub`, `role`, `municipality`, `teams`, `caseworker_id`)."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise AuthError("claim 'sub' must be a non-empty string")
    role = claims.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise AuthError("claim 'role' must be one of " + ", ".join(sorted(ROLES)))
    municipality = claims.get("municipality")
    if not isinstance(municipality, str) or not MUNICIPALITY_RE.match(municipality):
        raise AuthError("claim 'municipality' must be a 3-digit municipality code")

    raw_teams = claims.get("teams")
    if raw_teams is None:
        if role in ("sagsbehandler", "teamleder"):
            raise AuthError(f"claim 'teams' is required for the role {role}")
        raw_teams = []
    if not isinstance(raw_teams, list) or not all(isinstance(t, str) and t for t in raw_teams):
        raise AuthError("claim 'teams' must be a list of team ids")
    if not raw_teams and role in ("sagsbehandler", "teamleder"):
        raise AuthError(f"claim 'teams' must name at least one team for the role {role}")

    caseworker_id = claims.get("caseworker_id")
    if caseworker_id is not None and (not isinstance(caseworker_id, str) or not caseworker_id):
        raise AuthError("claim 'caseworker_id' must be a non-empty string")
    if role == "sagsbehandler" and caseworker_id is None:
        raise AuthError("claim 'caseworker_id' is required for the role sagsbehandler")

    return Principal(
        sub=sub,
        role=cast(Role, role),  # checked against ROLES above
        municipality=municipality,
        teams=frozenset(raw_teams),
        caseworker_id=caseworker_id,
    )


# Declared only so that the OpenAPI document shows the bearer scheme; the header is parsed below.
_bearer_scheme = HTTPBearer(auto_error=False, description="JWT with the claims of domain.md §8")


def _unauthorized(detail: str) -> NoReturn:
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)] = None,
) -> Principal:
    """FastAPI dependency: the principal of the request's bearer token, or `401`.

    Reads the settings from `request.app.state.settings`. A coroutine (it does no I/O, only a
    signature check, remembered for a short while by `verified_tokens`): no thread-pool hop per
    request.
    """
    header = request.headers.get("authorization")
    if not header:
        _unauthorized("not authenticated: bearer token required")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        _unauthorized("not authenticated: bearer token required")
    settings: ServiceSettings = request.app.state.settings
    try:
        principal = verified_tokens.principal(token, settings)
    except AuthError as exc:
        _unauthorized(f"invalid bearer token: {exc}")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


# --------------------------------------------------------------------------- authorisation


def _forbidden(detail: str) -> NoReturn:
    raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)


def require_role(principal: Principal, *roles: Role) -> None:
    """`403` unless the principal has one of `roles`."""
    if principal.role not in roles:
        _forbidden(f"role {principal.role} may not use this endpoint")


def _scope_allowed(
    principal: Principal,
    municipality: str,
    team_id: str | None,
    caseworker_id: str | None,
    purpose: Purpose,
) -> bool:
    if municipality != principal.municipality:
        return False
    role = principal.role
    own_team = team_id is None or team_id in principal.teams
    own_caseworker = principal.caseworker_id is not None and caseworker_id == principal.caseworker_id
    if purpose == "write":
        return role in _WRITERS
    if purpose == "cases":
        if role == "chef":
            return True
        if role == "teamleder":
            return own_team
        if role == "sagsbehandler":
            return own_caseworker and own_team
        return False  # udvalg never sees a case; system reads nothing personal
    # reports
    if role == "chef":
        return True
    if role == "teamleder":
        if team_id is None:
            return caseworker_id is None  # municipality level; a caseworker needs their team_id
        return team_id in principal.teams
    if role == "sagsbehandler":
        return own_caseworker and own_team
    if role == "udvalg":
        return team_id is None and caseworker_id is None
    return False


def authorize_scope(
    principal: Principal,
    municipality: str,
    team_id: str | None = None,
    caseworker_id: str | None = None,
    *,
    purpose: Purpose,
) -> None:
    """Raise `403` unless the principal may see (or, for `write`, post into) this scope.

    Another municipality is `403` for every role. Then, by `purpose`:

    - `write` (posting records): `system`, `sagsbehandler`, `teamleder`, `chef`.
    - `cases` (a case, the deadlines worklist, the caseload):
      `chef` the whole municipality; `teamleder` one of their teams, or `team_id=None` meaning
      "all my teams" (the caller must then filter to `principal.teams`, e.g. with `can_see_case`);
      `sagsbehandler` only `caseworker_id == principal.caseworker_id` (and `team_id` None or one of
      theirs): a request without `caseworker_id` must be narrowed by the caller to
      `principal.caseworker_id` *before* calling, so `caseworker_id=None` is refused;
      `udvalg` and `system` never.
    - `reports`: `chef` everything; `teamleder` the municipality level (no team, no caseworker) or
      one of their teams, with or without a caseworker of it (a caseworker scope needs its
      `team_id`: the caller resolves the caseworker's team first, otherwise `403`);
      `sagsbehandler` their own caseworker scope only; `udvalg` the municipality level only;
      `system` never.
    """
    if municipality != principal.municipality:
        _forbidden("this municipality is outside your credentials")
    if not _scope_allowed(principal, municipality, team_id, caseworker_id, purpose):
        _forbidden(f"role {principal.role} may not see this scope ({purpose})")


def can_see_case(
    principal: Principal, municipality: str, team_id: str | None, caseworker_id: str | None
) -> bool:
    """Whether the principal may see one concrete case (team and caseworker as the case has them).

    Unlike `authorize_scope`, `team_id=None` here is a case without a team: a `teamleder` does
    not see it, a `chef` does, a `sagsbehandler` does if it is their own case.
    """
    if principal.role == "teamleder" and team_id is None:
        return False
    return _scope_allowed(principal, municipality, team_id, caseworker_id, "cases")


def visible_teams(principal: Principal) -> frozenset[str] | None:
    """The teams whose cases the principal may see: `None` = every team of the municipality
    (`chef`); the token's teams for `teamleder`/`sagsbehandler`; empty for `udvalg`/`system`."""
    if principal.role == "chef":
        return None
    if principal.role in ("teamleder", "sagsbehandler"):
        return principal.teams
    return frozenset()
