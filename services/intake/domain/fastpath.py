"""A shortcut past pydantic for records that are plainly valid (bulk imports). Pure, no I/O.

`fast_record(obj, now=..., measure_types=..., municipality=...)` returns the very record
`parse_record` would return for `obj` (same class, same field values, same fields set), or None
when it is not sure: anything unusual (a missing or extra field, a wrong type, a value a validator
would refuse, another municipality, a number that is not a plain float) is left to
`parse_record`, which then gives its own answer and its own words. The shortcut only ever
accepts what pydantic accepts, and builds the same objects; it never rejects. It calls the same
checks as the models (`_plain_text`, `validate_cpr`, the code lists), only without pydantic's
per-field machinery: a third of the time for a typical record.

`canonical_json(record)` is the JSON text the content hash covers (what
`json.dumps(canonical_content(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
gives), built without `model_dump` and encoded with orjson where that gives the same bytes.

`pack` / `unpack` carry a record between processes as plain values (a bulk import's parsing
worker): a record is rebuilt as it was (pickling pydantic models costs more than validating them).

Every shortcut here is checked against the models by tests/intake/test_fastpath.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson
from pydantic import BaseModel

from services.intake.domain.cpr import validate_cpr
from services.intake.domain.records import (
    COPENHAGEN,
    MAX_FUTURE,
    RECORD_MODELS,
    ChildConversationHeldData,
    CprChild,
    FollowUpHeldRecord,
    RecordBase,
    UnbornChild,
    _plain_text,
)
from shared.events.codes import ASSESSMENT_DECISIONS, INVESTIGATION_KINDS, NOTIFIERS, REASONS, SEVERITIES
from shared.events.codes import MeasureType as MeasureTypeInfo

_set = object.__setattr__
_ISO_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UNBORN_KEYS: Final = frozenset({"unborn", "mother_cpr", "expected_birth"})
_CHILD_KEYS_UNBORN: Final = frozenset({"unborn", "mother_cpr", "expected_birth"})


class _No(Exception):
    """Not for the shortcut: let pydantic decide."""


def _new(cls: type[BaseModel], values: dict[str, Any], fields_set: set[str]) -> Any:
    """A model instance as pydantic's validation leaves it (as unpickling does)."""
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


# --- field checks: the value as the model would hold it, or _No ---------------------------------------

Context = tuple[datetime, date, Mapping[str, MeasureTypeInfo]]  # now, today in Copenhagen, measure types
Check = Callable[[Any, Context], Any]


def _text(limit: int) -> Check:
    def check(value: Any, ctx: Context) -> Any:
        if type(value) is not str or not 0 < len(value) <= limit:
            raise _No
        _plain_text(value)  # ValueError: not for the shortcut
        return value

    return check


def _code(table: Mapping[str, Any]) -> Check:
    def check(value: Any, ctx: Context) -> Any:
        if type(value) is not str or value not in table:
            raise _No
        return value

    return check


def _bool(value: Any, ctx: Context) -> Any:
    if type(value) is not bool:
        raise _No
    return value


def _iso_date(value: Any, ctx: Context) -> date:
    if type(value) is not str or not _ISO_DATE.fullmatch(value):
        raise _No
    return date.fromisoformat(value)  # ValueError: not a real date


def _cost(value: Any, ctx: Context) -> float:
    if type(value) is float:
        number = value
    elif type(value) is int:
        number = float(value)
    else:
        raise _No
    if not 0 <= number < float("inf"):  # also refuses NaN
        raise _No
    return number


def _measure_type(value: Any, ctx: Context) -> Any:
    if type(value) is not str or not 0 < len(value) <= 100 or value not in ctx[2]:
        raise _No
    return value


def _reasons(value: Any, ctx: Context) -> list[str]:
    if type(value) is not list or not value:
        raise _No
    for item in value:
        if type(item) is not str or item not in REASONS:
            raise _No
    return list(value)


def _cpr(value: Any, ctx: Context) -> str:
    if type(value) is not str:
        raise _No
    return validate_cpr(value, today=ctx[1])  # CprError (a ValueError): not for the shortcut


_ALL_CPR: Final = frozenset({"cpr"})


def _child(value: Any, ctx: Context) -> CprChild | UnbornChild:
    if type(value) is not dict:
        raise _No
    keys = value.keys()
    if keys & _UNBORN_KEYS:
        if keys != _CHILD_KEYS_UNBORN or value["unborn"] is not True:
            raise _No
        return _new(  # type: ignore[no-any-return]
            UnbornChild,
            {
                "unborn": True,
                "expected_birth": _iso_date(value["expected_birth"], ctx),
                "mother_cpr": _cpr(value["mother_cpr"], ctx),
            },
            {"unborn", "expected_birth", "mother_cpr"},
        )
    if keys != _ALL_CPR:
        raise _No
    return _new(CprChild, {"cpr": _cpr(value["cpr"], ctx)}, {"cpr"})  # type: ignore[no-any-return]


