"""Bad credentials against the real services: exactly 401 (or 403 for another municipality), with
`WWW-Authenticate: Bearer`, and never an echo of the token (domain.md §8).

Every service is asked on a data endpoint the `chef` of 657 may read, so that the only thing wrong
with each request is its credentials. The RS256 production option is run on real services too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from services.followup.app import create_app as followup_app
from services.followup.config import Settings as FollowupSettings
from services.intake.app import create_app as intake_app
from services.intake.config import Settings as IntakeSettings
from services.ledelsesinfo.app import create_app as ledelsesinfo_app
from services.ledelsesinfo.config import Settings as LedelsesinfoSettings
from shared.migrations import migrate_service
from tests.e2e.stack import SECRET, Stack, running_stack
from tests.security.support import (
    AT,
    CPRS_USED,
    MINTED,
    OWN_MUNI,
    WEEK,
    bearer,
    handmade,
    import_scenario,
    rec,
    token,
)

ROOT = Path(__file__).resolve().parents[2]


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid chef claims for 657 expiring in ten minutes; `key=None` removes a claim."""
    base: dict[str, Any] = {
        "sub": "live-chef",
        "role": "chef",
        "municipality": OWN_MUNI,
        "exp": datetime.now(UTC) + timedelta(minutes=10),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    made = jwt.encode(payload, secret, algorithm=algorithm)
    MINTED.add(made)
    return made


def _past(seconds: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


class Rsa:
    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.public_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, payload: dict[str, Any]) -> str:
        made = jwt.encode(payload, self.private_pem, algorithm="RS256")
        MINTED.add(made)
        return made


RSA_KEY, OTHER_RSA_KEY = Rsa(), Rsa()


def _tampered() -> str:
    header, _, signature = signed(claims(role="udvalg")).split(".")
    body = handmade({"alg": "HS256"}, claims(role="chef"), None).split(".")[1]
    made = f"{header}.{body}.{signature}"
    MINTED.add(made)
    return made


# (name, token factory, expected status)
TOKENS: list[tuple[str, Callable[[], str], int]] = [
    ("valid chef (control)", lambda: signed(claims()), 200),
    ("expired 10 s ago, inside the 30 s clock skew", lambda: signed(claims(exp=_past(10))), 200),
    ("expired 45 s ago, beyond the clock skew", lambda: signed(claims(exp=_past(45))), 401),
    ("expired an hour ago", lambda: signed(claims(exp=_past(3600))), 401),
    (
        "not valid before in 5 minutes",
        lambda: signed(claims(nbf=datetime.now(UTC) + timedelta(minutes=5))),
        401,
    ),
    ("signed with another secret", lambda: signed(claims(), "another-secret-of-sufficient-length-42"), 401),
    ("alg none, no signature", lambda: handmade({"alg": "none", "typ": "JWT"}, claims(), None), 401),
    (
        "alg none with an HMAC signature",
        lambda: handmade({"alg": "none", "typ": "JWT"}, claims(), SECRET.encode()),
        401,
    ),
    ("alg None spelled otherwise", lambda: handmade({"alg": "None", "typ": "JWT"}, claims(), None), 401),
    ("HS512 with the right secret", lambda: signed(claims(), algorithm="HS512"), 401),
    ("RS256 token while HS256 is configured", lambda: RSA_KEY.sign(claims()), 401),
    ("tampered payload (udvalg made chef)", _tampered, 401),
    ("missing exp", lambda: signed(claims(exp=None)), 401),
    ("missing sub", lambda: signed(claims(sub=None)), 401),
    ("missing role", lambda: signed(claims(role=None)), 401),
    ("unknown role", lambda: signed(claims(role="admin")), 401),
    ("missing municipality", lambda: signed(claims(municipality=None)), 401),
    ("municipality not three digits", lambda: signed(claims(municipality="6570")), 401),
    ("teamleder without teams", lambda: signed(claims(role="teamleder")), 401),
    ("sagsbehandler without caseworker_id", lambda: signed(claims(role="sagsbehandler", teams=["syd"])), 401),
    ("chef of another municipality", lambda: token("chef", "101"), 403),
]

# (name, Authorization header or None)
MALFORMED: list[tuple[str, str | None]] = [
    ("no header", None),
    ("empty header", ""),
    ("scheme only", "Bearer"),
    ("scheme and blanks", "Bearer    "),
    ("basic auth", "Basic Y2hlZjpzZWNyZXQ="),
    ("token without scheme", "TOKEN-WITHOUT-SCHEME"),
    ("not a JWT", "Bearer not-a-jwt"),
    ("two segments", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"),
    ("garbage segments", "Bearer a.b.c"),
    ("two tokens", "Bearer x.y.z x.y.z"),
    ("non-JSON header segment", "Bearer bm90IGpzb24.eyJzdWIiOiJ4In0.c2ln"),
]


def _targets(stack: Stack, child_a: str) -> dict[str, Callable[[dict[str, str]], Any]]:
    """One data endpoint per service that the chef of 657 may use."""
    serial = iter(range(1, 10_000))

    def new_record() -> dict[str, Any]:
        n = next(serial)
        cpr = f"{1 + n % 28:02d}0316{4100 + n:04d}"
        CPRS_USED.add(cpr)
        return rec(
            f"live-{n}",
            "UnderretningReceived",
            OWN_MUNI,
            "2026-10-02T09:00:00+02:00",
            underretning_id=f"U-live-{n}",
            child={"cpr": cpr},
            notifier="3",
            reasons=["barn_adfaerd"],
            severity="bekymring",
            team_id="live",
        )

    return {
        "intake GET /children/{child_id}/cpr": lambda h: stack.intake.get(
            f"/children/{child_a}/cpr", params={"municipality": OWN_MUNI}, headers=h
        ),
        "intake POST /records": lambda h: stack.intake.post("/records", json=new_record(), headers=h),
        "followup GET /cases/{case_id}": lambda h: stack.followup.get(
            "/cases/S-A", params={"municipality": OWN_MUNI, "at": AT}, headers=h
        ),
        "followup GET /deadlines": lambda h: stack.followup.get(
            "/deadlines", params={"municipality": OWN_MUNI, "at": AT}, headers=h
        ),
        "ledelsesinfo GET /reports/weekly": lambda h: stack.ledelsesinfo.get(
            "/reports/weekly", params={"municipality": OWN_MUNI, "week": WEEK}, headers=h
        ),
    }


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, dict[str, Callable[[dict[str, str]], Any]]]]:
    with running_stack("sql", tmp_path_factory.mktemp("tokens"), request) as stack:
        import_scenario(stack)
        case = stack.followup.get(
            "/cases/S-A", params={"municipality": OWN_MUNI}, headers=bearer(token("chef"))
        ).json()
        yield stack, _targets(stack, case["child_id"])


