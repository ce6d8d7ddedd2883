"""Settings of the follow-up service (environment variables = field names)."""

from __future__ import annotations

from pydantic import Field

from shared.config import ServiceSettings


class Settings(ServiceSettings):
    port: int = Field(8002, description="Port the follow-up HTTP server listens on.")
    caseload_target: int = Field(
        25, ge=1, description="Caseload target per caseworker until a municipality sets its own."
    )
    child_conversation_days: int = Field(
        7, ge=0, le=366, description="Days from an abuse underretning to the mandatory child conversation."
    )
    run_worker: bool = Field(True, description="Run the projection worker inside the HTTP server.")
    auto_create_tables: bool = Field(
        False, description="Create missing tables at start-up (tests, quick local runs); else `migrate`."
    )
