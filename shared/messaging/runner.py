"""The consumer runner: feeds a projection from Kafka or the SQL event log, exactly once in effect.

One step: poll a batch; in ONE transaction on the projection's database, skip events already
processed (by event id), apply the rest, write processed-event rows and the checkpoint; commit;
then acknowledge to the source (Kafka offsets). A batch that fails is retried event by event
inside savepoints with bounded retries; an event that keeps failing, or bytes that do not decode,
go to the dead-letter sink (the `dead_letters` table, and the dead-letter topic on Kafka) and the
runner goes on.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.queues
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Executable, delete, func, insert, select

from shared.config import ServiceSettings
from shared.db import (
    FreshStatistics,
    insert_or_skip,
    is_transient,
    make_engine,
    param_mark,
    read_only,
    write_transaction,
)
from shared.events.envelope import CHILD_STREAM_PREFIX, EventEnvelope
from shared.eventstore.schema import events as log_events
from shared.eventstore.store import LOG_COLUMNS, LogRow, log_row_to_envelope
from shared.logs import correlation_id_var
from shared.messaging.projection import Projection
from shared.messaging.schema import checkpoints, dead_letters, processed_events, runner_metadata
from shared.messaging.sources import Batch, Item, KafkaSource, Source, SqlLogSource

log = logging.getLogger(__name__)

SourceFactory = Callable[[bool], Source]


DRAIN_UNASSIGNED_SECONDS = 10.0
"""`drain` reopens a Kafka consumer left this long without partitions of a topic that has them."""


class ProjectionWorker:
    def __init__(
        self,
        projection: Projection,
        settings: ServiceSettings,
        *,
        engine: Engine | None = None,
        store_engine: Engine | None = None,
        source_factory: SourceFactory | None = None,
        max_retries: int = 3,
        retry_backoff: float = 0.05,
        poll_timeout: float = 0.2,
        batch_size: int = 1000,
    ) -> None:
        self.projection = projection
        self.settings = settings
        self.engine = engine or make_engine(settings.own_database_url)
        self._store_engine = store_engine
        self._source_factory = source_factory
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.poll_timeout = poll_timeout
        self.batch_size = batch_size
        self._source: Source | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # counters for metrics and tests
        self.processed = 0
        self.skipped_duplicates = 0
        self.retries = 0
        self.dead_lettered = 0
        self.last_event_at: datetime | None = None
        self.last_error: str | None = None
        self._pending_dead_letters: list[tuple[Item, str]] = []
        self._claim_statement: Executable | None = None
        # lag, read in the worker's own thread (a Kafka consumer is not thread-safe) for metrics / readiness
        self.assigned = False
        self.lag_events: int | None = None
        self.lag_seconds: float | None = None
        self.lag_interval = 1.0
        self._lag_read_at = float("-inf")
        # a source that reports events behind it but hands none over, or a Kafka consumer left with
        # no partitions of a topic that has them, for this long is reopened (`_partitions_unassigned`);
        # counted in `reconnects`
        self.stall_seconds = 60.0
        self.reconnects = 0
        self._last_recorded_at: datetime | None = None
        # the projection's tables analyzed while a fresh database fills (PostgreSQL)
        self.statistics = FreshStatistics(
            self.engine, [t.name for t in projection.metadata.sorted_tables] + [processed_events.name]
        )

    # --- sources ---------------------------------------------------------------------------

    def _make_source(self, from_beginning: bool) -> Source:
        if self._source_factory is not None:
            return self._source_factory(from_beginning)
        s = self.settings
        if s.transport == "kafka":
            from shared.messaging.kafka import ensure_topics

            ensure_topics(s.kafka_bootstrap_servers, (s.kafka_topic, s.kafka_dlq_topic), s.kafka_partitions)
            return KafkaSource(
                s.kafka_bootstrap_servers,
                s.kafka_topic,
                s.kafka_dlq_topic,
                self.projection.name,
                from_beginning=from_beginning,
                group_id=s.kafka_group_id,
            )
        return SqlLogSource(self.store_engine, self.projection.name, self.batch_size)

    @property
    def store_engine(self) -> Engine:
        if self._store_engine is None:
            self._store_engine = make_engine(self.settings.event_store_url)
        return self._store_engine

    def source(self, from_beginning: bool = False) -> Source:
        if self._source is None:
            self._source = self._make_source(from_beginning)
            with self.engine.begin() as conn:
                self._source.load(conn)
        return self._source

    def ensure_schema(self) -> None:
        """Create the runner's and the projection's tables if missing (tests; prod uses Alembic)."""
        runner_metadata.create_all(self.engine)
        self.projection.metadata.create_all(self.engine)

    # --- one step --------------------------------------------------------------------------

    def step(self) -> int:
        """Process one polled batch; returns the number of items handled (0 = nothing new)."""
        source = self.source()
        batch = source.poll(self.poll_timeout)
        if not batch:
            return 0
        self._pending_dead_letters.clear()
        # in this process's writer turn: the service's own requests (audit entries) queue on a lock
        # beside the worker instead of sleeping in SQLite's busy handler
        with write_transaction(self.engine) as conn:
            self._handle(conn, source, batch)
            source.record_progress(conn, batch)
        self.statistics.wrote(len(batch))
        self._publish_dead_letters(source)
        source.acknowledge()
        if isinstance(source, SqlLogSource):
            source.advance(batch)
        return len(batch)

    def _handle(self, conn: Connection, source: Source, batch: Batch) -> None:
        name = self.projection.name
        candidates: dict[str, EventEnvelope] = {}
        for item in batch.items:
            if item.envelope is None:
                self._dead_letter(conn, item, item.error or "undecodable")
            else:
                candidates.setdefault(item.envelope.event_id, item.envelope)
        claimed = self._claim(conn, list(candidates))
        fresh = [env for eid, env in candidates.items() if eid in claimed]
        headers = {
            i.envelope.event_id: i.correlation_id for i in batch.items if i.envelope and i.correlation_id
        }
        self.skipped_duplicates += len(batch.items) - len(fresh)
        if not fresh:
            return
        try:
            with conn.begin_nested():
                self.projection.apply(conn, fresh)
            done = fresh
        except Exception as exc:
            if is_transient(exc):
                raise  # the database, not the event: the whole step is retried after a back-off
            log.warning("projection %s: batch failed, retrying event by event: %r", name, exc)
            done = self._apply_one_by_one(conn, source, fresh, batch)
        self.processed += len(done)
        self.last_event_at = datetime.now(UTC)
        self._log_applied(done, headers)

    def _log_applied(self, done: Sequence[EventEnvelope], headers: dict[str, str]) -> None:
        """One log line per correlation id of the applied events (the Kafka header, else the envelope's)."""
        if not done:
            return
        newest = max(env.recorded_at for env in done)
        if self._last_recorded_at is None or newest > self._last_recorded_at:
            self._last_recorded_at = newest
        if not log.isEnabledFor(logging.INFO):
            return
        name = self.projection.name
        for cid, n in Counter(headers.get(env.event_id) or env.correlation_id for env in done).items():
            with _correlation(cid):
                log.info("projection %s: applied %d events", name, n, extra={"projection": name, "events": n})

    def _apply_one_by_one(
        self, conn: Connection, source: Source, fresh: Sequence[EventEnvelope], batch: Batch
    ) -> list[EventEnvelope]:
        by_id = {i.envelope.event_id: i for i in batch.items if i.envelope is not None}
        done: list[EventEnvelope] = []
        for env in fresh:
            error = ""
            with _correlation(by_id[env.event_id].correlation_id or env.correlation_id):
                for attempt in range(1, self.max_retries + 1):
                    try:
                        with conn.begin_nested():
                            self.projection.apply(conn, [env])
                        done.append(env)
                        break
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        error = f"{type(exc).__name__}: {exc}"
                        self.retries += 1
                        time.sleep(self.retry_backoff * attempt)
                else:
                    self._dead_letter(conn, by_id[env.event_id], error)
        return done

    def _claim(self, conn: Connection, event_ids: list[str]) -> set[str]:
        """Insert processed-event rows, skipping ids already there; returns the ids newly claimed.

        One executemany of INSERT .. ON CONFLICT DO NOTHING RETURNING (compiled once, sent in
        multi-row batches by SQLAlchemy), in the same transaction as the projection's changes: if
        that transaction rolls back, so do the claims.
        """
        if not event_ids:
            return set()
        name = self.projection.name
        stmt = self._claim_statement
        if stmt is None:  # built once (its dialect's form), not for every batch
            stmt = self._claim_statement = insert_or_skip(conn, processed_events).returning(
                processed_events.c.event_id
            )
        result = conn.execute(stmt, [{"projection": name, "event_id": eid} for eid in event_ids])
        return set(result.scalars())

    def _dead_letter(self, conn: Connection, item: Item, error: str) -> None:
        name = self.projection.name
        with _correlation(item.correlation_id or (item.envelope.correlation_id if item.envelope else None)):
            log.error("projection %s: dead-lettering %s: %s", name, item.origin or item.position, error)
        self._pending_dead_letters.append((item, error))
        conn.execute(
            insert(dead_letters),
            {
                "projection": name,
                "event_id": item.envelope.event_id if item.envelope else None,
                "origin": item.origin or f"events/{item.position}",
                "error": error[:4000],
                "payload": item.raw,
                "at": datetime.now(UTC).isoformat(),
            },
        )
        self.dead_lettered += 1
        self.last_error = error

    def _publish_dead_letters(self, source: Source) -> None:
        """After the projection's commit: the dead letters of that transaction go to the sink.

        Publishing only after the commit means a transaction that fails (a database outage)
        leaves nothing behind on the dead-letter topic; the events are simply processed again.
        """
        pending, self._pending_dead_letters = self._pending_dead_letters, []
        for item, error in pending:
            source.dead_letter(item, error, self.projection.name)

    # --- loops -----------------------------------------------------------------------------

    def drain(self, timeout: float = 120.0, idle_polls: int = 2) -> int:
        """Process until the source has nothing new for `idle_polls` polls in a row."""
        total, idle = 0, 0
        deadline = time.monotonic() + timeout
        assigned_at = time.monotonic()
        while time.monotonic() < deadline:
            n = self.step()
            total += n
            if n:
                idle = 0
                continue
            source = self.source()
            if isinstance(source, KafkaSource):
                lag, now = source.assigned_end_lag(), time.monotonic()
                if lag is not None:
                    assigned_at = now
                elif now - assigned_at >= DRAIN_UNASSIGNED_SECONDS and self._partitions_unassigned():
                    self._reopen_stalled("no partitions assigned while the topic has them", now - assigned_at)
                    assigned_at = now
                if lag != 0:
                    continue  # not assigned yet, or messages not yet fetched
            idle += 1
            if idle >= idle_polls:
                self.refresh_lag()
                return total
        raise TimeoutError(f"projection {self.projection.name} did not catch up in {timeout}s")

    def run(self) -> None:
        backoff = 0.2
        progress_at = assigned_at = time.monotonic()
        group_mark: int | None = None
        while not self._stop.is_set():
            try:
                if self.step() == 0:
                    self._stop.wait(0.05)
                else:
                    progress_at = time.monotonic()
                now = time.monotonic()
                if now - self._lag_read_at >= self.lag_interval:
                    self.refresh_lag()
                if not self.lag_events:
                    progress_at = now
                elif now - progress_at >= self.stall_seconds:
                    behind = f"{self.lag_events} events behind and none handed over"
                    self._reopen_stalled(behind, now - progress_at)
                    progress_at = now
                if self.assigned:
                    assigned_at, group_mark = now, None
                else:
                    if group_mark is None:  # what the group had consumed when this one had nothing
                        group_mark = self._group_committed()
                    if now - assigned_at >= self.stall_seconds:
                        if self._partitions_orphaned(group_mark):
                            why = "no partitions assigned while the topic has them and nobody consumes"
                            self._reopen_stalled(why, now - assigned_at)
                            progress_at = now
                        assigned_at, group_mark = now, None
                backoff = 0.2
            except Exception as exc:  # database or broker trouble: back off and try again
                self.last_error = repr(exc)
                log.warning("projection %s: step failed: %r", self.projection.name, exc)
                self._reset_source()
                progress_at = assigned_at = time.monotonic()  # a new source: its stall clocks start now
                group_mark = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._reset_source()

    def _group_offsets(self) -> tuple[int, int] | None:
        """`KafkaSource.group_committed`; None when the source is not Kafka, the topic's
        partitions are not known yet, or the broker does not answer now."""
        source = self._source
        if not isinstance(source, KafkaSource):
            return None
        try:
            return source.group_committed()
        except Exception:  # logged; the callers treat it as "cannot tell"
            log.debug("projection %s: group offsets not read", self.projection.name, exc_info=True)
            return None

    def _group_committed(self) -> int | None:
        """What the group has committed now (None: cannot tell; the check then decides alone)."""
        found = self._group_offsets()
        return None if found is None else found[0]

    def _partitions_orphaned(self, mark: int | None) -> bool:
        """`_partitions_unassigned`, and nobody else in the group is consuming them either: the
        group committed nothing since `mark` (its `group_committed` when this consumer was found
        without partitions) while events wait. A spare replica (more replicas than partitions)
        beside a consuming one, or beside a topic with nothing to consume, is left alone: a rejoin
        would only make the group rebalance, pausing the consumer that works."""
        if not self._partitions_unassigned():
            return False
        found = self._group_offsets()
        if found is None:  # cannot tell: reopen, as for a consumer left without partitions
            return True
        committed, end = found
        if mark is not None and committed > mark:
            return False  # another member consumed meanwhile
        return end > committed  # events wait, and nobody took any since the mark

    def _partitions_unassigned(self) -> bool:
        """A Kafka consumer in its group with no partitions although the topic has some: what
        kafka-python 3.0 leaves when the group's assignment ran while the topic's partitions were
        not in its metadata yet (a topic just created, a broker just restarted; "No partition
        metadata" in the log) and never revisits, as its metadata snapshot then looks unchanged.
        (A spare replica of a worker, more of them than partitions, also has none: `run` tells the
        two apart with `_partitions_orphaned`.)"""
        source = self._source
        return isinstance(source, KafkaSource) and source.topic_has_partitions()

    def _reopen_stalled(self, why: str, idle: float) -> None:
        log.warning(
            "projection %s: %s for %.0fs: reopening the source", self.projection.name, why, idle
        )
        self.reconnects += 1
        self.lag_events = None
        self._reset_source()

    def _reset_source(self) -> None:
        self.assigned = False
        if self._source is not None:
            try:
                self._source.close()
            except Exception:
                log.debug("closing source failed", exc_info=True)
            self._source = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, name=f"projector-{self.projection.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self._reset_source()

    def lag(self) -> int:
        return self.source().lag()

    def refresh_lag(self) -> None:
        """Read the lag (events, and seconds: the age of the oldest event not applied; on Kafka an upper
        bound, the age of the newest applied). Call it from the thread that drives the worker."""
        source = self.source()
        self._lag_read_at = time.monotonic()
        if isinstance(source, KafkaSource):
            lag = source.assigned_end_lag()
            self.assigned = lag is not None
            oldest = None
        else:
            lag = source.lag()
            self.assigned = True
            oldest = source.oldest_unprocessed_at() if lag and isinstance(source, SqlLogSource) else None
        self.lag_events = lag
        if lag is None:
            self.lag_seconds = None
        elif lag == 0:
            self.lag_seconds = 0.0
        else:
            since = datetime.fromisoformat(oldest) if oldest else self._last_recorded_at
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            self.lag_seconds = max(0.0, (datetime.now(UTC) - since).total_seconds()) if since else None


@contextmanager
def _correlation(cid: str | None) -> Iterator[None]:
    token = correlation_id_var.set(cid)
    try:
        yield
    finally:
        correlation_id_var.reset(token)


def reset_projection(worker: ProjectionWorker) -> None:
    """Forget everything the projection and the runner know, in one transaction."""
    name = worker.projection.name
    with worker.engine.begin() as conn:
        worker.projection.reset(conn)
        conn.execute(delete(processed_events).where(processed_events.c.projection == name))
        conn.execute(delete(checkpoints).where(checkpoints.c.projection == name))
        conn.execute(delete(dead_letters).where(dead_letters.c.projection == name))


def replay(
    projection: Projection,
    settings: ServiceSettings,
    *,
    timeout: float = 3600.0,
    workers: int | None = None,
) -> int:
    """Rebuild a projection from the beginning of the log (the worker must not be running).

    On the SQL transport, a projection with `rebuild_children` is rebuilt child by child
    (`bulk_replay`: the events of streams that are not a child's first, through the ordinary
    path, then the children), by `workers` processes at once (default: the `replay_workers` setting) when
    the projection declares `parallel_rebuild` (its rows are per child, so processes working on
    different children never touch the same row); otherwise, and for what the log gained
    meanwhile, the ordinary runner drains.
    """
    worker = ProjectionWorker(projection, settings, batch_size=5000)
    reset_projection(worker)
    try:
        total = 0
        if settings.transport == "sql" and hasattr(projection, "rebuild_children"):
            n = workers if workers is not None else settings.replay_processes
            if n > 1 and getattr(projection, "parallel_rebuild", False):
                total = parallel_bulk_replay(worker, n)
            else:
                total = bulk_replay(worker)
        worker.source(from_beginning=True)
        return total + worker.drain(timeout=timeout)
    finally:
        worker.stop()


REBUILD_PAGE = 20_000

# Streams of CHILD_STREAM_PREFIX are a child's each (`child-{municipality}-{child}`): a bulk rebuild
# hands them to `rebuild_children` whole. Every other stream (a municipality's settings,
# `municipality-{m}`) is applied before them, event by event through `apply`.


def bulk_replay(
    worker: ProjectionWorker,
    page: int = REBUILD_PAGE,
    *,
    head: int | None = None,
    streams: tuple[str | None, str | None] = (None, None),
    checkpoint: bool = True,
    others_first: bool = True,
) -> int:
    """Rebuild an empty (reset) projection from the SQL log up to its head, whole children at a time.

    Reads the log in (stream, version) order, in pages of about `page` events, straight from the
    driver (`LOG_COLUMNS` tuples, decoded by `log_row_to_envelope`: the same envelopes as the
    ordinary path), and hands the projection the complete event sets of the children of a page
    (`rebuild_children(conn, children)`), so each child is derived once and each event decoded
    once. Every page is one transaction; the last writes the checkpoint (the head position), from
    which the ordinary runner goes on. No processed-event rows are written: on the SQL log the
    checkpoint already guarantees each position is applied once. Undecodable rows go to
    `dead_letters` as in `step`; if the projection fails on a page, that page goes through the
    ordinary event-by-event handling (retries, dead letters). Returns the number of events handled.

    Optional hooks of the projection:
    - `prepare_children(engine, children)`: called before the page's transaction, its result is
      handed to `rebuild_children` instead (the pure work then runs while other processes write);
      with `uses_log_rows = True` it is called as `prepare_children(engine, children,
      log_rows=...)`, the children's `LogRow`s beside their envelopes (the log's own texts).
    - `start_rebuild()` before the first page, `rebuild_committed(work)` after each page's commit
      (not after a page that failed and went event by event), and `finish_rebuild()` after the
      last page: the work of a last page without children (what the projection still holds),
      written by `rebuild_children` like any page. So a projection may hold sums over several
      pages and write them once.
    `streams` = (first, end) limits the rebuild to stream ids first <= id < end (either open), and
    `checkpoint=False` leaves the checkpoint to the caller (`parallel_bulk_replay`).

    Streams that are not a child's (not `CHILD_STREAM_PREFIX`: a municipality's cadence profile
    and caseload target) come first, whatever `streams` says: the log's (stream, version) order
    would put `municipality-...` after every `child-...`, but the children must be derived with
    them known. So, with `others_first` (the default), every event of those streams up to the head
    is applied through the ordinary path before the first page, in log order and in one
    transaction: `worker._handle` (processed-event rows, dead letters and all) calling the
    projection's `apply`, which decides what they mean. The pages then cover child streams only.
    `others_first=False`: the caller did that already (`parallel_bulk_replay`, once for all its
    processes).
    """
    with _few_collections():
        return _bulk_replay(
            worker, page, head=head, streams=streams, checkpoint=checkpoint, others_first=others_first
        )


@contextmanager
def _few_collections() -> Iterator[None]:
    """A rebuild makes millions of short-lived objects that reference counting frees; the cyclic
    collector's frequent young-generation passes over them cost as much as decoding. Run it
    rarely meanwhile (what survives a page is little), and as before afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(200_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*before)


Decoded = tuple[LogRow, EventEnvelope | None, str | None]  # a log row, its envelope or why not


def _decoded(row: LogRow) -> Decoded:
    try:
        return (row, log_row_to_envelope(row), None)
    except Exception as exc:  # a row this code cannot read: dead-letter it, go on
        return (row, None, f"undecodable event: {exc!r}")


def _item(entry: Decoded) -> Item:
    row, env, error = entry
    return Item(env, row[11].encode(), row[2], error=error, position=row[0])


def _log_page(
    store_engine: Engine,
    head: int,
    after: tuple[str, int] | None,
    streams: tuple[str | None, str | None],
    page: int,
) -> list[LogRow]:
    """The next `page` log rows of child streams (positions <= head) after the (stream, version)
    `after`, in (stream, version) order, as driver tuples of `LOG_COLUMNS`."""
    first, end = streams
    m = param_mark(store_engine.dialect)
    # a prefix test by substr, not LIKE or a range: exact on every collation and case
    where = [f"position <= {m}", f"substr(stream_id, 1, {len(CHILD_STREAM_PREFIX)}) = {m}"]
    params: list[object] = [head, CHILD_STREAM_PREFIX]
    if after is not None:
        where.append(f"(stream_id, version) > ({m}, {m})")
        params.extend(after)
    elif first is not None:
        where.append(f"stream_id >= {m}")
        params.append(first)
    if end is not None:
        where.append(f"stream_id < {m}")
        params.append(end)
    params.append(page)
    sql = (
        f"SELECT {', '.join(LOG_COLUMNS)} FROM {log_events.name} WHERE {' AND '.join(where)} "
        f"ORDER BY stream_id, version LIMIT {m}"
    )
    return _log_rows(store_engine, sql, tuple(params))


def _log_rows(store_engine: Engine, sql: str, params: tuple[object, ...]) -> list[LogRow]:
    """The rows of a SELECT of `LOG_COLUMNS`, straight from the driver (tuples, no Row objects)."""
    with read_only(store_engine).connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def _other_streams(store_engine: Engine, head: int) -> list[LogRow]:
    """The log rows (positions <= head) of the streams that are not a child's, in log order."""
    m = param_mark(store_engine.dialect)
    sql = (
        f"SELECT {', '.join(LOG_COLUMNS)} FROM {log_events.name} WHERE position <= {m} "
        f"AND substr(stream_id, 1, {len(CHILD_STREAM_PREFIX)}) <> {m} ORDER BY position"
    )
    return _log_rows(store_engine, sql, (head, CHILD_STREAM_PREFIX))


def apply_other_streams(worker: ProjectionWorker, head: int) -> int:
    """Apply every event (positions <= head) of the streams that are not a child's through the
    ordinary path: `worker._handle` in one transaction (deduplication by event id, processed-event
    rows, dead letters), i.e. the projection's `apply`. Writes no checkpoint (the rebuild's last
    page does). Returns how many events were handed over."""
    rows = _other_streams(worker.store_engine, head)
    if not rows:
        return 0
    source = SqlLogSource(worker.store_engine, worker.projection.name, len(rows))
    worker._pending_dead_letters.clear()
    with worker.engine.begin() as conn:
        worker._handle(conn, source, Batch([_item(_decoded(row)) for row in rows]))
    worker._publish_dead_letters(source)
    return len(rows)


def _bulk_replay(
    worker: ProjectionWorker,
    page: int,
    *,
    head: int | None,
    streams: tuple[str | None, str | None],
    checkpoint: bool,
    others_first: bool,
) -> int:
    projection = worker.projection
    source = SqlLogSource(worker.store_engine, projection.name, page)
    if head is None:
        head = log_head(worker.store_engine)
    total = apply_other_streams(worker, head) if others_first else 0
    start = getattr(projection, "start_rebuild", None)
    if start is not None:
        start()
    after: tuple[str, int] | None = None
    carry: list[Decoded] = []
    while True:
        rows = _log_page(worker.store_engine, head, after, streams, page)
        last_page = len(rows) < page
        entries = carry + [_decoded(row) for row in rows]
        if rows:
            after = (rows[-1][2], rows[-1][3])
        if last_page:
            carry = []
        else:  # the page's last child may go on in the next page
            tail = entries[-1][0][2]
            cut = len(entries)
            while cut > 0 and entries[cut - 1][0][2] == tail:
                cut -= 1
            if cut == 0:  # one child larger than a page: keep collecting
                carry = entries
                continue
            entries, carry = entries[:cut], entries[cut:]
        if entries:
            _rebuild_page(worker, source, entries)
            total += len(entries)
        if last_page:
            break
    finish = getattr(projection, "finish_rebuild", None)
    if finish is not None:
        work = finish()
        with worker.engine.begin() as conn:
            projection.rebuild_children(conn, work)  # type: ignore[attr-defined]
        committed = getattr(projection, "rebuild_committed", None)
        if committed is not None:
            committed(work)
    if checkpoint:
        with worker.engine.begin() as conn:
            source.record_progress(conn, Batch([], last_position=head or None))
    return total


def log_head(store_engine: Engine) -> int:
    with read_only(store_engine).connect() as conn:
        return int(conn.execute(select(func.max(log_events.c.position))).scalar() or 0)


def stream_boundaries(store_engine: Engine, head: int, parts: int) -> list[str]:
    """Stream ids that cut the child streams of the log (up to `head`) into `parts` runs of about
    equal event counts; a child's events all fall in one run, since the cuts are stream ids."""
    child = func.substr(log_events.c.stream_id, 1, len(CHILD_STREAM_PREFIX)) == CHILD_STREAM_PREFIX
    with read_only(store_engine).connect() as conn:
        count = int(
            conn.execute(
                select(func.count()).select_from(log_events).where(log_events.c.position <= head, child)
            ).scalar_one()
        )
        cuts: list[str] = []
        for k in range(1, parts):
            stmt = (
                select(log_events.c.stream_id)
                .where(log_events.c.position <= head, child)
                .order_by(log_events.c.stream_id, log_events.c.version)
                .offset(count * k // parts)
                .limit(1)
            )
            cut = conn.execute(stmt).scalar()
            if cut is not None and (not cuts or cut > cuts[-1]):
                cuts.append(cut)
    return cuts


def parallel_bulk_replay(worker: ProjectionWorker, processes: int, page: int = REBUILD_PAGE) -> int:
    """`bulk_replay` by several processes, each over its own run of children (forked: the parent's
    connections are not reused by a child), then the checkpoint at the head. Only for projections
    whose rows belong to one child each (`parallel_rebuild`). The events of streams that are not a
    child's are applied once, by the parent, before the processes start (`apply_other_streams`),
    so every process derives its children with them known. A failed process fails the replay
    (run it again: replay starts by resetting the projection)."""
    head = log_head(worker.store_engine)
    others = apply_other_streams(worker, head)
    cuts = stream_boundaries(worker.store_engine, head, processes)
    runs: list[tuple[str | None, str | None]] = list(zip([None, *cuts], [*cuts, None], strict=True))
    worker.engine.dispose()
    worker.store_engine.dispose()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_replay_run, args=(worker, page, head, run, results), daemon=True)
        for run in runs[1:]
    ]
    for proc in procs:
        proc.start()
    total = others + bulk_replay(
        worker, page, head=head, streams=runs[0], checkpoint=False, others_first=False
    )
    for proc in procs:
        proc.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"replay of {worker.projection.name}: {len(failed)} process(es) failed")
    for _ in procs:
        total += int(results.get(timeout=10))
    with worker.engine.begin() as conn:
        SqlLogSource(worker.store_engine, worker.projection.name, page).record_progress(
            conn, Batch([], last_position=head or None)
        )
    return total


