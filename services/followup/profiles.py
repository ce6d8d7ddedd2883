"""A `chef`'s change of the cadence profile / caseload target as an event in the shared log.

`PUT /profiles/{municipality}` does not write follow-up's own table first: it appends one
`CadenceProfileChanged` (the WHOLE profile and target in force from then on) to the municipality's
stream `municipality-{m}` of the event store intake writes, the same way intake appends a record's
event (`EventStore.append` with the stream's expected version, the outbox row in the same
transaction when the transport is Kafka, so intake's relay publishes it). Every consumer (follow-up's
own worker, ledelsesinfo) then learns it from the log; follow-up also applies it to its own tables
at once (`FollowupProjection.apply`, idempotent by event id) so the answer of the PUT, and a GET right
after it, show it.

A partial change (only some fields, or only the target) is completed from what is in force now: the
stream's newest event, or (before the first event) follow-up's own profile timeline, which also
holds changes made before profile changes were events. Two changes at once: the loser's append
meets the winner's version (ConcurrencyError); it reads again and retries, a few times.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select, update

from services.followup.tables import fu_profiles
from shared.casework.cadence import CadenceProfile
from shared.casework.calendar import as_utc
from shared.events.catalogue import CadenceProfileChanged, stream_id_for_municipality
from shared.events.envelope import EventEnvelope
from shared.eventstore.schema import events
from shared.eventstore.store import ConcurrencyError, EventStore, new_event_id

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class ProfileConflict(Exception):
    """Other changes of the same municipality's profile kept winning; nothing was written."""


@dataclass(frozen=True, slots=True)
class InForce:
    """The profile and caseload target in force now, which a partial change completes."""

    profile: CadenceProfile
    caseload_target: int


Complete = Callable[[InForce], InForce]
"""The change: what is in force now -> what is in force after it (may raise a validation error)."""


def event_store_for(transport: str, kafka_topic: str) -> EventStore:
    """The store as intake sets it up: an outbox row per event on Kafka; on the SQL log, appends in
    position order (the projections tail it by position)."""
    return EventStore(
        outbox_topic=kafka_topic if transport == "kafka" else None,
        serialize_appends=(transport == "sql"),
    )


def profile_event(
    municipality: str,
    version: int,
    after: InForce,
    changed_by: str,
    at: datetime,
    correlation_id: str | None = None,
) -> EventEnvelope:
    """The `CadenceProfileChanged` event (version `version` of the municipality's stream)."""
    return EventEnvelope(
        event_id=new_event_id(),
        stream_id=stream_id_for_municipality(municipality),
        version=version,
        municipality=municipality,
        record_id=f"profile-{new_event_id()}",
        occurred_at=at,
        recorded_at=at,
        correlation_id=correlation_id or new_event_id(),
        payload=CadenceProfileChanged(
            profile=after.profile.to_json(),
            caseload_target=after.caseload_target,
            changed_by=changed_by,
        ),
    )


def append_profile_change(
    store_engine: Engine,
    store: EventStore,
    municipality: str,
    changed_by: str,
    complete: Complete,
    local: Callable[[datetime], InForce],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    correlation_id: str | None = None,
) -> EventEnvelope:
    """Append the change to the log (committed on return); returns the stored event.

    `local(now)` is what follow-up's own tables say is in force (used before the stream's first
    event). Raises `ProfileConflict` after MAX_ATTEMPTS lost races, and whatever `complete`
    raises for a change that is not valid (nothing written)."""
    stream_id = stream_id_for_municipality(municipality)

    def next_change(conn: Connection, version: int) -> EventEnvelope:
        now = clock()
        current = _newest(store, conn, stream_id) if version > 1 else None
        after = complete(current or local(now))
        return profile_event(municipality, version, after, changed_by, now, correlation_id)

    return _append_next(store_engine, store, stream_id, municipality, next_change)


def _append_next(
    store_engine: Engine,
    store: EventStore,
    stream_id: str,
    municipality: str,
    make: Callable[[Connection, int], EventEnvelope],
) -> EventEnvelope:
    """Append `make(conn, version)`, the stream's next version, in one transaction (committed on
    return); when another change took that version first, make it again on the new end, at most
    MAX_ATTEMPTS times, then `ProfileConflict`. Returns the stored event."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with store_engine.begin() as conn:
                version = store.stream_version(conn, stream_id)
                env = make(conn, version + 1)
                data = env.data_json()
                return store.append(
                    conn,
                    [env],
                    expected_version=version,
                    content_hash=hashlib.sha256(data.encode()).hexdigest(),
                )[0]
        except ConcurrencyError:
            log.info("followup: a concurrent profile change, retrying", extra={"attempt": attempt})
    raise ProfileConflict(municipality)


def _newest(store: EventStore, conn: Connection, stream_id: str) -> InForce | None:
    """What the stream's newest profile change put in force."""
    events = store.read_stream(conn, stream_id)
    for env in reversed(events):
        payload = env.payload
        if isinstance(payload, CadenceProfileChanged):
            return InForce(CadenceProfile.from_json(payload.profile), payload.caseload_target)
    return None


# --- changes made before profile changes were events ----------------------------------------------


def publish_earlier_changes(
    engine: Engine,
    store_engine: Engine,
    store: EventStore,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Put the profile changes follow-up recorded before they were events (`fu_profiles` rows with
    no event id) into the shared log, so ledelsesinfo and a fresh follow-up database learn them too;
    returns how many events were appended. Each event is in force from the row's `changed_at`.

    Safe to run again and after a crash: first every such row gets its event id (one commit), then
    every row whose event id the log lacks is appended under that id; follow-up's worker meets the
    event and finds it applied (same event id), and from then on a replay makes the row from the log.
    """
    t = fu_profiles
    with engine.begin() as conn:
        legacy = conn.execute(
            select(t.c.id).where(t.c.event_id.is_(None)).order_by(t.c.changed_at, t.c.id)
        ).scalars().all()
        for row_id in legacy:
            conn.execute(update(t).where(t.c.id == row_id).values(event_id=new_event_id()))
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.event_id.is_not(None)).order_by(t.c.changed_at, t.c.id)).all()
    published = 0
    for row in rows:
        with store_engine.connect() as conn:
            known = conn.execute(select(events.c.event_id).where(events.c.event_id == row.event_id)).first()
        if known is not None:
            continue
        env = EventEnvelope(
            event_id=row.event_id,
            stream_id=stream_id_for_municipality(row.municipality),
            version=0,  # the stream's next, when appended
            municipality=row.municipality,
            record_id=f"profile-{row.event_id}",
            occurred_at=as_utc(row.changed_at),
            recorded_at=clock(),
            correlation_id=new_event_id(),
            payload=CadenceProfileChanged(
                profile=json.loads(row.profile),
                caseload_target=row.caseload_target,
                changed_by=row.changed_by,
            ),
        )
        _append_next(store_engine, store, env.stream_id, env.municipality, _at_next_version(env))
        published += 1
    return published


def _at_next_version(env: EventEnvelope) -> Callable[[Connection, int], EventEnvelope]:
    """`env` as the version `_append_next` gives it."""
    return lambda _conn, version: replace(env, version=version)
