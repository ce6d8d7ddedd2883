"""The bulk import's shortcuts must change nothing: `fastpath.fast_record` gives exactly the record
`parse_record` gives (or leaves the line to it), `canonical_json` exactly the text the content hash
always covered, `pack`/`unpack` the record back; orjson decodes what it accepts as `json` does; the
CPR birth date as stdnum reads it; event ids as before; result lines byte for byte as before."""

from __future__ import annotations

import copy
import json
import pickle
import uuid
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import BaseModel
from stdnum.dk import cpr as stdnum_cpr
from stdnum.exceptions import ValidationError as StdnumValidationError

from services.intake import parsing
from services.intake.bulk import _encode, _encoded, _result
from services.intake.domain import fastpath
from services.intake.domain.cpr import CprError, birth_date
from services.intake.domain.records import RECORD_MODELS, RecordBase, canonical_content, parse_record
from services.intake.service import Outcome
from shared.events.codes import DEFAULT_MEASURE_TYPES
from shared.eventstore.store import new_event_id, new_event_ids
from tests.intake.conftest import NOW, examples
from tests.intake.test_write_many import POOL, family

CTX = fastpath.context(NOW, DEFAULT_MEASURE_TYPES)


def same(a: Any, b: Any) -> bool:
    """Equal as objects: same classes, same values, same fields set, down to the child."""
    if type(a) is not type(b):
        return False
    if isinstance(a, BaseModel):
        return (
            a.__pydantic_fields_set__ == b.__pydantic_fields_set__
            and list(a.__dict__) == list(b.__dict__)
            and a.__pydantic_extra__ == b.__pydantic_extra__
            and all(same(a.__dict__[k], b.__dict__[k]) for k in a.__dict__)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.isoformat() == b.isoformat()
    return bool(a == b)


def stdlib_canonical(record: RecordBase) -> bytes:
    doc = canonical_content(record)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check(obj: Any, municipality: str = "751") -> RecordBase | None:
    """The shortcut against pydantic for one decoded value; returns the shortcut's record."""
    slow = parse_record(copy.deepcopy(obj), now=NOW, measure_types=DEFAULT_MEASURE_TYPES)
    fast = fastpath.fast_record(copy.deepcopy(obj), CTX, municipality)
    if fast is None:
        return None
    assert isinstance(slow, RecordBase), (obj, slow)  # the shortcut never takes what pydantic refuses
    assert slow.municipality == municipality
    assert same(fast, slow), (fast, slow)
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fastpath.canonical_json(fast) == stdlib_canonical(slow)
    assert same(fastpath.unpack(pickle.loads(pickle.dumps(fastpath.pack(fast)))), slow)
    return fast


CORPUS = [*examples(), *POOL, *(r for i in range(30) for r in family(i))]


def test_the_shortcut_takes_every_plainly_valid_record_and_gives_what_pydantic_gives() -> None:
    taken = [r for r in CORPUS if r["municipality"] == "751" and check(r) is not None]
    valid = [
        r
        for r in CORPUS
        if r["municipality"] == "751"
        and isinstance(
            parse_record(copy.deepcopy(r), now=NOW, measure_types=DEFAULT_MEASURE_TYPES), RecordBase
        )
    ]
    assert len(taken) == len(valid) > 100  # not just safe: it is used
    assert {r["type"] for r in taken} == set(RECORD_MODELS)


def test_the_shortcut_leaves_other_municipalities_to_pydantic() -> None:
    record = next(r for r in POOL if r["municipality"] == "657")
    assert fastpath.fast_record(copy.deepcopy(record), CTX, "751") is None
    assert check(record, municipality="657") is not None


# --- mutations: whatever the shortcut takes, pydantic takes the same way -----------------------------------

ODD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    18500,
    2**70,
    0.5,
    1e-05,
    -0.0,
    1e300,
    "",
    " ",
    "x",
    "x" * 101,
    "x" * 201,
    "x" * 501,
    "a\x00b",
    "2404194012",
    "240419-4012",
    "3102194012",
    "kontakt 2404194012",
    "æøå \u2028 \U0001f600",
    'quote " and \\ backslash\n',
    "2026-11-02",
    "2026-02-30",
    "2026-11-02\n",
    "2026-11-02T09:15:00+01:00",
    "2026-11-02T09:15:00",
    "2026-11-02T09:15:00Z",
    "2026-11-02 09:15:00.123456+05:30",
    "2026-11-24T13:00:00+00:00",
    "1899-12-31T23:00:00+00:00",
    "751",
    "751\n",
    "657",
    "barn_skole",
    "raadgivning",
    "ukendt_type",
    "3",
    "99",
    "akut",
    "afdaekning",
    [],
    ["andet"],
    ["andet", "andet"],
    ["nope"],
    [1],
    {},
    {"cpr": "2404194012"},
    {"cpr": "240419-4012"},
    {"cpr": "0101104001", "extra": 1},
    {"unborn": True, "expected_birth": "2027-02-01", "mother_cpr": "1208994321"},
    {"unborn": 1, "expected_birth": "2027-02-01", "mother_cpr": "1208994321"},
    {"unborn": True, "expected_birth": "2027-02-01"},
    {"unborn": True, "expected_birth": "2027-02-30", "mother_cpr": "1208994321"},
]


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    record = copy.deepcopy(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(0, 3))):
        where = record if draw(st.booleans()) else record.get("data")
        if not isinstance(where, dict):
            break
        key = draw(st.sampled_from([*where.keys(), "extra", "case_id", "professional", "next_due", "child"]))
        action = draw(st.sampled_from(["set", "set", "delete"]))
        if action == "delete":
            where.pop(key, None)
        else:
            where[key] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    return record


