"""Settings of the follow-up service (environment variables = field names)."""

from __future__ import annotations

from pydantic import Field

from shared.config import ServiceSettings
from shared.observability import OpsSettings


class Settings(ServiceSettings, OpsSettings):
    port: int = Field(8002, description="Port the follow-up HTTP server listens on.")
    caseload_target: int = Field(
        25, ge=1, description="Caseload target per caseworker until a municipality sets its own."
    )
    caseload_targets: dict[str, int] = Field(
        default_factory=dict,
        description='Per-municipality caseload targets overriding `caseload_target` until the municipality '
        'sets its own (PUT /profiles), JSON: {"657": 20}; the same setting as ledelsesinfo\'s.',
    )
    child_conversation_days: int = Field(
        7, ge=0, le=366, description="Days from an abuse underretning to the mandatory child conversation."
    )
    ready_max_lag: int = Field(
        10_000,
        ge=0,
        description="GET /ready answers 503 while the projection is more than this many events behind.",
    )
    worker_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="`work` command: serve the worker's Prometheus metrics on HOST:this port (0 = off).",
    )
    run_worker: bool = Field(True, description="Run the projection worker inside the HTTP server.")
    auto_create_tables: bool = Field(
        False, description="Create missing tables at start-up (tests, quick local runs); else `migrate`."
    )
