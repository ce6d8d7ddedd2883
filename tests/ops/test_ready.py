"""GET /health and GET /ready of the three services: liveness without dependencies; readiness that
follows the database (PostgreSQL killed and restarted), the migrations, the broker (Kafka killed and
restarted) and the projection worker (assigned, within READY_MAX_LAG)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.followup.app import create_app as followup_app
from services.followup.app import create_tables as followup_tables
from services.followup.config import Settings as FollowupSettings
from services.followup.projection import FollowupProjection
from services.intake.app import create_app as intake_app
from services.intake.config import Settings as IntakeSettings
from services.ledelsesinfo import tables as ledelsesinfo_tables
from services.ledelsesinfo.app import create_app as ledelsesinfo_app
from services.ledelsesinfo.config import Settings as LedelsesinfoSettings
from shared.messaging.runner import ProjectionWorker
from shared.migrations import migrate_service
from tests.e2e.stack import Stack, running_stack
from tests.infra import KafkaBroker, PostgresServer
from tests.ops.support import eventually

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples" / "records.ndjson"
SECRET = "ops-test-secret-that-is-long-enough-for-hs256"
PRODUCTION_KEYS = {
    "auth_jwt_secret": SECRET,
    "cpr_pseudonym_key": "ops-test-pseudonym-key-0123456789abcdef",
    "cpr_master_key": "ops-test-master-key-0123456789abcdef-x",
}


def clients(stack: Stack) -> dict[str, TestClient]:
    return {"intake": stack.intake, "followup": stack.followup, "ledelsesinfo": stack.ledelsesinfo}


def ready(client: TestClient) -> tuple[int, dict[str, Any]]:
    resp = client.get("/ready")
    return resp.status_code, resp.json()


def all_ready(stack: Stack) -> dict[str, tuple[int, dict[str, Any]]]:
    return {name: ready(c) for name, c in clients(stack).items()}


def import_examples(stack: Stack) -> int:
    lines = EXAMPLES.read_text().splitlines()
    resp = stack.intake.post(
        "/records/bulk",
        content=("\n".join(lines) + "\n").encode(),
        headers={**stack.headers("system", "751"), "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 200 and resp.json()["accepted"] == len(lines), resp.text
    return len(lines)


@pytest.fixture
def kafka_stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    monkeypatch.setenv("READY_CACHE_SECONDS", "0")
    monkeypatch.setenv("READY_BROKER_TIMEOUT_SECONDS", "1")
    with running_stack("kafka", tmp_path, request) as s:
        yield s


@pytest.fixture(params=["sql", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.postgres])])
def stack(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("READY_CACHE_SECONDS", "0")
    with running_stack(request.param, tmp_path, request) as s:
        yield s


# --- liveness ------------------------------------------------------------------------------------------


def test_health_needs_no_dependency_and_ready_names_the_missing_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READY_BROKER_TIMEOUT_SECONDS", "0.5")
    nowhere = "postgresql+psycopg://u:p@127.0.0.1:9/nothing"  # port 9 (discard): refused
    common: dict[str, Any] = {
        "transport": "kafka",
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "event_store_url": nowhere,
        "auth_jwt_secret": SECRET,
    }
    apps = [
        intake_app(IntakeSettings(**common, run_relay=True)),  # its lifespan (the relay) is not started
        followup_app(FollowupSettings(**common, database_url=nowhere, run_worker=False)),
        ledelsesinfo_app(LedelsesinfoSettings(**common, database_url=nowhere, run_worker=False)),
    ]
    for app in apps:
        with TestClient(app) if app.title != "Intake" else nullcontext(TestClient(app)) as client:
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            code, doc = ready(client)
            assert code == 503 and doc["status"] == "unready"
            checks = doc["checks"]
            assert not checks["database"]["ok"] and "unreachable" in checks["database"]["detail"]
            assert not checks["migrations"]["ok"]
            assert not checks["broker"]["ok"] and "unreachable" in checks["broker"]["detail"]
            assert "p@" not in json.dumps(doc)  # no URL, no password in the answer
        app.state.ops.close()  # (closes the broker probe of the app whose lifespan did not run)


# --- migrations -----------------------------------------------------------------------------------------


SERVICES = ("intake", "followup", "ledelsesinfo")
INTAKE_KEYS = {k: v for k, v in PRODUCTION_KEYS.items() if k != "auth_jwt_secret"}


def _apps(urls: dict[str, str], **extra: Any) -> list[tuple[str, Any]]:
    common = {"event_store_url": urls["intake"], "auth_jwt_secret": SECRET, **extra}
    own = {"run_worker": False}
    return [
        ("intake", intake_app(IntakeSettings(**common, **INTAKE_KEYS))),
        ("followup", followup_app(FollowupSettings(**common, **own, database_url=urls["followup"]))),
        (
            "ledelsesinfo",
            ledelsesinfo_app(LedelsesinfoSettings(**common, **own, database_url=urls["ledelsesinfo"])),
        ),
    ]


def test_ready_needs_the_migrations_at_head(tmp_path: Path) -> None:
    urls = {svc: f"sqlite:///{tmp_path / svc}.db" for svc in SERVICES}
    for name, app in _apps(urls, environment="production"):  # nothing migrated yet
        with TestClient(app) as client:
            code, doc = ready(client)
            assert code == 503, name
            assert doc["checks"]["database"]["ok"] and not doc["checks"]["migrations"]["ok"]
    for svc, url in urls.items():
        migrate_service(svc, url)
    for name, app in _apps(urls, environment="production"):
        with TestClient(app) as client:
            code, doc = ready(client)
            assert code == 200 and doc["status"] == "ready", (name, doc)
            assert doc["checks"]["migrations"] == {
                "ok": True,
                "detail": "at head",
                "revision": doc["checks"]["migrations"]["revision"],
            }
            assert doc["checks"]["migrations"]["revision"]
            # a database at another revision than the code's head is not ready
            with app.state.engine.begin() as conn:
                conn.execute(text(f"UPDATE alembic_version_{name} SET version_num = 'older'"))
            code, doc = ready(client)
            assert code == 503 and doc["checks"]["migrations"]["detail"] == "not at head; run migrate"
            assert doc["checks"]["migrations"]["revision"] == "older"


def test_tables_made_without_alembic_are_ready_only_outside_production(tmp_path: Path) -> None:
    def made(environment: str, i: int) -> list[tuple[str, Any]]:
        urls = {
            svc: f"sqlite:///{tmp_path / f'{svc}{i}'}.db" for svc in ("intake", "followup", "ledelsesinfo")
        }
        apps = _apps(urls, environment=environment, auto_create_tables=True)
        followup_tables(apps[1][1].state.engine)
        ledelsesinfo_tables.metadata.create_all(apps[2][1].state.engine)
        return apps

    for environment, i, expected in (("development", 1, 200), ("test", 2, 200), ("production", 3, 503)):
        for name, app in made(environment, i):
            with TestClient(app) as client:
                code, doc = ready(client)
                assert code == expected, (environment, name, doc)


# --- the database and the broker stopped and started again ---------------------------------------------


@pytest.mark.postgres
@pytest.mark.kafka
def test_ready_follows_postgresql(kafka_stack: Stack, postgres_server: PostgresServer) -> None:
    assert {n: c for n, (c, _) in all_ready(kafka_stack).items()} == dict.fromkeys(clients(kafka_stack), 200)
    postgres_server.kill()
    down = all_ready(kafka_stack)
    for name, (code, doc) in down.items():
        assert code == 503, (name, doc)
        assert not doc["checks"]["database"]["ok"], name
        assert doc["checks"].get("broker", {"ok": True})["ok"], name  # only the database is down
        assert kafka_stack.intake.get("/health").status_code == 200
    postgres_server.restart()
    up = eventually(
        lambda: all_ready(kafka_stack), lambda r: all(code == 200 for code, _ in r.values()), timeout=60
    )
    assert {n: c for n, (c, _) in up.items()} == dict.fromkeys(clients(kafka_stack), 200), up


@pytest.mark.postgres
@pytest.mark.kafka
def test_ready_follows_the_broker(kafka_stack: Stack, kafka_broker: KafkaBroker) -> None:
    """Followup and ledelsesinfo consume Kafka: unready without it. Intake needs the broker only in a
    process that runs the outbox relay; the API alone (RUN_RELAY=false, as in compose) keeps
    accepting records into the outbox, so it stays ready."""
    settings = kafka_stack.intake.app.state.settings  # type: ignore[attr-defined]
    relaying = TestClient(intake_app(settings.model_copy(update={"run_relay": True})))  # lifespan not run

    def states() -> dict[str, tuple[int, dict[str, Any]]]:
        return {**all_ready(kafka_stack), "intake+relay": ready(relaying)}

    expected_down = {"intake": 200, "followup": 503, "ledelsesinfo": 503, "intake+relay": 503}
    assert {n: c for n, (c, _) in states().items()} == dict.fromkeys(expected_down, 200)
    kafka_broker.kill()
    down = eventually(states, lambda r: {n: c for n, (c, _) in r.items()} == expected_down, timeout=30)
    assert {n: c for n, (c, _) in down.items()} == expected_down, down
    for name, (_, doc) in down.items():
        assert doc["checks"]["database"]["ok"], name  # only the broker is down
        if name != "intake":
            assert not doc["checks"]["broker"]["ok"], name
    assert "broker" not in down["intake"][1]["checks"]
    for client in clients(kafka_stack).values():
        assert client.get("/health").status_code == 200
    kafka_broker.restart()
    up = eventually(states, lambda r: all(code == 200 for code, _ in r.values()), timeout=90)
    relaying.app.state.ops.close()  # type: ignore[attr-defined]
    assert {n: c for n, (c, _) in up.items()} == dict.fromkeys(expected_down, 200), up


# --- the projection worker -----------------------------------------------------------------------------


def test_ready_waits_for_an_assigned_worker_within_the_lag(stack: Stack) -> None:
    app: Any = stack.followup.app
    settings = app.state.settings
    worker = ProjectionWorker(FollowupProjection(settings), settings, engine=app.state.engine)
    app.state.worker = worker  # the app's own worker (as with RUN_WORKER=true), driven by the test
    try:
        code, doc = ready(stack.followup)
        assert code == 503 and doc["checks"]["projection"]["assigned"] is False  # it never started
        assert doc["checks"]["projection"]["max_lag"] == settings.ready_max_lag
        n = import_examples(stack)
        if stack.relay is not None:
            stack.relay.drain()
        app.state.projection_monitor.max_lag = n - 1
        if stack.transport == "sql":
            worker.refresh_lag()  # reads the lag, applies nothing
            code, doc = ready(stack.followup)
            assert code == 503, doc
            assert doc["checks"]["projection"]["assigned"] is True
            assert doc["checks"]["projection"]["lag_events"] == n
            assert doc["checks"]["projection"]["lag_seconds"] >= 0
            assert "exceeds READY_MAX_LAG" in doc["checks"]["projection"]["detail"]
        worker.drain(timeout=120)
        code, doc = ready(stack.followup)
        assert code == 200, doc
        projection = doc["checks"]["projection"]
        assert projection["in_process"] is True and projection["assigned"] is True
        assert projection["lag_events"] == 0 and projection["lag_seconds"] == 0
    finally:
        worker.stop()


def test_a_running_worker_makes_the_service_ready(stack: Stack) -> None:
    n = import_examples(stack)
    if stack.relay is not None:
        stack.relay.drain()
    settings = stack.followup.app.state.settings.model_copy(  # type: ignore[attr-defined]
        update={"run_worker": True, "ready_max_lag": 0}
    )
    with TestClient(followup_app(settings)) as client:
        code, doc = eventually(
            lambda: ready(client), lambda r: r[0] == 200 and r[1]["checks"]["projection"]["lag_events"] == 0
        )
        assert code == 200, doc
        projection = doc["checks"]["projection"]
        assert projection["in_process"] and projection["assigned"] and projection["lag_events"] == 0
        assert client.app.state.worker.processed == n  # type: ignore[attr-defined]
