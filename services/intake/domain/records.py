"""Records as they come in (spec section 3): one pydantic model per record type. Pure, no I/O.

`parse_record(obj, now=..., measure_types=...)` turns a decoded JSON value into a typed record or a
`Rejection` naming the field and why, in plain English. Validation covers the envelope (all fields
required, a known `type`, a three-digit municipality, `occurred_at` with a UTC offset and at most
24 hours in the future), the code lists of `shared.events.codes`, CPR form and date, the unborn
form, and the municipality's measure types. References to cases and measures, and the business
rules, are `decide`'s job (they need state).

No message produced here quotes a CPR number: values that could be one are never echoed.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from services.intake.domain.cpr import ChildIdentity, CprError, validate_cpr
from shared.events.codes import (
    ASSESSMENT_DECISIONS,
    DEFAULT_MEASURE_TYPES,
    INVESTIGATION_KINDS,
    NOTIFIERS,
    REASONS,
    SEVERITIES,
    MeasureType,
)

COPENHAGEN: Final = ZoneInfo("Europe/Copenhagen")
MAX_FUTURE: Final = timedelta(hours=24)
_LONG_DIGITS: Final = re.compile(r"[0-9]{9}")
_ISO_DATE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_MUNICIPALITY: Final = re.compile(r"^[0-9]{3}$")


def show(value: object, limit: int = 40) -> str:
    """A value for an error message: quoted, shortened, and never anything that may be a CPR."""
    text = str(value)
    if _LONG_DIGITS.search(re.sub(r"[\s./-]", "", text)):
        return "(value hidden: it may contain a CPR number)"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


# --- context helpers -------------------------------------------------------------------------


def _now(info: ValidationInfo) -> datetime:
    ctx = info.context or {}
    now = ctx.get("now")
    return now if isinstance(now, datetime) else datetime.now(UTC)


def _measure_types(info: ValidationInfo) -> Mapping[str, MeasureType]:
    ctx = info.context or {}
    types = ctx.get("measure_types")
    return types if isinstance(types, Mapping) else DEFAULT_MEASURE_TYPES


# --- field types -----------------------------------------------------------------------------


def _code(table: Mapping[str, Any], what: str) -> AfterValidator:
    allowed = ", ".join(table)

    def check(value: str) -> str:
        if value not in table:
            raise ValueError(f"unknown {what} {show(value)}; allowed: {allowed}")
        return value

    return AfterValidator(check)


def _municipality(value: Any) -> Any:
    if isinstance(value, str) and not _MUNICIPALITY.match(value):
        raise ValueError(f'must be a three-digit DST municipality code such as "657", not {show(value)}')
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, str):
        if not _ISO_DATE.match(value):
            raise ValueError(f"must be a date written YYYY-MM-DD, not {show(value)}")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{show(value)} is not a real calendar date") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise ValueError("must be a date written YYYY-MM-DD (as a JSON string)")


def _occurred_at(value: Any, info: ValidationInfo) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{show(value)} is not an ISO 8601 timestamp such as 2026-11-02T09:15:00+01:00"
            ) from None
        if "T" not in value and " " not in value:
            raise ValueError("must be a timestamp with time and UTC offset, not only a date")
    else:
        raise ValueError("must be an ISO 8601 timestamp as a JSON string, e.g. 2026-11-02T09:15:00+01:00")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(
            "has no UTC offset; write it like 2026-11-02T09:15:00+01:00 (or Z for UTC) "
            "so the time is unambiguous"
        )
    if parsed.year < 1900:
        raise ValueError("lies before 1900; check the year")
    now = _now(info)
    if parsed - now > MAX_FUTURE:
        raise ValueError("lies more than 24 hours in the future; records describe what has happened")
    return parsed


def _cpr(value: str, info: ValidationInfo) -> str:
    try:
        return validate_cpr(value, today=_now(info).astimezone(COPENHAGEN).date())
    except CprError as exc:
        raise ValueError(f"not a valid CPR number: {exc}") from None


def _measure_type(value: str, info: ValidationInfo) -> str:
    types = _measure_types(info)
    if value not in types:
        raise ValueError(
            f"unknown measure type {show(value)} for this municipality; allowed: {', '.join(types)}"
        )
    return value


_CPR_SHAPED = re.compile(r"(?<!\d)(\d{2})(\d{2})\d{2}-?\d{4}(?!\d)")


def _plain_text(value: str) -> str:
    """Ids and free text: no NUL characters, and nothing shaped like a CPR number.

    A CPR number must never travel outside `child.cpr` / `mother_cpr` (spec section 2): a value
    holding ten digits (or six, a hyphen and four) whose first six digits form a real day and
    month is refused, without echoing it.
    """
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    if len(value) < 10:  # a CPR shape needs ten digits at least (most ids are shorter)
        return value
    for m in _CPR_SHAPED.finditer(value):
        day, month = int(m.group(1)), int(m.group(2))
        if 1 <= month <= 12 and 1 <= day <= monthrange(2000, month)[1]:
            raise ValueError(
                "holds something shaped like a CPR number; ids and text must never carry a CPR number"
            )
    return value


RecordId = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=200), AfterValidator(_plain_text)
]
Id = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=100), AfterValidator(_plain_text)]
Text = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=500), AfterValidator(_plain_text)
]
Municipality = Annotated[str, StringConstraints(strict=True), AfterValidator(_municipality)]
OccurredAt = Annotated[
    datetime,
    BeforeValidator(_occurred_at),
    Field(description="When it happened in the world: ISO 8601 with a UTC offset, at most 24 h ahead."),
]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Cpr = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_cpr),
    Field(
        repr=False,
        description="CPR number DDMMYYSSSS (a hyphen after 6 digits is accepted). Never stored in events.",
        examples=["2404194012"],
    ),
]
Notifier = Annotated[
    str,
    StringConstraints(strict=True),
    _code(NOTIFIERS, "notifier code"),
    Field(description="DST UND1 notifier category", json_schema_extra={"enum": list(NOTIFIERS)}),
]
Reason = Annotated[
    str,
    StringConstraints(strict=True),
    _code(REASONS, "reason code"),
    Field(json_schema_extra={"enum": list(REASONS)}),
]
Severity = Annotated[
    str,
    StringConstraints(strict=True),
    _code(SEVERITIES, "severity"),
    Field(json_schema_extra={"enum": list(SEVERITIES)}),
]
AssessmentDecision = Annotated[
    str,
    StringConstraints(strict=True),
    _code(ASSESSMENT_DECISIONS, "decision"),
    Field(json_schema_extra={"enum": list(ASSESSMENT_DECISIONS)}),
]
InvestigationKind = Annotated[
    str,
    StringConstraints(strict=True),
    _code(INVESTIGATION_KINDS, "investigation kind"),
    Field(json_schema_extra={"enum": list(INVESTIGATION_KINDS)}),
]
MeasureTypeCode = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=100),
    AfterValidator(_measure_type),
    Field(
        description="A staircase measure type (spec 2.4) or one of the municipality's own types",
        examples=list(DEFAULT_MEASURE_TYPES),
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the child -------------------------------------------------------------------------------


class CprChild(_Strict):
    """A born child, identified by CPR number."""

    cpr: Cpr


class UnbornChild(_Strict):
    """An unborn child: the mother's CPR number and the expected date of birth."""

    unborn: Literal[True]
    expected_birth: IsoDate
    mother_cpr: Cpr