@given(mutated())
@hsettings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_the_shortcut_takes_pydantic_takes_the_same_way(record: dict[str, Any]) -> None:
    check(record)


@given(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
)
@hsettings(max_examples=300, deadline=None)
def test_canonical_text_of_any_text_and_number_is_the_stdlib_one(text: str, cost: float) -> None:
    record = {
        "record_id": "r-1",
        "type": "MeasureStarted",
        "municipality": "751",
        "occurred_at": "2026-11-09T09:00:00.5+01:00",
        "data": {"case_id": "S-1", "measure_id": "M-1", "measure_type": "raadgivning"},
    }
    record["data"].update(provider=text, monthly_cost_dkk=cost)
    parsed = parse_record(record, now=NOW, measure_types=DEFAULT_MEASURE_TYPES)
    if isinstance(parsed, RecordBase):
        assert fastpath.canonical_json(parsed) == stdlib_canonical(parsed)


JSON_TEXTS = [
    b'{"a": 1, "a": 2}',
    b"123456789012345678901234567890",
    b"1e400",
    b"NaN",
    b'"\\ud800"',
    b'"\\u0000"',
    b'{"x": [1.5, -0, 1E5, 0.1]}',
    b"\xef\xbb\xbf{}",
    b'{"x": "\xff"}',
    b"[[[[[[[[[[]]]]]]]]]]",
]


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_orjson_decodes_what_it_accepts_as_json_does(text: bytes) -> None:
    try:
        got = orjson.loads(text)
    except orjson.JSONDecodeError:
        return  # such a line goes the careful way (json), as before
    want = json.loads(text.decode("utf-8"))
    if isinstance(want, int) and not isinstance(want, bool) and abs(want) >= 2**64:
        assert got == float(want)  # orjson reads a huge integer as a float: the shortcut refuses it
        return
    assert got == want and type(got) is type(want)


def test_duplicate_keys_and_a_huge_number_go_the_same_way() -> None:
    base = copy.deepcopy(POOL[10])  # MeasureStarted ex-11 with monthly_cost_dkk
    text = json.dumps(base).replace(
        '"monthly_cost_dkk": 18500', '"monthly_cost_dkk": 1, "monthly_cost_dkk": 7'
    )
    parsed = parsing.fast_lines([text.encode()], NOW, DEFAULT_MEASURE_TYPES, "751", _mac())
    assert parsed[0] is not None
    assert same(parsed[0][0], parse_record(json.loads(text), now=NOW, measure_types=DEFAULT_MEASURE_TYPES))
    huge = json.dumps(base).replace("18500", "1" + "0" * 30).encode()
    got = parsing.fast_lines([huge], NOW, DEFAULT_MEASURE_TYPES, "751", _mac())[0]
    want = parse_record(json.loads(huge), now=NOW, measure_types=DEFAULT_MEASURE_TYPES)
    assert got is not None and same(got[0], want)


