"""The event catalogue: every record type of spec section 3 as a frozen, versioned event payload.

Events are what intake appends after a record has been validated. They differ from the records
only where the spec demands it: a child is never carried as a CPR number but as a `ChildRef`
(pseudonym `child_id`, birth date or expected birth, sex), and facts that need a lookup table
to interpret (the notifier's professional flag, a measure type's staircase step and placement
flag) are resolved once at the door so every consumer reads the same answer.

Each payload class is registered under an explicit name and schema version (never its Python
import path). An upcaster turns stored data of version N into version N+1, so a consumer always
reads the newest shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator


class EventPayload(BaseModel):
    """Base of every event payload: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1


class ChildRef(BaseModel):
    """A child as events know it: pseudonym plus the facts statistics need. Never a CPR."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    child_id: str
    sex: Literal["D", "P", "U"]
    birth_date: date | None = None
    expected_birth: date | None = None
    unborn: bool = False


_REGISTRY: dict[str, type[EventPayload]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

P = TypeVar("P", bound=type[EventPayload])


def event(name: str, version: int = 1) -> Callable[[P], P]:
    """Register a payload class under an explicit, versioned event name."""

    def register(cls: P) -> P:
        if name in _REGISTRY:
            raise ValueError(f"event type {name!r} registered twice")
        cls.event_type = name
        cls.schema_version = version
        _REGISTRY[name] = cls
        return cls

    return register


def upcaster(
    name: str, from_version: int
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], Callable[[dict[str, Any]], dict[str, Any]]]:
    """Register a function that turns stored `name` data of `from_version` into `from_version + 1`."""

    def register(
        fn: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        _UPCASTERS[(name, from_version)] = fn
        return fn

    return register


class UnknownEventType(LookupError):
    pass


def payload_class(name: str) -> type[EventPayload]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None


def event_types() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def upcast(name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Bring stored data of `version` up to the registered class's current schema version."""
    cls = payload_class(name)
    if version > cls.schema_version:
        raise ValueError(f"{name} v{version} is newer than this code (v{cls.schema_version})")
    while version < cls.schema_version:
        try:
            step = _UPCASTERS[(name, version)]
        except KeyError:
            raise ValueError(f"no upcaster for {name} v{version}") from None
        data = step(data)
        version += 1
    return data


def decode_payload(name: str, version: int, data: dict[str, Any]) -> EventPayload:
    """Stored (name, version, data) -> current payload object, upcasting on the way."""
    return payload_class(name).model_validate(upcast(name, version, data))


def decode_payload_json(name: str, version: int, text: str | bytes) -> EventPayload:
    """The same from the stored JSON text: a current version is validated straight from the
    text by pydantic-core (no intermediate dict), an older one is parsed and upcast."""
    return json_decoder(name, version)(text)


JsonDecoder = Callable[[str | bytes], EventPayload]
_JSON_DECODERS: dict[tuple[str, int], JsonDecoder] = {}


def json_decoder(name: str, version: int) -> JsonDecoder:
    """The function `decode_payload_json(name, version, ·)`, looked up once per (name, version):
    for the current version the class's own pydantic-core validator (what `model_validate_json`
    calls, without its per-call overhead), for an older one parse and upcast. Raises
    `UnknownEventType` for an unregistered name (nothing is cached for it)."""
    found = _JSON_DECODERS.get((name, version))
    if found is not None:
        return found
    cls = payload_class(name)
    decoder: JsonDecoder
    if version == cls.schema_version:
        decoder = cls.__pydantic_validator__.validate_json
    else:

        def decoder(text: str | bytes, _name: str = name, _version: int = version) -> EventPayload:
            return decode_payload(_name, _version, json.loads(text))

    _JSON_DECODERS[(name, version)] = decoder
    return decoder


# --- the sixteen event types (spec section 3) -------------------------------------------------


@event("UnderretningReceived", version=1)
class UnderretningReceived(EventPayload):
    underretning_id: str
    child: ChildRef
    notifier: str
    professional: bool
    reasons: tuple[str, ...]
    severity: str
    team_id: str
    case_id: str | None = None


@event("ReceiptSent", version=1)
class ReceiptSent(EventPayload):
    underretning_id: str


@event("UnderretningAssessed", version=1)
class UnderretningAssessed(EventPayload):
    underretning_id: str
    acute: bool
    decision: str


@event("CaseOpened", version=1)
class CaseOpened(EventPayload):
    case_id: str
    child: ChildRef
    team_id: str
    underretning_id: str | None = None


@event("CaseworkerAssigned", version=1)
class CaseworkerAssigned(EventPayload):
    case_id: str
    caseworker_id: str


@event("InvestigationStarted", version=1)
class InvestigationStarted(EventPayload):
    case_id: str
    kind: str


@event("ChildConversationHeld", version=1)
class ChildConversationHeld(EventPayload):
    case_id: str | None = None
    underretning_id: str | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> ChildConversationHeld:
        if self.case_id is None and self.underretning_id is None:
            raise ValueError("ChildConversationHeld needs case_id or underretning_id")
        return self


@event("InvestigationCompleted", version=1)
class InvestigationCompleted(EventPayload):
    case_id: str
    kind: str
    outcome: str | None = None


@event("ChildPlanMade", version=1)
class ChildPlanMade(EventPayload):
    case_id: str


@event("MeasureStarted", version=1)
class MeasureStarted(EventPayload):
    case_id: str
    measure_id: str
    measure_type: str
    step: int
    placement: bool
    provider: str | None = None
    monthly_cost_dkk: float | None = None


@event("FollowUpHeld", version=1)
class FollowUpHeld(EventPayload):
    case_id: str
    measure_id: str
    next_due: date | None = None
    stable_placement_exemption: bool = False


@event("SupervisionVisitHeld", version=1)
class SupervisionVisitHeld(EventPayload):
    case_id: str
    measure_id: str


@event("MeasureEnded", version=1)
class MeasureEnded(EventPayload):
    case_id: str
    measure_id: str
    reason: str | None = None


@event("WaitlistEntered", version=1)
class WaitlistEntered(EventPayload):
    case_id: str
    offer_type: str
    measure_id: str | None = None


@event("WaitlistLeft", version=1)
class WaitlistLeft(EventPayload):
    case_id: str
    offer_type: str


@event("CaseClosed", version=1)
class CaseClosed(EventPayload):
    case_id: str


RECORD_TYPES: tuple[str, ...] = event_types()


# --- events that are not records ----------------------------------------------------------------
# Appended by a service itself, never accepted by intake (RECORD_TYPES above is the sixteen).


def stream_id_for_municipality(municipality: str) -> str:
    """The stream of a municipality's own settings (its cadence profile and caseload target).

    Not a child stream (`child-...`): consumers that handle children apply these first in a bulk
    replay (shared.messaging.runner) and otherwise take them in whatever order they arrive."""
    return f"municipality-{municipality}"


@event("CadenceProfileChanged", version=1)
class CadenceProfileChanged(EventPayload):
    """The `chef` changed the municipality's follow-up cadence profile and/or caseload target
    (follow-up's `PUT /profiles/{municipality}`). In force from the envelope's `occurred_at` on.

    `profile` is the whole profile in force from then on (`CadenceProfile.to_json()` of
    shared.casework.cadence), `caseload_target` the whole target (spec section 5), `changed_by`
    the `sub` of the person who made the change."""

    profile: dict[str, Any]
    caseload_target: int
    changed_by: str


NON_RECORD_TYPES: tuple[str, ...] = tuple(t for t in event_types() if t not in RECORD_TYPES)