TARGETS = [
    "intake GET /children/{child_id}/cpr",
    "intake POST /records",
    "followup GET /cases/{case_id}",
    "followup GET /deadlines",
    "ledelsesinfo GET /reports/weekly",
]


def _assert_no_echo(text: str, tok: str) -> None:
    assert tok not in text
    for part in tok.split("."):
        if len(part) >= 8:
            assert part not in text, "a part of the token is echoed"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("make", "expected"), [t[1:] for t in TOKENS], ids=[t[0] for t in TOKENS])
def test_tokens_against_the_real_services(
    live: Any, target: str, make: Callable[[], str], expected: int
) -> None:
    _, targets = live
    tok = make()
    response = targets[target](bearer(tok))
    ok = 201 if target == "intake POST /records" else 200
    assert response.status_code == (ok if expected == 200 else expected), response.text
    _assert_no_echo(response.text, tok)
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"].startswith(("invalid bearer token", "not authenticated"))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("header", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_missing_or_malformed_authorization_is_401(live: Any, target: str, header: str | None) -> None:
    _, targets = live
    response = targets[target]({} if header is None else {"Authorization": header})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    credentials = (header or "").split(" ")[-1]
    if len(credentials) >= 8:
        assert credentials not in response.text


def test_the_mint_command_mints_a_token_the_services_accept(live: Any) -> None:
    _, targets = live
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.mint_token",
            "--role",
            "teamleder",
            "--municipality",
            OWN_MUNI,
            "--teams",
            "syd",
            "--sub",
            "cli-user",
            "--ttl-minutes",
            "5",
        ],
        cwd=ROOT,
        env={**os.environ, "AUTH_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    )
    minted = out.stdout.strip()
    MINTED.add(minted)
    assert targets["followup GET /cases/{case_id}"](bearer(minted)).status_code == 200
    assert targets["ledelsesinfo GET /reports/weekly"](bearer(minted)).status_code == 200
    # minted with the development secret instead: refused by services configured with another one
    env = {k: v for k, v in os.environ.items() if k != "AUTH_JWT_SECRET"}
    dev = subprocess.run(
        [sys.executable, "-m", "shared.mint_token", "--role", "chef", "--municipality", OWN_MUNI],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    MINTED.add(dev)
    assert targets["followup GET /cases/{case_id}"](bearer(dev)).status_code == 401


# --------------------------------------------------------------------------- RS256


@pytest.fixture(scope="module")
def rs256_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TestClient]]:
    """The three services configured for RS256 with a public key (the production option)."""
    tmp = tmp_path_factory.mktemp("rs256")
    urls = {svc: f"sqlite:///{tmp}/{svc}.db" for svc in ("intake", "followup", "ledelsesinfo")}
    for svc, url in urls.items():
        migrate_service(svc, url)
    common: dict[str, Any] = {
        "auth_jwt_algorithm": "RS256",
        "auth_jwt_public_key": RSA_KEY.public_pem,
        "auth_jwt_secret": SECRET,  # present but must not be used
        "event_store_url": urls["intake"],
    }
    apps = {
        "intake": intake_app(IntakeSettings(**common, run_relay=False)),
        "followup": followup_app(FollowupSettings(**common, database_url=urls["followup"], run_worker=False)),
        "ledelsesinfo": ledelsesinfo_app(
            LedelsesinfoSettings(**common, database_url=urls["ledelsesinfo"], run_worker=False)
        ),
    }
    with (
        TestClient(apps["intake"]) as i,
        TestClient(apps["followup"]) as f,
        TestClient(apps["ledelsesinfo"]) as li,
    ):
        yield {"intake": i, "followup": f, "ledelsesinfo": li}