def _mac() -> Any:
    import hashlib
    import hmac

    return hmac.new(b"k" * 32, digestmod=hashlib.sha256)


# --- the CPR birth date, event ids, result lines -----------------------------------------------------------


def test_the_birth_date_is_read_as_stdnum_reads_it() -> None:
    for seventh in "0123456789":
        for year in range(100):
            for day, month in [(1, 1), (29, 2), (28, 2), (31, 4), (30, 4), (0, 1), (1, 13), (1, 0), (31, 12)]:
                digits = f"{day:02d}{month:02d}{year:02d}{seventh}123"
                try:
                    want: date | str = stdnum_cpr.get_birth_date(digits)
                except StdnumValidationError:
                    want = "invalid"
                try:
                    got: date | str = birth_date(digits)
                except CprError:
                    got = "invalid"
                assert got == want, digits


def test_event_ids_are_time_ordered_uuid7s() -> None:
    ids = new_event_ids(500) + [new_event_id()]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    ms = [int(value.replace("-", "")[:12], 16) for value in ids]
    assert ms == sorted(ms)
    assert abs(ms[-1] - datetime.now(UTC).timestamp() * 1000) < 60_000
    assert len({value[15:18] + value[19:] for value in ids}) == len(ids)  # the random part varies


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("accepted", "r-1", event_id="e", position=3),
        Outcome("accepted", 'quote " æøå \u2028 \U0001f600\n', event_id="e", position=3, change=False),
        Outcome("duplicate", "r-1", position=4),
        Outcome("duplicate", "r-1"),
        Outcome("rejected", None, reason="line: not valid JSON", field="line"),
        Outcome("conflict", "r-1", reason="record_id: 'r-1' was already accepted", field="record_id"),
        Outcome("busy", "r-1", reason="record: busy", field="record"),
    ],
)
def test_result_lines_are_written_as_before(outcome: Outcome) -> None:
    assert _encoded(17, outcome) == _encode(_result(17, outcome)).encode()
    assert orjson.loads(_encoded(17, outcome)) == json.loads(_encode(_result(17, outcome)))


def test_event_data_is_written_as_the_envelope_writes_it() -> None:
    from services.intake.domain.decide import Accept, CaseInfo, MeasureInfo, State, UnderretningInfo, decide
    from services.intake.service import payload_json
    from shared.events.catalogue import ChildRef

    child = ChildRef(child_id="c" * 32, sex="U", expected_birth=date(2027, 2, 1), unborn=True)
    case = CaseInfo("S-2001", "c" * 32, "syd", datetime(2026, 1, 1, tzinfo=UTC))
    state = State(
        child=child,
        case=case,
        measure=MeasureInfo("I-3001", "S-2001", "familiebehandling", datetime(2026, 1, 2, tzinfo=UTC)),
        underretning=UnderretningInfo("UR-1001", "c" * 32, "syd", datetime(2026, 1, 1, tzinfo=UTC)),
        measure_types=DEFAULT_MEASURE_TYPES,
    )
    kinds = set()
    for raw in POOL:
        record = parse_record(copy.deepcopy(raw), now=NOW, measure_types=DEFAULT_MEASURE_TYPES)
        assert isinstance(record, RecordBase)
        if record.type in ("UnderretningReceived", "CaseOpened", "MeasureStarted"):
            state.case, state.measure, state.underretning = (None, None, None)
            if record.type == "MeasureStarted":
                state.case = case
        else:
            state.case, state.underretning = case, state.underretning or UnderretningInfo(
                "UR-1001", "c" * 32, "syd", datetime(2026, 1, 1, tzinfo=UTC)
            )
        decision = decide(record, state)
        if isinstance(decision, Accept):
            kinds.add(decision.payload.event_type)
            assert payload_json(decision.payload) == decision.payload.model_dump_json()
    assert len(kinds) >= 12
