"""The intake service layer: record in, event out (used by the HTTP API and the command line).

`IntakeService.write(conn, record)` does, inside a savepoint of the caller's transaction:
idempotency check by (municipality, record_id) and content hash; read the child's stream version,
then the state snapshot; `decide`; append exactly one event with optimistic concurrency; update
intake's lookup tables; store the child's identity in the vault. A concurrent writer to the same
child (ConcurrencyError), or to the same id in another child's stream (IntegrityError on intake's
tables), makes it retry the whole read-decide-append; a lost race on the record id is re-checked
as duplicate or conflict.

`IntakeService.write_many(conn, records)` gives the same outcomes as `write` called for each
record in order, with a handful of statements for the whole lot (a bulk import's chunk): it reads
everything the records can touch with a few IN-queries (`ChunkView`), decides them in order in
memory (each seeing the effects of the ones before), and writes all events, outbox rows, lookup
rows and vault rows with one executemany each. A record that is refused is simply not written. If
the writes meet a concurrent writer (a stream version or an id taken meanwhile), nothing of the
lot is kept and the records go through `write` one by one instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from services.intake.adapters import repository as repo
from services.intake.adapters.snapshot import ChunkView, Refs
from services.intake.adapters.tables import cases, child_keys, children, measures, underretninger
from services.intake.adapters.vault import Sealed, Vault
from services.intake.config import Settings
from services.intake.domain.cpr import ChildIdentity
from services.intake.domain.decide import Accept, Reject, decide
from services.intake.domain.fastpath import canonical_json
from services.intake.domain.records import (
    CaseClosedRecord,
    CaseOpenedRecord,
    CaseworkerAssignedRecord,
    MeasureEndedRecord,
    MeasureStartedRecord,
    RecordBase,
    Rejection,
    UnderretningReceivedRecord,
    child_of,
    identity_of,
    parse_record,
)
from shared.db import FreshStatistics, write_transaction
from shared.events.catalogue import ChildRef, EventPayload
from shared.events.codes import MeasureType
from shared.events.envelope import EventEnvelope, stream_id_for_child
from shared.eventstore.schema import events
from shared.eventstore.store import (
    ConcurrencyError,
    DuplicateRecordError,
    EventRow,
    EventStore,
    StoredRecord,
    new_event_id,
    new_event_ids,
    savepoint,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
Status = Literal["accepted", "duplicate", "conflict", "rejected", "busy"]


@dataclass(slots=True)
class Outcome:
    """What became of one record. (Not frozen: a bulk import makes one for every line, and a frozen
    dataclass costs four times as much to make; nothing changes one after it is made.)"""

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


OnError = Callable[[int, Exception], Outcome]
_CARRY_A_CHILD = frozenset({"UnderretningReceived", "CaseOpened"})  # the record types with `data.child`
# the record types that change intake's lookup tables (`repo.Changes`) and the view's entities
_STATE_CHANGING: frozenset[type[RecordBase]] = frozenset(
    {
        UnderretningReceivedRecord,
        CaseOpenedRecord,
        CaseworkerAssignedRecord,
        MeasureStartedRecord,
        MeasureEndedRecord,
        CaseClosedRecord,
    }
)


def payload_json(payload: EventPayload) -> str:
    """`payload.model_dump_json()` (what `EventEnvelope.data_json` stores), without the wrapper's
    keyword handling: the serializer with its defaults."""
    return type(payload).__pydantic_serializer__.to_json(payload).decode()


class _Unplannable(Exception):
    """The chunk cannot be decided in memory (the view disagrees with a decision): go record by record."""


@dataclass
class _Plan:
    """The writes of a chunk's accepted records, in record order."""

    rows: list[EventRow] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # index of each event's record in the chunk
    changed: list[bool | None] = field(default_factory=list)  # `Accept.change` of each event
    expected: dict[str, int] = field(default_factory=dict)  # stream -> version before the chunk
    changes: repo.Changes = field(default_factory=repo.Changes)
    sealed: list[Sealed] = field(default_factory=list)
    rechecks: list[int] = field(default_factory=list)  # refused records: look at their id again
    echoes: list[tuple[int, int]] = field(default_factory=list)  # (duplicate, its earlier record)