def _replay_run(
    worker: ProjectionWorker,
    page: int,
    head: int,
    streams: tuple[str | None, str | None],
    results: multiprocessing.queues.Queue[int],
) -> None:
    worker.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
    worker.store_engine.dispose(close=False)
    results.put(bulk_replay(worker, page, head=head, streams=streams, checkpoint=False, others_first=False))


def _rebuild_page(worker: ProjectionWorker, source: SqlLogSource, entries: list[Decoded]) -> None:
    projection = worker.projection
    rebuild: Callable[[Connection, object], None] = projection.rebuild_children  # type: ignore[attr-defined]
    children: list[list[EventEnvelope]] = []
    log_rows: list[list[LogRow]] = []
    bad: list[Decoded] = []
    stream: str | None = None
    envs: list[EventEnvelope] = []
    rows: list[LogRow] = []
    for entry in entries:  # in (stream, version) order: a child's entries are together
        row, env, _error = entry
        if env is None:
            bad.append(entry)
            continue
        if row[2] != stream:
            stream, envs, rows = row[2], [], []
            children.append(envs)
            log_rows.append(rows)
        envs.append(env)
        rows.append(row)
    worker._pending_dead_letters.clear()
    prepare = getattr(projection, "prepare_children", None)
    try:
        # the projection's pure work before the writing transaction (SQLite has one writer)
        work: object = children
        if prepare is not None:
            if getattr(projection, "uses_log_rows", False):
                work = prepare(worker.engine, children, log_rows=log_rows)
            else:
                work = prepare(worker.engine, children)
        with worker.engine.begin() as conn:
            for entry in bad:
                item = _item(entry)
                worker._dead_letter(conn, item, item.error or "undecodable")
            rebuild(conn, work)
    except Exception as exc:
        if is_transient(exc):
            raise
        name = projection.name
        log.warning("projection %s: rebuilding a page failed, event by event: %r", name, exc)
        worker._pending_dead_letters.clear()
        with worker.engine.begin() as conn:
            worker._handle(conn, source, Batch([_item(entry) for entry in entries]))
        worker._publish_dead_letters(source)
        return
    committed = getattr(projection, "rebuild_committed", None)
    if committed is not None:  # only after the commit: what a failed page did is not kept
        committed(work)
    worker._publish_dead_letters(source)
    worker.processed += len(entries) - len(bad)