_ID = _text(100)
_TEXT = _text(500)
_RECORD_ID_LIMIT = 200

# (field, check, required) in the models' field order; optional fields default to None
Spec = tuple[tuple[str, Check, bool], ...]
SPECS: Final[dict[str, Spec]] = {
    "UnderretningReceived": (
        ("underretning_id", _ID, True),
        ("child", _child, True),
        ("notifier", _code(NOTIFIERS), True),
        ("reasons", _reasons, True),
        ("severity", _code(SEVERITIES), True),
        ("team_id", _ID, True),
        ("professional", _bool, False),
        ("case_id", _ID, False),
    ),
    "ReceiptSent": (("underretning_id", _ID, True),),
    "UnderretningAssessed": (
        ("underretning_id", _ID, True),
        ("acute", _bool, True),
        ("decision", _code(ASSESSMENT_DECISIONS), True),
    ),
    "CaseOpened": (
        ("case_id", _ID, True),
        ("child", _child, True),
        ("team_id", _ID, True),
        ("underretning_id", _ID, False),
    ),
    "CaseworkerAssigned": (("case_id", _ID, True), ("caseworker_id", _ID, True)),
    "InvestigationStarted": (("case_id", _ID, True), ("kind", _code(INVESTIGATION_KINDS), True)),
    "ChildConversationHeld": (("case_id", _ID, False), ("underretning_id", _ID, False)),
    "InvestigationCompleted": (
        ("case_id", _ID, True),
        ("kind", _code(INVESTIGATION_KINDS), True),
        ("outcome", _TEXT, False),
    ),
    "ChildPlanMade": (("case_id", _ID, True),),
    "MeasureStarted": (
        ("case_id", _ID, True),
        ("measure_id", _ID, True),
        ("measure_type", _measure_type, True),
        ("provider", _TEXT, False),
        ("monthly_cost_dkk", _cost, False),
    ),
    "FollowUpHeld": (
        ("case_id", _ID, True),
        ("measure_id", _ID, True),
        ("next_due", _iso_date, False),
        ("stable_placement_exemption", _bool, False),
    ),
    "SupervisionVisitHeld": (("case_id", _ID, True), ("measure_id", _ID, True)),
    "MeasureEnded": (("case_id", _ID, True), ("measure_id", _ID, True), ("reason", _TEXT, False)),
    "WaitlistEntered": (("case_id", _ID, True), ("offer_type", _ID, True), ("measure_id", _ID, False)),
    "WaitlistLeft": (("case_id", _ID, True), ("offer_type", _ID, True)),
    "CaseClosed": (("case_id", _ID, True),),
}

# each type: (record class, data class, spec, field names)
_TYPES: Final[dict[str, tuple[type[RecordBase], type[BaseModel], Spec, tuple[str, ...]]]] = {}
for _name, _model in RECORD_MODELS.items():
    _data_model = _model.model_fields["data"].annotation
    assert isinstance(_data_model, type) and issubclass(_data_model, BaseModel)
    _spec = SPECS[_name]
    if tuple(f for f, _, _ in _spec) != tuple(_data_model.model_fields) or any(
        required != _data_model.model_fields[f].is_required() for f, _, required in _spec
    ):  # a model changed and this table did not: no shortcut for that type
        continue
    _TYPES[_name] = (_model, _data_model, _spec, tuple(f for f, _, _ in _spec))
_RECORD_FIELDS: Final = {"record_id", "municipality", "occurred_at", "type", "data"}


def context(now: datetime, measure_types: Mapping[str, MeasureTypeInfo]) -> Context:
    """What the checks need, computed once for many records (a bulk import's chunk)."""
    return now, now.astimezone(COPENHAGEN).date(), measure_types


def _occurred_at(value: Any, now: datetime) -> datetime:
    if type(value) is not str:
        raise _No
    parsed = datetime.fromisoformat(value)
    if ("T" not in value and " " not in value) or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _No
    if parsed.year < 1900 or parsed - now > MAX_FUTURE:
        raise _No
    return parsed


