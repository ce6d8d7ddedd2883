"""Session-wide real servers: Apache Kafka (KRaft) and PostgreSQL, started on first use by the project's own
scripts, on free loopback ports, and stopped at the end of the session.

Fixtures:
  kafka_bootstrap   "127.0.0.1:PORT" of the session broker (started once)
  kafka_broker      the session broker itself (tests.infra.KafkaBroker): .kill() (SIGKILL) / .restart()
                    on the same port and data dir, for fault tests
  fresh_topic       a factory: fresh_topic(prefix="test", partitions=6, configs=None) -> a new unique topic
                    (replication factor 1), deleted after the test
  pg_url            SQLAlchemy URL of the database `underretning` on the session PostgreSQL
  postgres_server   the session server (tests.infra.PostgresServer): .kill() / .restart(), .create_database()
  fresh_pg_url      SQLAlchemy URL of a new, empty database for this test (dropped afterwards)

A test that uses any Kafka fixture is marked `kafka`, one that uses a PostgreSQL fixture `postgres`
(select with -m). A server that does not come up fails the tests that need it, with its log tail. A test
that kills a session server and leaves it down gets it restarted after it, so later tests are not hurt.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import pytest

from tests.infra import (
    InfraError,
    KafkaBroker,
    PostgresServer,
    create_topic,
    delete_topics,
    unique_topic_name,
)

KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "kafka_broker", "fresh_topic"})
POSTGRES_FIXTURES = frozenset({"pg_url", "postgres_server", "fresh_pg_url"})

T = TypeVar("T")

# the session servers that have been started, for the restart guard
_running: dict[str, KafkaBroker | PostgresServer] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if names & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)


def _start_or_fail(start: Callable[[], T], what: str) -> T:
    """Start a server; a failure fails the test loudly (never a skip), with the script output and log tail."""
    try:
        return start()
    except InfraError as exc:
        message = f"{what} did not start:\n{exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = _start_or_fail(KafkaBroker.start, "the Kafka broker (deploy/kafka/kafka.sh)")
    _running["kafka"] = broker
    yield broker
    _running.pop("kafka", None)
    broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def fresh_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 6, configs: Mapping[str, str] | None = None) -> str:
        name = create_topic(
            kafka_bootstrap, unique_topic_name(prefix), partitions=partitions, configs=configs
        )
        created.append(name)
        return name

    yield make
    if created and _running.get("kafka") and _running["kafka"].is_running():
        with contextlib.suppress(Exception):  # cleanup only; the broker is thrown away at the end anyway
            delete_topics(kafka_bootstrap, created)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _start_or_fail(PostgresServer.start, "PostgreSQL (deploy/postgres/pg.sh)")
    _running["postgres"] = server
    yield server
    _running.pop("postgres", None)
    server.close()


@pytest.fixture(scope="session")
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url()


@pytest.fixture
def fresh_pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = _start_or_fail(lambda: postgres_server.create_database(name), f"a fresh database {name}")
    yield url
    if postgres_server.is_running():
        with contextlib.suppress(Exception):  # cleanup only; the cluster is thrown away at the end anyway
            postgres_server.drop_database(name)


@pytest.fixture(autouse=True)
def _restart_killed_servers() -> Iterator[None]:
    """After each test: a session server a fault test left down is started again (same port, same data)."""
    yield
    for key, server in list(_running.items()):
        _start_or_fail(server.ensure_running, f"the session {key} server (restart after the test)")
