"""Checkpoints of SQLite's write-ahead log off the request path.

In WAL mode SQLite copies the log back into the database (a checkpoint, with two fsyncs under
`synchronous=NORMAL`) in the commit that makes the log longer than `wal_autocheckpoint` pages. Every
worklist read writes an audit row per child it shows (a thousand for a big team), so with the
default nearly every such request paid for a checkpoint inside its own response time. While a
`WalCheckpointer` runs, the service's own connections do not checkpoint at commit; its thread does,
every `interval` seconds (`PRAGMA wal_checkpoint(PASSIVE)`: it waits for nobody and nobody waits
for it), and once more when it stops. Commits are as durable as before (`synchronous=NORMAL`: the
log is synced at checkpoints either way; a crash loses no committed transaction that a power
failure would not); the log only grows for up to `interval` between checkpoints. Connections of
other processes (a separate projection worker) keep checkpointing themselves.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)


class WalCheckpointer:
    def __init__(self, engine: Engine, interval: float = 0.5) -> None:
        self.engine = engine
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        event.listen(engine, "connect", self._on_connect)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        if self.running:
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        # connections made before (still in the pool) would go on checkpointing: start afresh
        self.engine.dispose()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        self.checkpoint()

    def checkpoint(self) -> None:
        """One passive checkpoint now (errors are logged: the next one tries again)."""
        try:
            raw = self.engine.raw_connection()  # outside any transaction (a checkpoint cannot be in one)
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]
            finally:
                raw.close()
            self.checkpoints += 1
        except Exception as exc:  # a locked or closed database: not the service's requests' problem
            log.warning("followup: WAL checkpoint failed: %r", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint()