# A record of a chunk, ready to plan: (index in the chunk, record, content hash, its child, its refs,
# `occurred_at.isoformat()` when known)
_Prepared = tuple[int, RecordBase, str, tuple[ChildRef, ChildIdentity] | None, Refs, str | None]


_WRITERS_LOCK = 727276
STATISTICS_TABLES = (events, cases, measures, underretninger, children, child_keys)


def serialize_writers(conn: Connection) -> None:
    """On PostgreSQL, intake's writers take turns (a transaction-level advisory lock).

    Under READ COMMITTED a writer could otherwise read a child's state (no open case), see a
    concurrent writer commit, then read the stream version after that commit and append on top:
    both would win. Holding the lock from before the first read to the commit closes that gap.
    SQLite needs nothing: BEGIN IMMEDIATE already lets one writer in at a time.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITERS_LOCK})


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
        self._content_mac = hmac.new(self._pseudonym_key, digestmod=hashlib.sha256)  # copied per use
        self._types = lru_cache(maxsize=256)(settings.measure_types)
        self._group = _GroupCommit(self)
        # what the lookups of `_plan` read, kept analyzed while a fresh database fills
        self.statistics = FreshStatistics(engine, [t.name for t in STATISTICS_TABLES])

    # --- pure steps ---------------------------------------------------------------------------

    def measure_types(self, municipality: str) -> Mapping[str, MeasureType]:
        return self._types(municipality)

    def parse(self, obj: Any) -> RecordBase | Rejection:
        municipality = obj.get("municipality") if isinstance(obj, dict) else None
        types = self.measure_types(municipality) if isinstance(municipality, str) else self.measure_types("")
        return parse_record(obj, now=self.clock(), measure_types=types)

    def content_hash(self, record: RecordBase) -> str:
        """Keyed hash of the record's canonical JSON (`canonical_content`, sorted and compact):
        compares content without revealing a CPR."""
        mac = self._content_mac.copy()
        mac.update(canonical_json(record))
        return mac.hexdigest()

    def child(self, record: RecordBase) -> tuple[ChildRef, ChildIdentity] | None:
        if record.__dict__.get("type") not in _CARRY_A_CHILD:
            return None
        child = child_of(record)
        if child is None:
            return None
        identity = identity_of(child)
        return identity.to_ref(self._pseudonym_key), identity

    def child_id_for(self, identity: ChildIdentity) -> str:
        return identity.to_ref(self._pseudonym_key).child_id

    # --- writing ------------------------------------------------------------------------------

    def _envelope(
        self, record: RecordBase, stream_id: str, version: int, decision: Accept, correlation_id: str | None
    ) -> EventEnvelope:
        """The event of an accepted record; its id is time-ordered (see `new_event_id`)."""
        return EventEnvelope(
            event_id=new_event_id(),
            stream_id=stream_id,
            version=version,
            municipality=record.municipality,
            record_id=record.record_id,
            occurred_at=record.occurred_at,  # parsing demands an offset
            recorded_at=self.clock(),
            correlation_id=correlation_id or str(uuid.uuid4()),
            payload=decision.payload,
        )

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
        serialize_writers(conn)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with savepoint(conn):
                    prior = self.store.find_record(conn, municipality, record_id)
                    if prior is not None:
                        return self._seen(prior, content_hash, record_id)
                    state = repo.load_state(conn, municipality, record, child_ref, types)
                    # the stream from the same read (a case's, an underretning's child never changes)
                    stream_child = repo.stream_child_of(record, child_ref, state)
                    stream_id = stream_id_for_child(municipality, stream_child) if stream_child else None
                    version = self.store.stream_version(conn, stream_id) if stream_id else 0
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
                    envelope = self._envelope(record, stream_id, version + 1, decision, correlation_id)
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

    # --- writing many (a bulk import's chunk) -------------------------------------------------------

    def write_many(
        self,
        conn: Connection,
        records: Sequence[RecordBase],
        correlation_id: str | None = None,
        *,
        on_error: OnError | None = None,
        correlation_ids: Sequence[str] | None = None,
        content_hashes: Sequence[str | None] | None = None,
        occurred_at_isos: Sequence[str | None] | None = None,
    ) -> list[Outcome]:
        """Records -> one outcome each, in `conn`'s transaction: the outcomes `write` would give
        called for each record in this order, written with a few statements for the whole lot.

        `on_error(index, exc)` turns an unexpected error of one record (not of the database) into
        its outcome, so the others still go in; without it the error propagates.
        `correlation_ids`: one per record (else `correlation_id` for all). `content_hashes`, and
        `occurred_at_isos` (`record.occurred_at.isoformat()`): where already known (a bulk import's
        parsing worker), else None.
        The events of the lot share one `recorded_at` (they are recorded by one transaction).
        """
        cid = correlation_id or str(uuid.uuid4())
        cids = list(correlation_ids) if correlation_ids is not None else [cid] * len(records)
        if len(cids) != len(records):
            raise ValueError("write_many: one correlation id per record")
        if content_hashes is not None and len(content_hashes) != len(records):
            raise ValueError("write_many: one content hash (or None) per record")
        if occurred_at_isos is not None and len(occurred_at_isos) != len(records):
            raise ValueError("write_many: one occurred_at text (or None) per record")
        outcomes: list[Outcome | None] = [None] * len(records)
        prepared: list[_Prepared] = []
        for i, record in enumerate(records):
            try:
                known = content_hashes[i] if content_hashes is not None else None
                content_hash = known if known is not None else self.content_hash(record)
                iso = occurred_at_isos[i] if occurred_at_isos is not None else None
                prepared.append((i, record, content_hash, self.child(record), repo.refs(record), iso))
            except Exception as exc:
                outcomes[i] = _failed(i, exc, on_error)
        if not prepared:
            return [o for o in outcomes if o is not None]
        serialize_writers(conn)
        try:
            plan = self._plan(conn, prepared, outcomes, cids, on_error)
            with savepoint(conn):
                positions = self.store.append_rows(conn, plan.rows, expected_versions=plan.expected)
                plan.changes.write(conn)
                self.vault.store_many(conn, plan.sealed)
        except (_Unplannable, ConcurrencyError, DuplicateRecordError, IntegrityError) as exc:
            log.info(
                "intake: a chunk met a concurrent writer (%s); writing it record by record",
                type(exc).__name__,
            )
            return self._write_each(conn, records, cids, [p[0] for p in prepared], outcomes, on_error)
        at: dict[int, int] = {}
        for line, row, change, position in zip(plan.lines, plan.rows, plan.changed, positions, strict=True):
            at[line] = position
            outcomes[line] = Outcome("accepted", row[6], None, None, row[0], position, change)
        for line, earlier in plan.echoes:
            done = outcomes[line]
            assert done is not None
            done.position = at.get(earlier)
        final = [o for o in outcomes if o is not None]
        assert len(final) == len(records)
        return final

    def _plan(
        self,
        conn: Connection,
        prepared: list[_Prepared],
        outcomes: list[Outcome | None],
        correlation_ids: list[str],
        on_error: OnError | None,
    ) -> _Plan:
        """Read the chunk's view, decide every record in order in memory, collect the writes."""
        items = [(r, c[0] if c else None, refs) for _, r, _, c, refs, _ in prepared]
        view = ChunkView.load(conn, self.store, items)
        plan = _Plan()
        recorded_at = self.clock().isoformat()
        event_ids = new_event_ids(len(prepared))
        seen_records = view.records
        versions = view.versions
        types: dict[str, Mapping[str, MeasureType]] = {}
        for k, (i, record, content_hash, child, refs, occurred_iso) in enumerate(prepared):
            fields = record.__dict__
            m, record_id = fields["municipality"], fields["record_id"]
            seen = seen_records.get((m, record_id))
            if seen is not None:
                prior = StoredRecord(seen.position or 0, seen.content_hash)
                outcome = self._seen(prior, content_hash, record_id)
                outcome.position = seen.position
                outcomes[i] = outcome
                if seen.line is not None:
                    plan.echoes.append((i, seen.line))
                continue
            try:
                child_ref = child[0] if child else None
                measure_types = types.get(m)
                if measure_types is None:
                    measure_types = types[m] = self.measure_types(m)
                stream_child, state = view.situation(m, record, child_ref, measure_types, refs)
                decision = decide(record, state)
                if isinstance(decision, Reject):
                    outcomes[i] = Outcome.rejected(decision, record_id)
                    plan.rechecks.append(i)
                    continue
                if decision.child_id != stream_child or stream_child is None:
                    raise _Unplannable(record_id)
                stream_id = stream_id_for_child(m, stream_child)
                version = versions.get(stream_id)
                if version is None:  # not read with the chunk (cannot happen): read it now
                    version = self.store.stream_version(conn, stream_id)
                payload = decision.payload
                occurred_at = fields["occurred_at"]
                row: EventRow = (
                    event_ids[k],
                    stream_id,
                    version + 1,
                    payload.event_type,
                    payload.schema_version,
                    m,
                    record_id,
                    occurred_iso if occurred_iso is not None else occurred_at.isoformat(),
                    recorded_at,
                    correlation_ids[i],
                    content_hash,
                    payload_json(payload),
                )
                new_child = child is not None and (m, child[0].child_id) not in view.known_children
                sealed = self.vault.seal(m, child[0].child_id, child[1]) if child and new_child else None
            except _Unplannable:
                raise
            except Exception as exc:
                outcomes[i] = _failed(i, exc, on_error)
                continue
            kind = type(record)
            utc = occurred_at.astimezone(UTC) if kind in _STATE_CHANGING else None
            view.accept(m, record, decision, i, content_hash, stream_id, version + 1, new_child, utc)
            plan.expected.setdefault(stream_id, version)
            plan.rows.append(row)
            plan.lines.append(i)
            plan.changed.append(decision.change)
            if utc is not None:
                plan.changes.add(m, record, decision, utc)
            if sealed is not None:
                plan.sealed.append(sealed)
        self._recheck(conn, prepared, plan.rechecks, outcomes)
        return plan

    def _recheck(
        self,
        conn: Connection,
        prepared: list[_Prepared],
        rechecks: list[int],
        outcomes: list[Outcome | None],
    ) -> None:
        """As in `write`: a refused record may have been written meanwhile by a concurrent writer
        (READ COMMITTED): look at the refused ones' ids again."""
        if not rechecks:
            return
        wanted = set(rechecks)
        by_index = {i: (r, h) for i, r, h, *_ in prepared if i in wanted}
        ids: dict[str, list[str]] = {}
        for record, _ in by_index.values():
            ids.setdefault(record.municipality, []).append(record.record_id)
        found = {m: self.store.find_records(conn, m, record_ids) for m, record_ids in ids.items()}
        for i, (record, content_hash) in by_index.items():
            prior = found[record.municipality].get(record.record_id)
            if prior is not None:
                outcomes[i] = self._seen(prior, content_hash, record.record_id)

    def _write_each(
        self,
        conn: Connection,
        records: Sequence[RecordBase],
        correlation_ids: list[str],
        todo: list[int],
        outcomes: list[Outcome | None],
        on_error: OnError | None,
    ) -> list[Outcome]:
        """The slow way: `write` for each record (those that did not fail before) in order."""
        final: list[Outcome] = []
        waiting = set(todo)
        for i, record in enumerate(records):
            done = outcomes[i]
            if i not in waiting and done is not None:
                final.append(done)
                continue
            try:
                final.append(self.write(conn, record, correlation_ids[i]))
            except Exception as exc:
                final.append(_failed(i, exc, on_error))
        return final

    def submit(self, record: RecordBase, correlation_id: str | None = None) -> Outcome:
        """One record, committed when this returns (a transaction retried whole after a deadlock).

        Records submitted at the same time from several threads share a transaction (group
        commit, `_GroupCommit`); alone, a record has its own.
        """
        cid = correlation_id or str(uuid.uuid4())
        return self._group.submit(record, cid)

    def commit_batch(self, batch: Sequence[tuple[RecordBase, str]]) -> list[Outcome | Exception]:
        """Records of concurrent requests (record, correlation id) in one transaction, committed
        when this returns: each its outcome as `write` would give it in this order, or the error of
        that record alone (not the database's: an error of the transaction propagates, and then
        nothing of the batch was stored). One record alone goes through `write`."""
        errors: dict[int, Exception] = {}

        def capture(index: int, exc: Exception) -> Outcome:
            errors[index] = exc
            return Outcome("busy", batch[index][0].record_id, reason="record: internal error", field="record")

        if len(batch) == 1:
            record, cid = batch[0]
            outcome = in_transaction(self.engine, lambda conn: self.write(conn, record, cid))
            self.statistics.wrote(1)
            return [outcome]
        records = [record for record, _ in batch]
        cids = [cid for _, cid in batch]

        def work(conn: Connection) -> list[Outcome]:
            errors.clear()  # of an attempt the database aborted (a deadlock): it runs again whole
            return self.write_many(conn, records, correlation_ids=cids, on_error=capture)

        outcomes = in_transaction(self.engine, work)
        self.statistics.wrote(len(outcomes))
        return [errors.get(i, outcome) for i, outcome in enumerate(outcomes)]