RS_REQUESTS = {
    "intake": ("/audit", {"child_id": "nobody"}),
    "followup": ("/deadlines", {"municipality": OWN_MUNI, "at": AT}),
    "ledelsesinfo": ("/reports/weekly", {"municipality": OWN_MUNI, "week": WEEK}),
}

RS_TOKENS: list[tuple[str, Callable[[], str], int]] = [
    ("RS256 with the configured key", lambda: RSA_KEY.sign(claims()), 200),
    ("RS256 expired", lambda: RSA_KEY.sign(claims(exp=_past(120))), 401),
    ("RS256 with another key", lambda: OTHER_RSA_KEY.sign(claims()), 401),
    ("HS256 with the shared secret", lambda: signed(claims()), 401),
    (
        "HS256 keyed with the public key (algorithm confusion)",
        lambda: handmade({"alg": "HS256", "typ": "JWT"}, claims(), RSA_KEY.public_pem.encode()),
        401,
    ),
    ("alg none", lambda: handmade({"alg": "none", "typ": "JWT"}, claims(), None), 401),
    ("RS256 for another municipality", lambda: RSA_KEY.sign(claims(municipality="101")), 403),
]


@pytest.mark.parametrize("service", list(RS_REQUESTS))
@pytest.mark.parametrize(("make", "expected"), [t[1:] for t in RS_TOKENS], ids=[t[0] for t in RS_TOKENS])
def test_rs256_deployment(
    rs256_clients: dict[str, TestClient], service: str, make: Callable[[], str], expected: int
) -> None:
    path, params = RS_REQUESTS[service]
    if expected == 403 and service == "intake":
        params = {**params, "municipality": OWN_MUNI}
    tok = make()
    response = rs256_clients[service].get(path, params=params, headers=bearer(tok))
    assert response.status_code == expected, response.text
    _assert_no_echo(response.text, tok)
    assert rs256_clients[service].get("/health").status_code == 200
