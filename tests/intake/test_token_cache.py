"""shared/auth.py's cache of verified tokens (intake's POST /records sends one token per request):
a token is verified once per short while, never served past its expiry, never to another key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from shared import auth
from shared.auth import AuthError, Principal, _VerifiedTokens
from shared.config import ServiceSettings
from tests.intake.conftest import SECRET, example


def settings(secret: str = SECRET) -> ServiceSettings:
    return ServiceSettings(environment="test", auth_jwt_secret=secret)  # type: ignore[call-arg]


def token(exp: datetime, secret: str = SECRET) -> str:
    claims = {"sub": "u", "role": "system", "municipality": "751", "exp": exp}
    return jwt.encode(claims, secret, algorithm="HS256")


class Counting:
    """`decode_token`, counting its calls (the cache calls it on every miss)."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = auth.decode_token

    def __call__(self, token: str, settings: ServiceSettings) -> Principal:
        self.calls += 1
        return self.real(token, settings)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counting:
    counting = Counting()
    monkeypatch.setattr(auth, "decode_token", counting)
    return counting


def test_a_token_is_verified_once_within_the_ttl(counted: Counting, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).timestamp()
    clock = [now]
    monkeypatch.setattr(auth.time, "time", lambda: clock[0])
    cache = _VerifiedTokens(ttl=30)
    t = token(datetime.now(UTC) + timedelta(hours=1))
    first = cache.principal(t, settings())
    clock[0] = now + 20
    assert cache.principal(t, settings()) == first and counted.calls == 1
    clock[0] = now + 31  # past the ttl: verified again
    assert cache.principal(t, settings()) == first and counted.calls == 2


def test_a_cached_token_is_not_served_past_its_expiry(
    counted: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    clock = [now.timestamp()]
    monkeypatch.setattr(auth.time, "time", lambda: clock[0])
    cache = _VerifiedTokens(ttl=3600)
    t = token(now + timedelta(seconds=5))
    cache.principal(t, settings())
    clock[0] = now.timestamp() + 5 + auth.LEEWAY_SECONDS - 1
    cache.principal(t, settings())
    assert counted.calls == 1
    clock[0] = now.timestamp() + 5 + auth.LEEWAY_SECONDS + 1  # expired beyond the leeway
    cache.principal(t, settings())  # not from the cache: decode_token decides (with the real clock)
    assert counted.calls == 2


def test_a_token_verified_under_one_key_is_not_accepted_under_another(counted: Counting) -> None:
    cache = _VerifiedTokens()
    t = token(datetime.now(UTC) + timedelta(hours=1))
    cache.principal(t, settings())
    with pytest.raises(AuthError, match="bad token signature"):
        cache.principal(t, settings("another-secret-long-enough-for-hs256-0123456789"))
    assert counted.calls == 2


def test_a_refused_token_is_not_kept(counted: Counting) -> None:
    cache = _VerifiedTokens()
    expired = token(datetime.now(UTC) - timedelta(hours=1))
    for _ in range(2):
        with pytest.raises(AuthError, match="expired"):
            cache.principal(expired, settings())
    assert counted.calls == 2


def test_the_cache_is_bounded() -> None:
    cache = _VerifiedTokens(max_entries=3)
    exp = datetime.now(UTC) + timedelta(hours=1)
    for i in range(5):
        cache.principal(token(exp + timedelta(seconds=i)), settings())
    assert len(cache._entries) == 3


def test_the_api_answers_the_same_with_a_cached_token(client: TestClient, counted: Counting) -> None:
    auth.verified_tokens.clear()
    headers = {"Authorization": f"Bearer {token(datetime.now(UTC) + timedelta(hours=1))}"}
    raw: dict[str, Any] = example("ex-01")
    assert client.post("/records", json=raw, headers=headers).status_code == 201
    assert client.post("/records", json=raw, headers=headers).status_code == 200
    assert counted.calls == 1
    bad = {"Authorization": f"Bearer {token(datetime.now(UTC) + timedelta(hours=1), 'x' * 40)}"}
    assert client.post("/records", json=raw, headers=bad).status_code == 401