def _child_form(value: Any) -> str:
    if isinstance(value, dict) and ({"unborn", "mother_cpr", "expected_birth"} & value.keys()):
        return "unborn-form"
    if isinstance(value, UnbornChild):
        return "unborn-form"
    return "cpr-form"


ChildIn = Annotated[
    Annotated[CprChild, Tag("cpr-form")] | Annotated[UnbornChild, Tag("unborn-form")],
    Discriminator(_child_form),
]
_TAGS: Final = frozenset({"cpr-form", "unborn-form"})


def identity_of(child: CprChild | UnbornChild) -> ChildIdentity:
    if isinstance(child, CprChild):
        return ChildIdentity(cpr=child.cpr)
    return ChildIdentity(mother_cpr=child.mother_cpr, expected_birth=child.expected_birth)


# --- data of each record type ----------------------------------------------------------------


class UnderretningReceivedData(_Strict):
    underretning_id: Id
    child: ChildIn
    notifier: Notifier
    reasons: Annotated[list[Reason], Field(min_length=1)]
    severity: Severity
    team_id: Id
    professional: StrictBool | None = None
    case_id: Id | None = None


class ReceiptSentData(_Strict):
    underretning_id: Id


class UnderretningAssessedData(_Strict):
    underretning_id: Id
    acute: StrictBool
    decision: AssessmentDecision


class CaseOpenedData(_Strict):
    case_id: Id
    child: ChildIn
    team_id: Id
    underretning_id: Id | None = None


class CaseworkerAssignedData(_Strict):
    case_id: Id
    caseworker_id: Id


class InvestigationStartedData(_Strict):
    case_id: Id
    kind: InvestigationKind


class ChildConversationHeldData(_Strict):
    case_id: Id | None = None
    underretning_id: Id | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> ChildConversationHeldData:
        if self.case_id is None and self.underretning_id is None:
            raise ValueError("needs a case_id or an underretning_id (or both)")
        return self


