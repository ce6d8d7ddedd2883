"""The three real services wired together over one transport, for end-to-end tests.

`sql`: SQLite files, projections tail the SQL event log. `kafka`: PostgreSQL databases (one per
service) on the real server, events relayed through the real broker. The services run in-process
(FastAPI TestClient); their projection workers and the relay are driven by `sync()` so that a test
knows when everything acknowledged has reached every projection.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.followup.app import create_app as followup_app
from services.followup.config import Settings as FollowupSettings
from services.followup.projection import FollowupProjection
from services.intake.app import create_app as intake_app
from services.intake.config import Settings as IntakeSettings
from services.ledelsesinfo.app import create_app as ledelsesinfo_app
from services.ledelsesinfo.config import Settings as LedelsesinfoSettings
from services.ledelsesinfo.projection import LedelsesinfoProjection
from shared.db import make_engine
from shared.messaging.kafka import ensure_topics
from shared.messaging.relay import OutboxRelay
from shared.messaging.runner import ProjectionWorker
from shared.migrations import migrate_service
from shared.mint_token import mint_token

SECRET = "e2e-test-secret-that-is-long-enough-for-hs256"


@dataclass
class Stack:
    transport: str
    intake: TestClient
    followup: TestClient
    ledelsesinfo: TestClient
    workers: list[ProjectionWorker]
    relay: OutboxRelay | None
    topic: str | None = None
    bootstrap: str | None = None
    _tokens: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def sync(self) -> None:
        """Relay everything in the outbox, then let every projection catch up."""
        if self.relay is not None:
            self.relay.drain()
        for worker in self.workers:
            worker.drain(timeout=120)

    def headers(
        self,
        role: str = "chef",
        municipality: str = "657",
        teams: tuple[str, ...] = (),
        caseworker_id: str | None = None,
    ) -> dict[str, str]:
        key = (role, municipality, teams, caseworker_id)
        if key not in self._tokens:
            self._tokens[key] = mint_token(
                role=role,
                municipality=municipality,
                teams=teams,
                caseworker_id=caseworker_id,
                sub=f"{role}-e2e",
                secret=SECRET,
            )
        return {"Authorization": f"Bearer {self._tokens[key]}"}

    def post(self, record: dict[str, Any], role: str = "system") -> Any:
        return self.intake.post("/records", json=record, headers=self.headers(role, record["municipality"]))

    def bulk(self, records: list[dict[str, Any]], municipality: str = "657") -> Any:
        body = "\n".join(json.dumps(r) for r in records) + "\n"
        return self.intake.post(
            "/records/bulk",
            content=body.encode(),
            headers={**self.headers("system", municipality), "Content-Type": "application/x-ndjson"},
        )


def _urls(transport: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    if transport == "sql":
        return {svc: f"sqlite:///{tmp_path}/{svc}.db" for svc in ("intake", "followup", "ledelsesinfo")}
    server = request.getfixturevalue("postgres_server")
    return {svc: server.create_database() for svc in ("intake", "followup", "ledelsesinfo")}


@contextmanager
def running_stack(transport: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    urls = _urls(transport, tmp_path, request)
    for svc, url in urls.items():
        migrate_service(svc, url)
    common: dict[str, Any] = {
        "transport": transport,
        "auth_jwt_secret": SECRET,
        "event_store_url": urls["intake"],
    }
    topic = bootstrap = None
    if transport == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        topic = f"e2e-{uuid.uuid4().hex[:8]}"
        ensure_topics(bootstrap, (topic, topic + ".dlq"), partitions=6)
        common |= {
            "kafka_bootstrap_servers": bootstrap,
            "kafka_topic": topic,
            "kafka_dlq_topic": topic + ".dlq",
        }
    intake_settings = IntakeSettings(**common, run_relay=False)
    # A consumer group per stack and projection: a test never waits for a group rebalance around a
    # consumer another test left behind.
    groups = {svc: f"{topic}-{svc}" if topic else "" for svc in ("followup", "ledelsesinfo")}
    followup_settings = FollowupSettings(
        **common, database_url=urls["followup"], run_worker=False, kafka_group_id=groups["followup"]
    )
    li_settings = LedelsesinfoSettings(
        **common, database_url=urls["ledelsesinfo"], run_worker=False, kafka_group_id=groups["ledelsesinfo"]
    )
    workers = [
        ProjectionWorker(FollowupProjection(followup_settings), followup_settings, retry_backoff=0.0),
        ProjectionWorker(LedelsesinfoProjection(li_settings.rules()), li_settings, retry_backoff=0.0),
    ]
    relay = None
    if transport == "kafka":
        relay = OutboxRelay(make_engine(urls["intake"]), str(bootstrap), batch_size=1000)
    with ExitStack() as stack:
        clients = [
            stack.enter_context(TestClient(app))
            for app in (
                intake_app(intake_settings),
                followup_app(followup_settings),
                ledelsesinfo_app(li_settings),
            )
        ]
        try:
            yield Stack(transport, *clients, workers=workers, relay=relay, topic=topic, bootstrap=bootstrap)
        finally:
            for w in workers:
                w.stop()
            if relay is not None:
                relay._close_producer()
