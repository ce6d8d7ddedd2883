"""The municipalities' cadence profile and caseload target changes (`CadenceProfileChanged`, stream
`municipality-{m}`), as ledelsesinfo stores and reads them.

A change is in force from its envelope's `occurred_at` on. Changes at the same instant are ordered by
event id (ids are time-ordered), as follow-up orders them, so the timeline, and therefore every
figure, does not depend on the order the changes arrived in and both services agree on it. Before a
municipality's first change the projection's own `profile_lookup` applies (default: Herning's
profile) and reports take the settings' caseload target.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, insert, select

from services.ledelsesinfo import tables
from shared.casework.cadence import (
    CadenceProfile,
    ProfileChange,
    ProfileLookup,
    ProfileTimeline,
    profile_change_of,
)
from shared.events.envelope import EventEnvelope

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def epoch_us(instant: datetime) -> int:
    """An aware instant as UTC epoch microseconds (exact: no float)."""
    return (instant - EPOCH) // _US


def from_epoch_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class StoredChange:
    event_id: str
    recorded_us: int
    change: ProfileChange

    @property
    def changed_us(self) -> int:
        return epoch_us(self.change.changed_at)

    @property
    def order(self) -> tuple[int, str]:
        return (self.changed_us, self.event_id)


def change_of(env: EventEnvelope) -> StoredChange:
    """The change a `CadenceProfileChanged` envelope makes (ValueError on a bad profile)."""
    return StoredChange(env.event_id, epoch_us(env.recorded_at), profile_change_of(env))


def load_changes(conn: Connection, municipalities: Iterable[str] | None = None) -> list[StoredChange]:
    """The stored changes (of these municipalities), in force order."""
    t = tables.profile_changes
    stmt = select(t.c.event_id, t.c.municipality, t.c.changed_at, t.c.recorded_at, t.c.changed_by,
                  t.c.caseload_target, t.c.profile)
    if municipalities is not None:
        wanted = sorted(set(municipalities))
        if not wanted:
            return []
        stmt = stmt.where(t.c.municipality.in_(wanted))
    out = [
        StoredChange(event_id, int(recorded), ProfileChange(
            municipality=municipality,
            changed_at=from_epoch_us(int(changed)),
            changed_by=changed_by,
            profile=CadenceProfile.from_json(json.loads(profile)),
            caseload_target=int(target),
        ))
        for event_id, municipality, changed, recorded, changed_by, target, profile in conn.execute(stmt)
    ]
    out.sort(key=lambda c: c.order)
    return out


def insert_changes(conn: Connection, changes: Sequence[StoredChange]) -> None:
    """Store new changes (the caller has left out those already stored)."""
    if changes:
        conn.execute(insert(tables.profile_changes), [
            {
                "event_id": c.event_id,
                "municipality": c.change.municipality,
                "changed_at": c.changed_us,
                "recorded_at": c.recorded_us,
                "changed_by": c.change.changed_by,
                "caseload_target": c.change.caseload_target,
                "profile": json.dumps(c.change.profile.to_json(), sort_keys=True, separators=(",", ":")),
            }
            for c in changes
        ])


def lookup_of(changes: Sequence[StoredChange], fallback: ProfileLookup) -> ProfileLookup:
    """Pure: (municipality, instant) -> the profile in force then: the latest change at or before the
    instant, else `fallback` (the projection's own lookup)."""
    if not changes:
        return fallback
    # ProfileTimeline sorts by instant only (stable): handing it the changes in force order keeps
    # the tie order of changes made at the same instant
    timeline = ProfileTimeline([c.change for c in sorted(changes, key=lambda c: c.order)])

    def lookup(municipality: str, at: datetime) -> CadenceProfile:
        change = timeline.change_at(municipality, at)
        return change.profile if change is not None else fallback(municipality, at)

    return lookup


def target_before(conn: Connection, municipality: str, end: datetime) -> int | None:
    """The caseload target of the municipality's latest change before `end` (a period's exclusive
    end), or None when no change was made before it."""
    t = tables.profile_changes
    row = conn.execute(
        select(t.c.caseload_target)
        .where(t.c.municipality == municipality, t.c.changed_at < epoch_us(end))
        .order_by(t.c.changed_at.desc(), t.c.event_id.desc())
        .limit(1)
    ).first()
    return None if row is None else int(row[0])
