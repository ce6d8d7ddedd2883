"""Intake's settings (environment variables = field names, case-insensitive)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from shared.config import PLACEHOLDER_SECRETS, ServiceSettings
from shared.events.codes import DEFAULT_MEASURE_TYPES, MeasureType
from shared.observability import OpsSettings

DEV_CPR_PSEUDONYM_KEY = "dev-cpr-pseudonym-key-change-me-not-for-production-use"
DEV_CPR_MASTER_KEY = "dev-cpr-master-key-change-me-not-for-production-use"
_DEV_KEYS = frozenset({DEV_CPR_PSEUDONYM_KEY, DEV_CPR_MASTER_KEY})
MIN_KEY_CHARS = 32
ExtraTypes = dict[str, dict[str, dict[str, Any]]]


class Settings(ServiceSettings, OpsSettings):
    port: int = Field(8001, description="Port the intake HTTP server listens on.")
    cpr_pseudonym_key: str = Field(
        DEV_CPR_PSEUDONYM_KEY,
        description="HMAC key of the child pseudonym (child_id) and of record content hashes. "
        "Changing it changes every child_id: set once per deployment and keep secret.",
    )
    cpr_master_key: str = Field(
        DEV_CPR_MASTER_KEY,
        description="Secret from which the key wrapping each child's CPR key is derived (HKDF-SHA256).",
    )
    measure_types_extra: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict,
        description="Municipality-specific measure types, JSON: "
        '{"657": {"mst": {"step": 3, "placement": false}}}',
    )
    max_body_bytes: int = Field(1024 * 1024, description="Largest body of POST /records (413 above).")
    max_line_bytes: int = Field(
        256 * 1024, description="Largest line of a bulk import (that line is rejected)."
    )
    bulk_chunk_lines: int = Field(2000, ge=1, description="Lines per transaction in a bulk import.")
    bulk_parse_workers: int = Field(
        1,
        ge=0,
        le=1,
        description="Processes that parse a large bulk import's lines while the importing process writes "
        "(used only when a core is free; 0 = parse in the importing process).",
    )
    group_commit_linger_ms: float = Field(
        5.0,
        ge=0,
        le=100,
        description="POST /records: a group commit holding fewer records than its previous transaction "
        "waits at most this long for more (the clients of that transaction coming back), so concurrent "
        "clients share one transaction instead of alternating a large and a tiny one (0 = never wait).",
    )
    run_relay: bool = Field(True, description="With transport=kafka, run the outbox relay in the service.")
    auto_create_tables: bool = Field(
        False, description="Create missing tables at start-up (development; production uses migrations)."
    )

    @field_validator("measure_types_extra")
    @classmethod
    def _valid_measure_types(cls, value: ExtraTypes) -> ExtraTypes:
        for municipality, types in value.items():
            if len(municipality) != 3 or not municipality.isdigit():
                raise ValueError(f"measure_types_extra: {municipality!r} is not a 3-digit municipality code")
            for code, spec in types.items():
                step = spec.get("step")
                placement = spec.get("placement")
                if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= 6:
                    raise ValueError(f"measure_types_extra[{municipality}][{code}]: step must be 1-6")
                if not isinstance(placement, bool):
                    raise ValueError(
                        f"measure_types_extra[{municipality}][{code}]: placement must be true/false"
                    )
        return value

    @model_validator(mode="after")
    def _real_cpr_keys_in_production(self) -> Settings:
        if self.environment == "production":
            for name in ("cpr_pseudonym_key", "cpr_master_key"):
                value: str = getattr(self, name)
                if value in PLACEHOLDER_SECRETS or value in _DEV_KEYS or len(value) < MIN_KEY_CHARS:
                    raise ValueError(
                        f"{name.upper()} is missing, a placeholder or shorter than "
                        f"{MIN_KEY_CHARS} characters; refusing to start in production"
                    )
            if self.cpr_pseudonym_key == self.cpr_master_key:
                raise ValueError("CPR_PSEUDONYM_KEY and CPR_MASTER_KEY must differ")
        return self

    def measure_types(self, municipality: str) -> dict[str, MeasureType]:
        """The staircase of a municipality: the spec's types plus (overriding) its own."""
        types = dict(DEFAULT_MEASURE_TYPES)
        for code, spec in self.measure_types_extra.get(municipality, {}).items():
            types[code] = MeasureType(
                code, int(spec["step"]), bool(spec["placement"]), str(spec.get("label", code))
            )
        return types
