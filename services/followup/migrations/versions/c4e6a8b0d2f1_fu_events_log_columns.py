"""fu_events keeps the log's columns

An event was stored as one JSON body (`EventEnvelope.to_wire()`); it is now stored with the event
log's own columns (position, version, type, schema_version, record_id, the instants' and the
payload's texts) and read back with the log's decoder: no JSON keys repeated in every row, no body
to put together in a rebuild. Existing bodies are split into the columns; a downgrade puts them
together again.

Revision ID: c4e6a8b0d2f1
Revises: 8f2d4b6a1c93
Create Date: 2026-12-04 19:50:00.000000

"""
import json
from typing import Any, Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'c4e6a8b0d2f1'
down_revision: Union[str, Sequence[str], None] = '8f2d4b6a1c93'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHUNK = 5000
_COLUMNS = (
    ("position", sa.BigInteger(), True),
    ("version", sa.Integer(), False),
    ("type", sa.String(length=64), False),
    ("schema_version", sa.Integer(), False),
    ("record_id", sa.String(length=200), False),
    ("occurred_text", sa.String(length=40), False),
    ("recorded_text", sa.String(length=40), False),
    ("correlation_id", sa.String(length=64), False),
    ("data", sa.Text(), False),
)
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _pages(select_sql: str) -> Any:
    """The rows of `select_sql` (its first column the event id, `:after` its lower bound), in pages."""
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(sa.text(select_sql), {"after": after, "limit": CHUNK}).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('fu_events', schema=None) as batch_op:
        for name, type_, _nullable in _COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    conn = op.get_bind()
    update = sa.text(
        "UPDATE fu_events SET position = :position, version = :version, type = :type, "
        "schema_version = :schema_version, record_id = :record_id, occurred_text = :occurred_at, "
        "recorded_text = :recorded_at, correlation_id = :correlation_id, data = :data "
        "WHERE event_id = :event_id"
    )
    for rows in _pages(
        "SELECT event_id, body FROM fu_events WHERE event_id > :after ORDER BY event_id LIMIT :limit"
    ):
        values = []
        for event_id, body in rows:
            wire = json.loads(body)
            values.append({
                "event_id": event_id, "position": wire.get("position"), "version": wire["version"],
                "type": wire["type"], "schema_version": wire["schema_version"],
                "record_id": wire["record_id"], "occurred_at": wire["occurred_at"],
                "recorded_at": wire["recorded_at"], "correlation_id": wire["correlation_id"],
                "data": _compact(wire["data"]),
            })
        conn.execute(update, values)
    with op.batch_alter_table('fu_events', schema=None) as batch_op:
        for name, type_, nullable in _COLUMNS:
            if not nullable:
                batch_op.alter_column(name, existing_type=type_, nullable=False)
        batch_op.drop_column('body')


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('fu_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body', sa.Text(), nullable=True))
    conn = op.get_bind()
    update = sa.text("UPDATE fu_events SET body = :body WHERE event_id = :event_id")
    for rows in _pages(
        "SELECT event_id, stream_id, version, type, schema_version, municipality, record_id, "
        "occurred_text, recorded_text, correlation_id, position, data FROM fu_events "
        "WHERE event_id > :after ORDER BY event_id LIMIT :limit"
    ):
        values = []
        for row in rows:
            (event_id, stream_id, version, type_, schema_version, municipality, record_id,
             occurred, recorded, correlation_id, position, data) = row
            body = _compact({
                "event_id": event_id, "stream_id": stream_id, "version": version, "type": type_,
                "schema_version": schema_version, "municipality": municipality,
                "record_id": record_id, "occurred_at": occurred, "recorded_at": recorded,
                "correlation_id": correlation_id, "position": position, "data": json.loads(data),
            })
            values.append({"event_id": event_id, "body": body})
        conn.execute(update, values)
    with op.batch_alter_table('fu_events', schema=None) as batch_op:
        batch_op.alter_column('body', existing_type=sa.Text(), nullable=False)
        for name, _type, _nullable in reversed(_COLUMNS):
            batch_op.drop_column(name)
