"""The intake service layer: record in, event out (used by the HTTP API and the command line).

`IntakeService.write(conn, record)` does, inside a savepoint of the caller's transaction:
idempotency check by (municipality, record_id) and content hash; read the child's stream version,
then the state snapshot; `decide`; append exactly one event with optimistic concurrency; update
intake's lookup tables; store the child's identity in the vault. A concurrent writer to the same
child (ConcurrencyError), or to the same id in another child's stream (IntegrityError on intake's
tables), makes it retry the whole read-decide-append; a lost race on the record id is re-checked
as duplicate or conflict.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.intake.adapters import repository as repo
from services.intake.adapters.vault import Vault
from services.intake.config import Settings
from services.intake.domain.cpr import ChildIdentity
from services.intake.domain.decide import Reject, decide
from services.intake.domain.records import (
    RecordBase,
    Rejection,
    canonical_content,
    child_of,
    identity_of,
    parse_record,
)
from shared.events.catalogue import ChildRef
from shared.events.codes import MeasureType
from shared.events.envelope import EventEnvelope, stream_id_for_child
from shared.eventstore.store import ConcurrencyError, DuplicateRecordError, EventStore, StoredRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
Status = Literal["accepted", "duplicate", "conflict", "rejected", "busy"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one record."""

    status: Status
    record_id: str | None
    reason: str | None = None
    field: str | None = None
    event_id: str | None = None
    position: int | None = None
    change: bool | None = None
    retry_later: bool = False

    @staticmethod
    def rejected(rejection: Rejection | Reject, record_id: str | None = None) -> Outcome:
        return Outcome(
            "rejected",
            record_id if record_id is not None else getattr(rejection, "record_id", None),
            reason=rejection.reason,
            field=rejection.field,
            retry_later=isinstance(rejection, Reject) and rejection.retry_later,
        )

    def response(self) -> dict[str, Any]:
        """The JSON answer for this outcome (the HTTP status comes from `status`)."""
        doc: dict[str, Any] = {"status": self.status, "record_id": self.record_id}
        if self.status == "accepted":
            doc["event_id"] = self.event_id
            doc["position"] = self.position
            if self.change is not None:
                doc["change"] = self.change
        elif self.status == "duplicate":
            doc["position"] = self.position
        else:
            doc["reason"] = self.reason
            doc["field"] = self.field
        return doc


def conflict(record_id: str, position: int | None = None) -> Outcome:
    return Outcome(
        "conflict",
        record_id,
        reason=(
            f"record_id: {record_id!r} was already accepted for this municipality with different content; "
            "a record is accepted once (send a new record_id for a new fact)"
        ),
        field="record_id",
        position=position,
    )


