"""Mint a bearer JWT for local use (domain.md §8).

    python -m shared.mint_token --role chef --municipality 657 [--teams a,b] [--caseworker-id x]
                                [--sub name] [--ttl-minutes 480]

Signs with HS256 and `AUTH_JWT_SECRET` from the environment (default: the development secret).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from shared.auth import ROLES, AuthError, principal_from_claims
from shared.config import DEV_JWT_SECRET


def mint_token(
    *,
    role: str,
    municipality: str,
    teams: Iterable[str] = (),
    caseworker_id: str | None = None,
    sub: str | None = None,
    ttl_minutes: float = 480,
    secret: str | None = None,
    now: datetime | None = None,
) -> str:
    """An HS256 token with the claims of domain.md §8. Raises `AuthError` on claims that
    `decode_token` would refuse (e.g. a `sagsbehandler` without `caseworker_id`)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub or f"{role}-{municipality}",
        "role": role,
        "municipality": municipality,
        "iat": issued,
        "exp": issued + timedelta(minutes=ttl_minutes),
    }
    team_list = [t for t in teams if t]
    if team_list or role in ("sagsbehandler", "teamleder"):
        claims["teams"] = team_list
    if caseworker_id:
        claims["caseworker_id"] = caseworker_id
    principal_from_claims(claims)
    key = secret if secret is not None else os.environ.get("AUTH_JWT_SECRET") or DEV_JWT_SECRET
    return jwt.encode(claims, key, algorithm="HS256")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.mint_token", description=__doc__.split("\n")[1])
    parser.add_argument("--role", required=True, choices=sorted(ROLES))
    parser.add_argument("--municipality", required=True, help="3-digit municipality code, e.g. 657")
    parser.add_argument("--teams", default="", help="comma-separated team ids")
    parser.add_argument("--caseworker-id", default=None)
    parser.add_argument("--sub", default=None, help="subject (user name); default <role>-<municipality>")
    parser.add_argument("--ttl-minutes", type=float, default=480.0)
    args = parser.parse_args(argv)
    if args.ttl_minutes <= 0:
        parser.error("--ttl-minutes must be positive")
    try:
        token = mint_token(
            role=args.role,
            municipality=args.municipality,
            teams=[t.strip() for t in args.teams.split(",")],
            caseworker_id=args.caseworker_id,
            sub=args.sub,
            ttl_minutes=args.ttl_minutes,
        )
    except AuthError as exc:
        parser.error(str(exc))
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
