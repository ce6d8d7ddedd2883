"""The outbox relay: publishes outbox rows to Kafka in order, then deletes them.

At-least-once: a row is deleted only after Kafka acknowledged it (acks=all, futures checked).
A crash between the two re-sends the row on restart; consumers deduplicate by event id. Rows are
sent in outbox order with key = stream id, so one child's events stay on one partition in order.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from kafka import KafkaProducer
from sqlalchemy import Connection, Engine, delete, func, select, text

from shared.eventstore.schema import outbox
from shared.messaging.kafka import ensure_topics, make_producer

log = logging.getLogger(__name__)

_RELAY_LOCK_KEY = 727275
# the envelope's wire form is compact JSON with `correlation_id` before `data`: the first match is it
_CORRELATION = re.compile(rb'"correlation_id":"([A-Za-z0-9._:-]{1,64})"')


def headers_for(payload: bytes) -> list[tuple[str, bytes]]:
    """Kafka headers of an event: its correlation id, so consumers can log it before decoding."""
    found = _CORRELATION.search(payload)
    return [("correlation_id", found.group(1))] if found else []


class OutboxRelay:
    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        *,
        topics: tuple[str, ...] = (),
        partitions: int = 6,
        batch_size: int = 1000,
        idle_sleep: float = 0.05,
        client_id: str = "outbox-relay",
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_sleep = idle_sleep
        self.client_id = client_id
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0

    # --- one step --------------------------------------------------------------------------

    def producer(self) -> KafkaProducer:
        if self._producer is None:
            if self.topics:
                ensure_topics(self.bootstrap, self.topics, self.partitions)
            self._producer = make_producer(self.bootstrap, self.client_id)
        return self._producer

    def run_once(self) -> int:
        """Publish up to one batch; returns how many rows were published and removed."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload)
                .order_by(outbox.c.id)
                .limit(self.batch_size)
            ).all()
        if not rows:
            return 0
        producer = self.producer()
        futures = [
            producer.send(r.topic, key=r.key.encode(), value=bytes(r.payload), headers=headers_for(r.payload))
            for r in rows
        ]
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)  # raises if Kafka did not acknowledge
        with self.engine.begin() as conn:
            conn.execute(delete(outbox).where(outbox.c.id <= rows[-1].id, outbox.c.id >= rows[0].id))
        self.published += len(rows)
        return len(rows)

    def drain(self, timeout: float = 60.0) -> int:
        """Publish until the outbox is empty (tests, benchmarks)."""
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.run_once()
            total += n
            if n == 0:
                return total
        raise TimeoutError("outbox not drained in time")

    # --- loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Relay until stopped. On PostgreSQL only the holder of an advisory lock relays."""
        stop = stop or self._stop
        backoff = 0.5
        while not stop.is_set():  # the database may be down when the relay starts: wait for it
            lock_conn = None
            try:
                lock_conn = self.engine.connect()
                self._wait_for_leadership(lock_conn, stop)
                break
            except Exception as exc:
                if lock_conn is not None:
                    lock_conn.close()
                log.warning("outbox relay: database not reachable, retrying", extra={"error": repr(exc)})
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        else:
            return
        backoff = 0.5
        with lock_conn:
            while not stop.is_set():
                try:
                    n = self.run_once()
                    backoff = 0.5
                    if n == 0:
                        stop.wait(self.idle_sleep)
                except Exception as exc:  # broker down, timeouts: back off and start a new producer
                    log.warning("outbox relay: publish failed, retrying", extra={"error": repr(exc)})
                    self._close_producer()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
        self._close_producer()

    def _wait_for_leadership(self, conn: Connection, stop: threading.Event) -> None:
        if conn.dialect.name != "postgresql":
            return
        while not stop.is_set():
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _RELAY_LOCK_KEY}).scalar()
            conn.commit()
            if got:
                return
            stop.wait(1.0)

    def _close_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:  # closing a broken producer must not stop the relay
                log.debug("producer close failed", exc_info=True)
            self._producer = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)


def outbox_size(engine: Engine) -> tuple[int, str | None]:
    """(unsent rows, created_at of the oldest) for metrics and readiness."""
    with engine.connect() as conn:
        row = conn.execute(select(func.count(), func.min(outbox.c.created_at))).one()
    return int(row[0]), row[1]