class IntakeService:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
        store: EventStore | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.store = store or EventStore(
            outbox_topic=settings.kafka_topic if settings.transport == "kafka" else None,
            serialize_appends=(settings.transport == "sql"),
        )
        self.vault = Vault(settings.cpr_master_key)
        self._pseudonym_key = settings.cpr_pseudonym_key.encode()
        self._types = lru_cache(maxsize=256)(settings.measure_types)

    # --- pure steps ---------------------------------------------------------------------------

    def measure_types(self, municipality: str) -> Mapping[str, MeasureType]:
        return self._types(municipality)

    def parse(self, obj: Any) -> RecordBase | Rejection:
        municipality = obj.get("municipality") if isinstance(obj, dict) else None
        types = self.measure_types(municipality) if isinstance(municipality, str) else self.measure_types("")
        return parse_record(obj, now=self.clock(), measure_types=types)

    def content_hash(self, record: RecordBase) -> str:
        """Keyed hash of the record's canonical JSON: compares content without revealing a CPR."""
        canonical = json.dumps(
            canonical_content(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hmac.new(self._pseudonym_key, canonical.encode(), hashlib.sha256).hexdigest()

    def child(self, record: RecordBase) -> tuple[ChildRef, ChildIdentity] | None:
        child = child_of(record)
        if child is None:
            return None
        identity = identity_of(child)
        return identity.to_ref(self._pseudonym_key), identity

    def child_id_for(self, identity: ChildIdentity) -> str:
        return identity.to_ref(self._pseudonym_key).child_id

    # --- writing ------------------------------------------------------------------------------

    @staticmethod
    def _seen(prior: StoredRecord, content_hash: str, record_id: str) -> Outcome:
        if hmac.compare_digest(prior.content_hash, content_hash):
            return Outcome("duplicate", record_id, position=prior.position)
        return conflict(record_id, prior.position)

    def write(self, conn: Connection, record: RecordBase, correlation_id: str | None = None) -> Outcome:
        """Record -> exactly one event (or duplicate / conflict / rejection), in `conn`'s transaction."""
        municipality, record_id = record.municipality, record.record_id
        content_hash = self.content_hash(record)
        child = self.child(record)
        child_ref = child[0] if child else None
        types = self.measure_types(municipality)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with conn.begin_nested():
                    prior = self.store.find_record(conn, municipality, record_id)
                    if prior is not None:
                        return self._seen(prior, content_hash, record_id)
                    stream_child = repo.stream_child(conn, municipality, record, child_ref)
                    stream_id = stream_id_for_child(municipality, stream_child) if stream_child else None
                    version = self.store.stream_version(conn, stream_id) if stream_id else 0
                    state = repo.load_state(conn, municipality, record, child_ref, types)
                    decision = decide(record, state)
                    if isinstance(decision, Reject):
                        # Under READ COMMITTED a concurrent writer of this very record may have
                        # committed between our first look and the state read: look again.
                        prior = self.store.find_record(conn, municipality, record_id)
                        if prior is not None:
                            return self._seen(prior, content_hash, record_id)
                        return Outcome.rejected(decision, record_id)
                    if decision.child_id != stream_child or stream_id is None:
                        raise ConcurrencyError("the record's stream changed while deciding")
                    envelope = EventEnvelope.new(
                        stream_id=stream_id,
                        version=version + 1,
                        municipality=municipality,
                        record_id=record_id,
                        occurred_at=record.occurred_at,
                        payload=decision.payload,
                        correlation_id=correlation_id,
                        recorded_at=self.clock(),
                    )
                    stored = self.store.append(
                        conn, [envelope], expected_version=version, content_hash=content_hash
                    )[0]
                    repo.apply(conn, municipality, record, decision)
                    if child is not None:
                        self.vault.ensure(conn, municipality, child[0].child_id, child[1])
                    return Outcome(
                        "accepted",
                        record_id,
                        event_id=stored.event_id,
                        position=stored.position,
                        change=decision.change,
                    )
            except ConcurrencyError:
                log.debug("intake: concurrent write to the same child, retrying", extra={"attempt": attempt})
            except DuplicateRecordError:
                prior = self.store.find_record(conn, municipality, record_id)
                if prior is not None:
                    return self._seen(prior, content_hash, record_id)
            except IntegrityError:
                log.debug("intake: concurrent write of the same id, retrying", extra={"attempt": attempt})
        log.warning("intake: gave up after concurrent writes", extra={"record_id": record_id})
        return Outcome(
            "busy",
            record_id,
            reason="record: other writers kept changing the same child's records; send the record again",
            field="record",
        )

    def submit(self, record: RecordBase, correlation_id: str | None = None) -> Outcome:
        """One record in its own transaction (retried whole after a deadlock)."""
        cid = correlation_id or str(uuid.uuid4())
        return in_transaction(self.engine, lambda conn: self.write(conn, record, cid))


T = TypeVar("T")
TRANSACTION_ATTEMPTS = 5
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def is_retryable(exc: DBAPIError) -> bool:
    """A transaction the database aborted only because of another one (PostgreSQL deadlock or
    serialization failure): running it again is safe and will succeed."""
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in one transaction; if the database aborts it for a deadlock, run it again."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == TRANSACTION_ATTEMPTS or not is_retryable(exc):
                raise
            log.info(
                "intake: transaction aborted by a deadlock, running it again", extra={"attempt": attempt}
            )
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
