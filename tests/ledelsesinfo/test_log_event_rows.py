"""The bulk rebuild's event rows (`_log_event_rows`, one loop over a child's log rows) are those of
`encode_log_row`, event by event, also for a row of an older schema version (encoded from the
envelope, whose payload was upcast on reading)."""

from __future__ import annotations

from services.ledelsesinfo.projection import _log_event_rows, encode_event, encode_log_row
from shared.events.envelope import EventEnvelope
from shared.eventstore.store import LogRow
from tests.ledelsesinfo.test_projection import rich_events


def _log_row(position: int, e: EventEnvelope, schema_version: int | None = None) -> LogRow:
    """The row the store holds for `e` (its texts as the store writes them)."""
    return (position, e.event_id, e.stream_id, e.version, e.type,
            e.schema_version if schema_version is None else schema_version, e.municipality,
            e.record_id, e.occurred_at.isoformat(), e.recorded_at.isoformat(), e.correlation_id,
            e.data_json())


def test_log_event_rows_equal_encode_log_row() -> None:
    envs = rich_events()
    rows = [_log_row(i + 1, e) for i, e in enumerate(envs)]
    expected = [(e.event_id, e.stream_id, e.municipality, encode_log_row(row, e))
                for row, e in zip(rows, envs, strict=True)]
    assert _log_event_rows(rows, envs) == expected


def test_a_row_of_an_older_schema_version_is_encoded_from_the_envelope() -> None:
    e = rich_events()[0]
    row = _log_row(7, e, schema_version=e.schema_version - 1)
    [(event_id, stream_id, municipality, doc)] = _log_event_rows([row], [e])
    assert (event_id, stream_id, municipality) == (e.event_id, e.stream_id, e.municipality)
    assert doc == encode_event(e) == encode_log_row(row, e)