class InvestigationCompletedData(_Strict):
    case_id: Id
    kind: InvestigationKind
    outcome: Text | None = None


class ChildPlanMadeData(_Strict):
    case_id: Id


class MeasureStartedData(_Strict):
    case_id: Id
    measure_id: Id
    measure_type: MeasureTypeCode
    provider: Text | None = None
    monthly_cost_dkk: Annotated[StrictFloat, Field(ge=0)] | None = None


class FollowUpHeldData(_Strict):
    case_id: Id
    measure_id: Id
    next_due: IsoDate | None = None
    stable_placement_exemption: StrictBool | None = None


class SupervisionVisitHeldData(_Strict):
    case_id: Id
    measure_id: Id


class MeasureEndedData(_Strict):
    case_id: Id
    measure_id: Id
    reason: Text | None = None


class WaitlistEnteredData(_Strict):
    case_id: Id
    offer_type: Id
    measure_id: Id | None = None


class WaitlistLeftData(_Strict):
    case_id: Id
    offer_type: Id


class CaseClosedData(_Strict):
    case_id: Id


# --- records (envelope + data) ---------------------------------------------------------------


class RecordBase(_Strict):
    record_id: RecordId
    municipality: Municipality
    occurred_at: OccurredAt


class UnderretningReceivedRecord(RecordBase):
    type: Literal["UnderretningReceived"]
    data: UnderretningReceivedData


class ReceiptSentRecord(RecordBase):
    type: Literal["ReceiptSent"]
    data: ReceiptSentData


class UnderretningAssessedRecord(RecordBase):
    type: Literal["UnderretningAssessed"]
    data: UnderretningAssessedData


class CaseOpenedRecord(RecordBase):
    type: Literal["CaseOpened"]
    data: CaseOpenedData


class CaseworkerAssignedRecord(RecordBase):
    type: Literal["CaseworkerAssigned"]
    data: CaseworkerAssignedData


class InvestigationStartedRecord(RecordBase):
    type: Literal["InvestigationStarted"]
    data: InvestigationStartedData


class ChildConversationHeldRecord(RecordBase):
    type: Literal["ChildConversationHeld"]
    data: ChildConversationHeldData


class InvestigationCompletedRecord(RecordBase):
    type: Literal["InvestigationCompleted"]
    data: InvestigationCompletedData


class ChildPlanMadeRecord(RecordBase):
    type: Literal["ChildPlanMade"]
    data: ChildPlanMadeData


class MeasureStartedRecord(RecordBase):
    type: Literal["MeasureStarted"]
    data: MeasureStartedData


class FollowUpHeldRecord(RecordBase):
    type: Literal["FollowUpHeld"]
    data: FollowUpHeldData


class SupervisionVisitHeldRecord(RecordBase):
    type: Literal["SupervisionVisitHeld"]
    data: SupervisionVisitHeldData


class MeasureEndedRecord(RecordBase):
    type: Literal["MeasureEnded"]
    data: MeasureEndedData


class WaitlistEnteredRecord(RecordBase):
    type: Literal["WaitlistEntered"]
    data: WaitlistEnteredData


class WaitlistLeftRecord(RecordBase):
    type: Literal["WaitlistLeft"]
    data: WaitlistLeftData


class CaseClosedRecord(RecordBase):
    type: Literal["CaseClosed"]
    data: CaseClosedData


Record = (
    UnderretningReceivedRecord
    | ReceiptSentRecord
    | UnderretningAssessedRecord
    | CaseOpenedRecord
    | CaseworkerAssignedRecord
    | InvestigationStartedRecord
    | ChildConversationHeldRecord
    | InvestigationCompletedRecord
    | ChildPlanMadeRecord
    | MeasureStartedRecord
    | FollowUpHeldRecord
    | SupervisionVisitHeldRecord
    | MeasureEndedRecord
    | WaitlistEnteredRecord
    | WaitlistLeftRecord
    | CaseClosedRecord
)

RECORD_MODELS: Final[dict[str, type[RecordBase]]] = {
    "UnderretningReceived": UnderretningReceivedRecord,
    "ReceiptSent": ReceiptSentRecord,
    "UnderretningAssessed": UnderretningAssessedRecord,
    "CaseOpened": CaseOpenedRecord,
    "CaseworkerAssigned": CaseworkerAssignedRecord,
    "InvestigationStarted": InvestigationStartedRecord,
    "ChildConversationHeld": ChildConversationHeldRecord,
    "InvestigationCompleted": InvestigationCompletedRecord,
    "ChildPlanMade": ChildPlanMadeRecord,
    "MeasureStarted": MeasureStartedRecord,
    "FollowUpHeld": FollowUpHeldRecord,
    "SupervisionVisitHeld": SupervisionVisitHeldRecord,
    "MeasureEnded": MeasureEndedRecord,
    "WaitlistEntered": WaitlistEnteredRecord,
    "WaitlistLeft": WaitlistLeftRecord,
    "CaseClosed": CaseClosedRecord,
}
ENVELOPE_FIELDS: Final = ("record_id", "type", "municipality", "occurred_at", "data")


