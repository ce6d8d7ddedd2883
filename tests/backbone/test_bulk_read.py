"""The bulk rebuild's read path equals the ordinary one: log rows read straight from the driver decode
to the same envelopes as `row_to_envelope` (every event type, an older schema version upcast, the
same errors for undecodable rows), and `bulk_replay` dead-letters undecodable rows exactly as the
ordinary runner does."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from shared.config import ServiceSettings
from shared.events import catalogue
from shared.events.catalogue import UnknownEventType, decode_payload_json, json_decoder
from shared.events.envelope import _ENVELOPE_FIELDS, EventEnvelope, make_envelope
from shared.eventstore.schema import events
from shared.eventstore.store import LOG_COLUMNS, EventStore, log_row_to_envelope, row_to_envelope
from shared.messaging.runner import ProjectionWorker, _log_page, log_head, replay, reset_projection
from shared.messaging.schema import dead_letters
from tests.backbone.test_parallel_replay import PerChildProjection
from tests.ledelsesinfo.test_projection import rich_events


def _append(store_engine: Engine, envs: Sequence[EventEnvelope]) -> None:
    store = EventStore()
    by_stream: dict[str, list[EventEnvelope]] = {}
    for e in envs:
        by_stream.setdefault(e.stream_id, []).append(e)
    with store_engine.begin() as conn:
        for stream, evs in by_stream.items():
            store.append(conn, sorted(evs, key=lambda e: e.version), expected_version=0, content_hash=stream)


def _both(store_engine: Engine) -> list[tuple[Any, Any]]:
    """(the SQLAlchemy row, the driver's LogRow) of every log row, in (stream, version) order."""
    with store_engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.stream_id, events.c.version)).all()
    log_rows = _log_page(store_engine, log_head(store_engine), None, (None, None), 10_000)
    assert [r[0] for r in log_rows] == [r.position for r in rows]
    return list(zip(rows, log_rows, strict=True))


def _outcome(decode: Any, row: Any) -> object:
    try:
        return decode(row)
    except Exception as exc:
        return f"undecodable event: {exc!r}"


def test_log_rows_decode_to_the_same_envelopes(store_engine: Engine) -> None:
    envs = rich_events()
    assert len({type(e.payload) for e in envs}) >= 14  # (nearly) every event type of the catalogue
    _append(store_engine, envs)
    pairs = _both(store_engine)
    assert len(pairs) == len(envs)
    for row, log_row in pairs:
        assert log_row == tuple(row._mapping[c] for c in LOG_COLUMNS)
        fast = log_row_to_envelope(log_row)
        assert fast == row_to_envelope(row)
        assert fast.position == row.position and fast.occurred_at.isoformat() == row.occurred_at
    by_id = {e.event_id: e for e in envs}
    for _row, lr in pairs:
        assert log_row_to_envelope(lr) == dataclasses.replace(by_id[lr[1]], position=lr[0])


def test_older_schema_versions_and_undecodable_rows_decode_alike(
    store_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _append(store_engine, rich_events()[:3])
    with store_engine.begin() as conn:
        first = conn.execute(select(events).order_by(events.c.position)).first()
        assert first is not None
        template = {k: v for k, v in first._mapping.items() if k != "position"}

        def bad(n: int, **changes: Any) -> None:
            ids = {"event_id": f"bad-{n}", "stream_id": f"child-657-bad{n}", "record_id": f"bad-{n}"}
            conn.execute(insert(events), {**template, **ids, **changes})

        bad(1, type="NoSuchEvent")
        bad(2, data='{"underretning_id": ')  # cut off
        bad(3, data=json.dumps({"underretning_id": "u", "extra": 1}))  # fails validation
        bad(4, occurred_at="not a time")
        bad(5, schema_version=99)  # newer than this code
        bad(6, schema_version=0)  # older: no upcaster registered (yet)
    pairs = _both(store_engine)
    outcomes = [(_outcome(row_to_envelope, row), _outcome(log_row_to_envelope, lr)) for row, lr in pairs]
    assert all(ordinary == fast for ordinary, fast in outcomes)
    assert sum(isinstance(o, str) for o, _f in outcomes) == 6

    # with an upcaster for version 0 the old row decodes, on both paths, to the current shape
    name = template["type"]
    monkeypatch.setitem(catalogue._UPCASTERS, (name, 0), lambda data: data)
    monkeypatch.setattr(catalogue, "_JSON_DECODERS", {})
    old = [(row, lr) for row, lr in _both(store_engine) if row.schema_version == 0]
    assert len(old) == 1
    assert log_row_to_envelope(old[0][1]) == row_to_envelope(old[0][0])
    assert log_row_to_envelope(old[0][1]).schema_version == 1


def test_json_decoder_is_decode_payload_json() -> None:
    for e in rich_events():
        text = e.data_json()
        decoded = json_decoder(e.type, e.schema_version)(text)
        assert decoded == decode_payload_json(e.type, e.schema_version, text) == e.payload
    with pytest.raises(UnknownEventType):
        json_decoder("NoSuchEvent", 1)
    assert ("NoSuchEvent", 1) not in catalogue._JSON_DECODERS


def test_make_envelope_is_the_dataclass() -> None:
    assert tuple(f.name for f in dataclasses.fields(EventEnvelope)) == _ENVELOPE_FIELDS
    for e in rich_events():
        values = [getattr(e, name) for name in _ENVELOPE_FIELDS]
        made = make_envelope(*values)
        assert type(made) is EventEnvelope and made == EventEnvelope(*values)
        assert all(getattr(made, name) is getattr(e, name) for name in _ENVELOPE_FIELDS)
        assert hash(made) == hash(e)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.version = 2  # type: ignore[misc]


def test_bulk_replay_dead_letters_undecodable_rows_like_the_ordinary_runner(
    db_url: str, store_engine: Engine
) -> None:
    envs = rich_events()
    _append(store_engine, envs)
    with store_engine.begin() as conn:
        first = conn.execute(select(events).order_by(events.c.position)).first()
        assert first is not None
        row = {k: v for k, v in first._mapping.items() if k != "position"}
        conn.execute(insert(events), {**row, "event_id": "bad-1", "record_id": "bad-1", "version": 999,
                                      "type": "NoSuchEvent"})
    settings = ServiceSettings(transport="sql", event_store_url=db_url, database_url=db_url)
    c = dead_letters.c
    letter_columns = (c.event_id, c.origin, c.error, c.payload)
    projection = PerChildProjection()
    worker = ProjectionWorker(projection, settings, store_engine=store_engine)
    worker.ensure_schema()

    assert replay(projection, settings, workers=1) == len(envs) + 1  # the bulk path
    bulk_state = projection.state(worker.engine)
    with worker.engine.connect() as conn:
        bulk_letters = [tuple(r) for r in conn.execute(select(*letter_columns))]
    assert sum(n for n, _v in bulk_state.values()) == len(envs)

    ordinary = ProjectionWorker(projection, settings, store_engine=store_engine, batch_size=7)
    reset_projection(ordinary)  # the same from scratch through the ordinary runner
    assert ordinary.drain() == len(envs) + 1
    with worker.engine.connect() as conn:
        letters = [tuple(r) for r in conn.execute(select(*letter_columns))]
    assert projection.state(worker.engine) == bulk_state
    assert bulk_letters == letters and len(letters) == 1
    assert letters[0][2].startswith("undecodable event: UnknownEventType(")
