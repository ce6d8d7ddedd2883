"""Property-based API fuzzing (schemathesis) of the three services' OpenAPI documents, in-process over
ASGI with valid credentials: no generated request may cause a 5xx, and every answer must match the
documented response schema. Derandomized, so a run is reproducible and bounded.

Needs `schemathesis==4.32.5` (dev dependency)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.followup.app import create_app as followup_app
from services.followup.config import Settings as FollowupSettings
from services.intake.app import create_app as intake_app
from services.ledelsesinfo.app import create_app as ledelsesinfo_app
from services.ledelsesinfo.config import Settings as LedelsesinfoSettings
from shared.migrations import migrate_service
from shared.mint_token import mint_token
from tests.intake.conftest import make_settings

SECRET = "schemathesis-secret-that-is-long-enough-for-hs256"
MUNICIPALITY = "751"
EXAMPLES_PER_OPERATION = 300  # many operations have small input spaces: hypothesis stops early
CHECKS = [not_a_server_error, response_schema_conformance]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    """Bulk bodies: a list becomes one JSON line per item, anything else a single line."""
    if isinstance(value, (bytes, str)):
        return value.encode() if isinstance(value, str) else value
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()


def _headers(role: str) -> dict[str, str]:
    token = mint_token(
        role=role, municipality=MUNICIPALITY, teams=(), caseworker_id=None, sub="fuzz", secret=SECRET
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FastAPI]]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    urls = {svc: f"sqlite:///{tmp}/{svc}.db" for svc in ("intake", "followup", "ledelsesinfo")}
    for svc, url in urls.items():
        migrate_service(svc, url)
    common: dict[str, Any] = {
        "transport": "sql",
        "auth_jwt_secret": SECRET,
        "event_store_url": urls["intake"],
    }
    built = {
        "intake": intake_app(make_settings(tmp, **common)),
        "followup": followup_app(FollowupSettings(**common, database_url=urls["followup"], run_worker=False)),
        "ledelsesinfo": ledelsesinfo_app(
            LedelsesinfoSettings(**common, database_url=urls["ledelsesinfo"], run_worker=False)
        ),
    }
    yield built


ROLES = {"intake": "system", "followup": "chef", "ledelsesinfo": "chef"}
MIN_CASES_PER_SERVICE = 1000


@pytest.mark.parametrize("service", ["intake", "followup", "ledelsesinfo"])
def test_no_generated_request_gives_a_5xx_or_breaks_the_response_schema(
    apps: dict[str, FastAPI], service: str
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", apps[service])
    headers = _headers(ROLES[service])
    cases = 0

    def run(operation: Any) -> None:
        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            nonlocal cases
            cases += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        fuzz()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        run(operation)
    print(f"schemathesis: {service}: {len(operations)} operations, {cases} cases")
    assert cases >= MIN_CASES_PER_SERVICE