@dataclass(slots=True)
class _Waiting:
    record: RecordBase
    correlation_id: str
    outcome: Outcome | None = None
    error: BaseException | None = None
    done: bool = False


class _GroupCommit:
    """Group commit of concurrent `submit`s (threads).

    Intake's writers take turns anyway (SQLite has one writer at a time, and on PostgreSQL
    `serialize_writers` holds an advisory lock from the first read to the commit), and each
    would then pay a whole transaction of a dozen statements for one record. Here a request puts
    its record in a queue and waits for the writer's turn; whoever gets the turn writes everything
    queued by then (up to `max_batch`) with `commit_batch` in one transaction and hands every
    waiting request its own outcome, which is what `write` would have given in that order. A
    request that finds the queue with only its own record uses `write`, as before. A record that
    fails for a reason of its own (not the database's) fails alone: its request gets the error.
    (The HTTP API does the same from its event loop: `services.intake.group`.)
    """

    def __init__(self, service: IntakeService, max_batch: int = 256) -> None:
        self.service = service
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self.transactions = 0  # how many, and how many records they held (batch size = records/transactions)
        self.records = 0

    def submit(self, record: RecordBase, correlation_id: str) -> Outcome:
        me = _Waiting(record, correlation_id)
        with self._queue_lock:
            self._queue.append(me)
        while not me.done:
            with self._turn:
                if me.done:
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                self.transactions += 1
                self.records += len(batch)
                self._run(batch)
        if me.error is not None:
            raise me.error
        assert me.outcome is not None
        return me.outcome

    def _run(self, batch: list[_Waiting]) -> None:
        try:
            results = self.service.commit_batch([(w.record, w.correlation_id) for w in batch])
            for waiting, result in zip(batch, results, strict=True):
                if isinstance(result, Outcome):
                    waiting.outcome = result
                else:
                    waiting.error = result
        except BaseException as exc:  # the transaction failed: every request of it gets the error
            for waiting in batch:
                waiting.error = exc
        finally:
            for waiting in batch:
                waiting.done = True


def _failed(index: int, exc: Exception, on_error: OnError | None) -> Outcome:
    if on_error is None or isinstance(exc, SQLAlchemyError):
        raise exc
    return on_error(index, exc)


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
            with write_transaction(engine) as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == TRANSACTION_ATTEMPTS or not is_retryable(exc):
                raise
            log.info(
                "intake: transaction aborted by a deadlock, running it again", extra={"attempt": attempt}
            )
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
