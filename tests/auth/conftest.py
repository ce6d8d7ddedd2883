"""Shared helpers of the auth tests: settings, token factory, a tiny app guarded by the auth layer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Query

from shared.auth import CurrentPrincipal, authorize_scope
from shared.config import ServiceSettings

SECRET = "test-secret-that-is-long-enough-for-hs256!"
MUNICIPALITY = "657"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid `chef` claims expiring in an hour; `key=None` in overrides removes the claim."""
    base: dict[str, Any] = {
        "sub": "ane",
        "role": "chef",
        "municipality": MUNICIPALITY,
        "exp": datetime.now(UTC) + timedelta(hours=24),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def hs_settings(secret: str = SECRET) -> ServiceSettings:
    return ServiceSettings(environment="test", auth_jwt_algorithm="HS256", auth_jwt_secret=secret)


class RsaKeys:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_pem = (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, payload: dict[str, Any]) -> str:
        return jwt.encode(payload, self.private_pem, algorithm="RS256")

    def settings(self) -> ServiceSettings:
        return ServiceSettings(
            environment="test", auth_jwt_algorithm="RS256", auth_jwt_public_key=self.public_pem
        )


@pytest.fixture(scope="session")
def rsa_keys() -> RsaKeys:
    return RsaKeys()


@pytest.fixture(scope="session")
def other_rsa_keys() -> RsaKeys:
    return RsaKeys()


def scoped_app(settings: ServiceSettings) -> FastAPI:
    """A route guarded like the services' case endpoints: principal + `authorize_scope`."""
    app = FastAPI()
    app.state.settings = settings

    @app.get("/scoped")
    def scoped(
        principal: CurrentPrincipal,
        municipality: Annotated[str, Query()],
        team_id: str | None = None,
        caseworker_id: str | None = None,
    ) -> dict[str, Any]:
        authorize_scope(principal, municipality, team_id, caseworker_id, purpose="cases")
        return {
            "sub": principal.sub,
            "role": principal.role,
            "municipality": principal.municipality,
            "teams": sorted(principal.teams),
            "caseworker_id": principal.caseworker_id,
        }

    return app


TokenFactory = Callable[[], str]
