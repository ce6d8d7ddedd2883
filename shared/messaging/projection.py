"""What a projection is, for the consumer runner. Projections are written once and run on either
transport (Kafka or the SQL event log)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Connection, MetaData

from shared.events.envelope import EventEnvelope


class Projection(Protocol):
    """A read model fed by events.

    `apply` is called inside a database transaction that the runner opens on the projection's own
    database; the runner writes its checkpoint and processed-event rows in that same transaction and
    commits, and only then commits the Kafka offset. The runner hands `apply` only events this
    projection has not processed yet (it deduplicates by event id), but `apply` must still give the
    same end state whatever order the events of a child arrive in. Raising makes the runner retry
    the batch event by event, and dead-letter an event that keeps failing.
    """

    name: str
    metadata: MetaData

    def apply(self, conn: Connection, events: Sequence[EventEnvelope]) -> None: ...

    def reset(self, conn: Connection) -> None:
        """Delete all of this projection's state (the runner then replays from the start)."""
        ...
