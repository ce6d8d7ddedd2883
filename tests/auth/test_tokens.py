"""Bearer tokens against a tiny app: exactly 200 / 401 / 403 (domain.md §8)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from shared.auth import AuthError, Principal, decode_token

from .conftest import MUNICIPALITY, SECRET, RsaKeys, claims, hs256, hs_settings, scoped_app


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(header: dict[str, Any], payload: dict[str, Any], sign_key: bytes | None) -> str:
    """A JWT built by hand (PyJWT refuses to produce the attacks below)."""
    payload = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in payload.items()}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = (
        b"" if sign_key is None else hmac.new(sign_key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


def _past(seconds: int) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


SAGSBEHANDLER = {"role": "sagsbehandler", "teams": ["t1"], "caseworker_id": "cw1"}

# (case id, token builder taking the RSA keys, query string, expected status)
TOKEN_TABLE: list[tuple[str, Any, str, int]] = [
    ("valid chef", lambda k: hs256(claims()), "", 200),
    ("valid sagsbehandler own scope", lambda k: hs256(claims(**SAGSBEHANDLER)), "&caseworker_id=cw1", 200),
    ("valid teamleder own team", lambda k: hs256(claims(role="teamleder", teams=["t1"])), "&team_id=t1", 200),
    ("expired within the 30 s leeway", lambda k: hs256(claims(exp=_past(10))), "", 200),
    ("expired", lambda k: hs256(claims(exp=_past(120))), "", 401),
    ("not yet valid (nbf)", lambda k: hs256(claims(nbf=datetime.now(UTC) + timedelta(minutes=5))), "", 401),
    (
        "signed with another secret",
        lambda k: hs256(claims(), "another-secret-also-long-enough-xxxx"),
        "",
        401,
    ),
    ("alg none", lambda k: _handmade({"alg": "none", "typ": "JWT"}, claims(), None), "", 401),
    ("alg none with the library", lambda k: jwt.encode(claims(), None, algorithm="none"), "", 401),
    ("RS256 token while HS256 is configured", lambda k: k.sign(claims()), "", 401),
    ("tampered payload", lambda k: _tamper(hs256(claims(role="udvalg"))), "", 401),
    ("missing exp", lambda k: hs256(claims(exp=None)), "", 401),
    ("missing sub", lambda k: hs256(claims(sub=None)), "", 401),
    ("empty sub", lambda k: hs256(claims(sub="")), "", 401),
    ("missing role", lambda k: hs256(claims(role=None)), "", 401),
    ("missing municipality", lambda k: hs256(claims(municipality=None)), "", 401),
    (
        "sagsbehandler without caseworker_id",
        lambda k: hs256(claims(role="sagsbehandler", teams=["t1"])),
        "&caseworker_id=cw1",
        401,
    ),
    (
        "sagsbehandler without teams",
        lambda k: hs256(claims(role="sagsbehandler", caseworker_id="cw1")),
        "&caseworker_id=cw1",
        401,
    ),
    ("teamleder without teams", lambda k: hs256(claims(role="teamleder")), "", 401),
    ("teamleder with an empty team list", lambda k: hs256(claims(role="teamleder", teams=[])), "", 401),
    ("teams not a list", lambda k: hs256(claims(role="teamleder", teams="t1")), "", 401),
    ("wrong role value", lambda k: hs256(claims(role="admin")), "", 401),
    ("role in the wrong case", lambda k: hs256(claims(role="Chef")), "", 401),
    ("municipality not 3 digits", lambda k: hs256(claims(municipality="65")), "", 401),
    ("municipality as a number", lambda k: hs256(claims(municipality=657)), "", 401),
    ("garbage", lambda k: "not.a.jwt", "", 401),
    ("another municipality", lambda k: hs256(claims(municipality="101")), "", 403),
    (
        "sagsbehandler asking another caseworker",
        lambda k: hs256(claims(**SAGSBEHANDLER)),
        "&caseworker_id=cw2",
        403,
    ),
    (
        "teamleder asking another team",
        lambda k: hs256(claims(role="teamleder", teams=["t1"])),
        "&team_id=t9",
        403,
    ),
    ("udvalg asking for cases", lambda k: hs256(claims(role="udvalg")), "", 403),
    ("system asking for cases", lambda k: hs256(claims(role="system")), "", 403),
]


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "chef"
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(scoped_app(hs_settings()))


@pytest.mark.parametrize(
    ("token_of", "query", "expected"), [row[1:] for row in TOKEN_TABLE], ids=[row[0] for row in TOKEN_TABLE]
)
def test_token_table(client: TestClient, rsa_keys: RsaKeys, token_of: Any, query: str, expected: int) -> None:
    token = token_of(rsa_keys)
    response = client.get(
        f"/scoped?municipality={MUNICIPALITY}{query}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == expected, response.text
    assert token not in response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    else:
        assert "WWW-Authenticate" not in response.headers


def test_valid_token_yields_its_principal(client: TestClient) -> None:
    token = hs256(claims(sub="bo", role="teamleder", teams=["t1", "t2"]))
    response = client.get(
        f"/scoped?municipality={MUNICIPALITY}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "sub": "bo",
        "role": "teamleder",
        "municipality": "657",
        "teams": ["t1", "t2"],
        "caseworker_id": None,
    }


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"],
    ids=["absent", "empty", "scheme only", "scheme and space", "basic", "other scheme", "lower-case only"],
)
def test_missing_or_malformed_header_is_401(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.get(f"/scoped?municipality={MUNICIPALITY}", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_scheme_is_case_insensitive(client: TestClient) -> None:
    response = client.get(
        f"/scoped?municipality={MUNICIPALITY}", headers={"Authorization": f"bearer {hs256(claims())}"}
    )
    assert response.status_code == 200


def test_error_message_never_echoes_the_token(client: TestClient) -> None:
    token = hs256(claims(), "wrong-secret-wrong-secret-wrong-secret")
    response = client.get(
        f"/scoped?municipality={MUNICIPALITY}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    for part in token.split("."):
        assert part not in response.text


def test_openapi_declares_the_bearer_scheme(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"].lower() == "bearer" for s in schemes.values())


# ----------------------------------------------------------------------------- RS256


def test_rs256_valid_token(rsa_keys: RsaKeys) -> None:
    principal = decode_token(rsa_keys.sign(claims(**SAGSBEHANDLER)), rsa_keys.settings())
    assert principal == Principal(
        sub="ane", role="sagsbehandler", municipality="657", teams=frozenset({"t1"}), caseworker_id="cw1"
    )


def test_rs256_over_http(rsa_keys: RsaKeys, other_rsa_keys: RsaKeys) -> None:
    client = TestClient(scoped_app(rsa_keys.settings()))
    url = f"/scoped?municipality={MUNICIPALITY}"
    assert client.get(url, headers={"Authorization": f"Bearer {rsa_keys.sign(claims())}"}).status_code == 200
    other = other_rsa_keys.sign(claims())
    assert client.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 401


@pytest.mark.parametrize("case", ["hs256 with secret", "hs256 with the public key", "alg none", "other key"])
def test_rs256_refuses_everything_else(rsa_keys: RsaKeys, other_rsa_keys: RsaKeys, case: str) -> None:
    token = {
        "hs256 with secret": lambda: hs256(claims()),
        # algorithm confusion: HMAC keyed with the RSA public key the verifier holds
        "hs256 with the public key": lambda: _handmade(
            {"alg": "HS256", "typ": "JWT"}, claims(), rsa_keys.public_pem.encode()
        ),
        "alg none": lambda: _handmade({"alg": "none", "typ": "JWT"}, claims(), None),
        "other key": lambda: other_rsa_keys.sign(claims()),
    }[case]()
    with pytest.raises(AuthError):
        decode_token(token, rsa_keys.settings())


def test_handmade_tokens_are_well_formed() -> None:
    """Guard for the attacks above: a hand-made HS256 token with the right secret is accepted,
    so their refusal is due to the algorithm or key, not to the way they are built."""
    token = _handmade({"alg": "HS256", "typ": "JWT"}, claims(role="udvalg"), SECRET.encode())
    assert decode_token(token, hs_settings()).role == "udvalg"


def test_decode_errors_do_not_quote_the_token() -> None:
    token = hs256(claims(exp=_past(3600)))
    with pytest.raises(AuthError) as err:
        decode_token(token, hs_settings())
    assert str(err.value) == "token expired"
    assert SECRET not in str(err.value)


def test_optional_claims_for_other_roles() -> None:
    principal = decode_token(hs256(claims(role="udvalg")), hs_settings())
    assert principal.teams == frozenset()
    assert principal.caseworker_id is None