def fast_record(obj: Any, ctx: Context, municipality: str) -> RecordBase | None:
    """`parse_record(obj, now=ctx's now, measure_types=ctx's types)` when that would be a record of
    `municipality` and the shortcut can tell; None otherwise (ask `parse_record`)."""
    try:
        if type(obj) is not dict or len(obj) != 5:
            return None
        kind = obj["type"]
        if type(kind) is not str:
            return None
        known = _TYPES.get(kind)
        if known is None:
            return None
        model, data_model, spec, _ = known
        record_id = obj["record_id"]
        if type(record_id) is not str or not 0 < len(record_id) <= _RECORD_ID_LIMIT:
            return None
        _plain_text(record_id)
        m = obj["municipality"]
        if type(m) is not str or m != municipality:
            return None
        occurred_at = _occurred_at(obj["occurred_at"], ctx[0])
        raw = obj["data"]
        if type(raw) is not dict:
            return None
        values: dict[str, Any] = {}
        given: set[str] = set()
        for name, check, required in spec:
            if name in raw:
                given.add(name)
                value = raw[name]
                if value is None:
                    if required:
                        return None
                    values[name] = None
                else:
                    values[name] = check(value, ctx)
            elif required:
                return None
            else:
                values[name] = None
        if len(given) != len(raw):
            return None  # a field the model does not have
        if data_model is ChildConversationHeldData and values["case_id"] is values["underretning_id"] is None:
            return None  # the model's own check: one of the two
        due = values.get("next_due") if model is FollowUpHeldRecord else None
        if due is not None and due < occurred_at.astimezone(COPENHAGEN).date():
            return None  # `_cross_checks`
        fields = {"record_id": record_id, "municipality": m, "occurred_at": occurred_at, "type": kind}
        fields["data"] = _new(data_model, values, given)
        record: RecordBase = _new(model, fields, set(_RECORD_FIELDS))
        return record
    except (_No, KeyError, ValueError, TypeError, OverflowError):
        return None


# --- the content hash's text -----------------------------------------------------------------------------


class _Slow(Exception):
    pass


def _json_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is float:
        if orjson.dumps(value) != repr(value).encode():  # orjson writes 1e-05 as 0.00001
            raise _Slow
        return value
    if kind is list:
        return [_json_value(v) for v in value]
    if kind is date:
        return value.isoformat()
    if isinstance(value, BaseModel):
        return {k: _json_value(v) for k, v in value.__dict__.items() if v is not None}
    raise _Slow


def canonical_json(record: RecordBase) -> bytes:
    """The bytes the content hash covers: `canonical_content(record)` as sorted, compact JSON."""
    try:
        doc = {k: _json_value(v) for k, v in record.__dict__["data"].__dict__.items() if v is not None}
        return orjson.dumps(
            {
                "record_id": record.record_id,
                "municipality": record.municipality,
                "occurred_at": record.occurred_at.astimezone(UTC).isoformat(),
                "type": record.__dict__["type"],
                "data": doc,
            },
            option=orjson.OPT_SORT_KEYS,
        )
    except (_Slow, orjson.JSONEncodeError):
        from services.intake.domain.records import canonical_content

        return _STDLIB_CANONICAL(canonical_content(record)).encode()


_STDLIB_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


# --- between processes ------------------------------------------------------------------------------------

_KINDS: Final = tuple(_TYPES)
_KIND_INDEX: Final = {k: i for i, k in enumerate(_KINDS)}


def pack(record: RecordBase) -> tuple[Any, ...] | None:
    """A record made by `fast_record` as plain values that pickle cheaply (dicts of strings and
    dates, `occurred_at` as its ISO text, a child as a tuple); None for a type the shortcut does not
    know. `packed[3]` is `record.occurred_at.isoformat()`."""
    d = record.__dict__
    index = _KIND_INDEX.get(d["type"])
    if index is None:
        return None
    data = d["data"]
    values = dict(data.__dict__)
    child = values.get("child")
    if child is not None:
        if type(child) is CprChild:
            values["child"] = (child.__dict__["cpr"],)
        elif type(child) is UnbornChild:
            values["child"] = (child.__dict__["expected_birth"], child.__dict__["mother_cpr"])
        else:
            return None
    given = data.__pydantic_fields_set__
    return index, d["record_id"], d["municipality"], d["occurred_at"].isoformat(), values, given


def unpack(packed: tuple[Any, ...]) -> RecordBase:
    """The record `pack` was given (the same class, values and fields set)."""
    index, record_id, municipality, occurred_at, values, given = packed
    kind = _KINDS[index]
    model, data_model, _, _ = _TYPES[kind]
    child = values.get("child")
    if child is not None:
        if len(child) == 1:
            values["child"] = _new(CprChild, {"cpr": child[0]}, {"cpr"})
        else:
            values["child"] = _new(
                UnbornChild,
                {"unborn": True, "expected_birth": child[0], "mother_cpr": child[1]},
                {"unborn", "expected_birth", "mother_cpr"},
            )
    fields = {
        "record_id": record_id,
        "municipality": municipality,
        "occurred_at": datetime.fromisoformat(occurred_at),  # exactly the datetime it was
        "type": kind,
        "data": _new(data_model, values, given),
    }
    record: RecordBase = _new(model, fields, set(_RECORD_FIELDS))
    return record
