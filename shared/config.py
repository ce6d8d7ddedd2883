"""Settings read from the environment (pydantic-settings). Each service extends `ServiceSettings`."""

from __future__ import annotations

import os
import sys
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "change-me",
        "changeme",
        "secret",
        "dev-secret-change-me",
        "dev-secret-change-me-not-for-production-use",
    }
)
DEV_JWT_SECRET = "dev-secret-change-me-not-for-production-use"


class ServiceSettings(BaseSettings):
    """Settings every service reads. Names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Literal["development", "test", "production"] = Field(
        "development", description="`production` refuses placeholder secrets."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, description="Port the HTTP server listens on.")
    log_level: str = Field("INFO", description="Log level of the JSON logs.")
    transport: Literal["sql", "kafka"] = Field(
        "sql", description="`sql`: projections tail the SQL event log; `kafka`: they consume Kafka."
    )
    event_store_url: str = Field(
        "sqlite:///.run/intake.db", description="SQLAlchemy URL of the event log (written by intake)."
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL of this service's own tables; empty = the event store's."
    )
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka broker address(es).")
    kafka_topic: str = Field("underretning.events", description="Topic the outbox relay publishes to.")
    kafka_dlq_topic: str = Field("underretning.events.dlq", description="Dead-letter topic.")
    kafka_partitions: int = Field(6, description="Partitions of the events topic when it is created.")
    kafka_group_id: str = Field(
        "", description="Consumer group of this service's projector; empty = `projection-<name>`."
    )
    replay_workers: int = Field(
        0,
        ge=0,
        description="Processes a `replay` on the SQL log uses for projections whose rows are per child; "
        "0 = one per CPU, at most 4.",
    )
    auth_jwt_secret: str = Field(DEV_JWT_SECRET, description="HS256 secret for bearer JWTs.")
    auth_jwt_algorithm: Literal["HS256", "RS256"] = Field("HS256", description="JWT algorithm.")
    auth_jwt_public_key: str = Field("", description="PEM public key when the algorithm is RS256.")

    @property
    def own_database_url(self) -> str:
        return self.database_url or self.event_store_url

    @property
    def replay_processes(self) -> int:
        """`replay_workers`, with 0 resolved to the CPUs (at most 4); 1 for an in-memory SQLite."""
        if ":memory:" in self.own_database_url or ":memory:" in self.event_store_url:
            return 1
        return self.replay_workers or min(4, os.cpu_count() or 1)

    @model_validator(mode="after")
    def _no_placeholder_secret_in_production(self) -> ServiceSettings:
        if (
            self.environment == "production"
            and self.auth_jwt_algorithm == "HS256"
            and self.auth_jwt_secret in PLACEHOLDER_SECRETS
        ):
            raise ValueError("AUTH_JWT_SECRET is missing or a placeholder; refusing to start in production")
        if self.auth_jwt_algorithm == "RS256" and not self.auth_jwt_public_key:
            raise ValueError("AUTH_JWT_PUBLIC_KEY is required when AUTH_JWT_ALGORITHM=RS256")
        return self


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], service: str) -> S:
    """Settings from the environment, or one clear line per problem and exit code 2 (no traceback)."""
    try:
        return cls()
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            print(f"{service}: refusing to start: {where}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
