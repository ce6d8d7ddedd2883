"""Settings of the ledelsesinfo service (environment variables = field names)."""

from __future__ import annotations

from pydantic import Field

from shared.casework.rules import DefaultRules
from shared.config import ServiceSettings
from shared.observability import OpsSettings


class Settings(ServiceSettings, OpsSettings):
    port: int = Field(8003, description="Port the HTTP server listens on.")
    caseload_target: int = Field(25, description="Caseload target per caseworker (sagstal), domain.md §5.")
    caseload_targets: dict[str, int] = Field(
        default_factory=dict,
        description='Per-municipality caseload targets overriding `caseload_target`, JSON: {"657": 20}.',
    )
    child_conversation_days: int = Field(
        7, description="Days from an underretning with an abuse reason to the child conversation deadline."
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
    run_worker: bool = Field(True, description="Run the projection worker inside the web process.")

    def target_for(self, municipality: str) -> int:
        return self.caseload_targets.get(municipality, self.caseload_target)

    def rules(self) -> DefaultRules:
        """The settings the shared deadline rules read (as the follow-up service's)."""
        return DefaultRules(child_conversation_days=self.child_conversation_days)