def child_of(record: RecordBase) -> CprChild | UnbornChild | None:
    """The record's child, for the two record types that carry one."""
    data = record.__dict__.get("data")  # (getattr with a default is slow on a pydantic model)
    child = data.__dict__.get("child") if data is not None else None
    return child if isinstance(child, CprChild | UnbornChild) else None


def canonical_content(record: RecordBase) -> dict[str, Any]:
    """The record as a JSON-ready dict for the content hash: normalized CPR digits, `occurred_at`
    as a UTC instant (the same moment written with another offset is the same content), no nulls."""
    doc = record.model_dump(mode="json", exclude_none=True)
    doc["occurred_at"] = record.occurred_at.astimezone(UTC).isoformat()
    return doc


# --- parsing and readable errors -------------------------------------------------------------


class Rejection(BaseModel):
    """Why a record was refused: the field (a JSON path such as `data.child.cpr`) and the reason."""

    model_config = ConfigDict(frozen=True)

    field: str | None
    reason: str
    record_id: str | None = None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAGS:
            continue
        else:
            out += ("." if out else "") + part
    return out or "record"


_MESSAGES: Final[dict[str, str]] = {
    "missing": "is required",
    "string_type": "must be a JSON string",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "list_type": "must be a JSON list",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "string_too_short": "must not be empty",
}


def _message(err: Mapping[str, Any], record_type: str) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"])
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return (
                "is not an envelope field; a record has exactly record_id, type, municipality, "
                "occurred_at and data"
            )
        return f"is not a field of a {record_type} record"
    if kind == "too_short" and loc and loc[-1] == "reasons":
        return "must name at least one reason code"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    return _MESSAGES.get(kind, str(err["msg"]))


def rejection_from(exc: ValidationError, record_type: str, record_id: str | None) -> Rejection:
    """One readable rejection from all of pydantic's errors (first field named; at most 5 listed)."""
    parts: list[str] = []
    first_field: str | None = None
    for err in exc.errors(include_input=False, include_url=False):
        field = _path(tuple(err["loc"]))
        first_field = first_field or field
        part = f"{field}: {_message(err, record_type)}"
        if part not in parts:
            parts.append(part)
    shown = parts[:5]
    if len(parts) > 5:
        shown.append(f"and {len(parts) - 5} more")
    return Rejection(field=first_field, reason="; ".join(shown), record_id=record_id)


def parse_record(
    obj: Any,
    *,
    now: datetime,
    measure_types: Mapping[str, MeasureType] = DEFAULT_MEASURE_TYPES,
) -> RecordBase | Rejection:
    """A decoded JSON value -> a typed, validated record, or why not."""
    if not isinstance(obj, dict):
        return Rejection(field="record", reason="record: a record must be a JSON object")
    raw_id = obj.get("record_id")
    record_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 200 else None
    if record_id is not None:
        try:
            _plain_text(record_id)
            if not record_id.isascii():
                record_id.encode()  # a lone surrogate (JSON "\ud800") cannot be written back
        except ValueError:  # (UnicodeEncodeError is one)
            record_id = None  # never echo a record id that could hold a CPR number, or is not text
    record_type = obj.get("type")
    if record_type is None:
        return Rejection(field="type", reason="type: is required", record_id=record_id)
    if not isinstance(record_type, str) or record_type not in RECORD_MODELS:
        return Rejection(
            field="type",
            reason=f"type: unknown record type {show(record_type)}; allowed: {', '.join(RECORD_MODELS)}",
            record_id=record_id,
        )
    model = RECORD_MODELS[record_type]
    try:
        record = model.model_validate(obj, context={"now": now, "measure_types": measure_types})
    except ValidationError as exc:
        return rejection_from(exc, record_type, record_id)
    return _cross_checks(record) or record


def _cross_checks(record: RecordBase) -> Rejection | None:
    if isinstance(record, FollowUpHeldRecord) and record.data.next_due is not None:
        held_on = record.occurred_at.astimezone(COPENHAGEN).date()
        if record.data.next_due < held_on:
            return Rejection(
                field="data.next_due",
                reason=f"data.next_due: {record.data.next_due} is before the follow-up itself ({held_on})",
                record_id=record.record_id,
            )
    return None
