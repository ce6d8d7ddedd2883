"""Parsing a bulk import's lines, in this process or in a second one (a pipeline).

`fast_lines(lines, ...)` takes the lines that `fastpath.fast_record` can take on its own (plainly
valid records of the import's municipality, the vast majority of a real export) and gives each
its record and content hash; a line it cannot take is None, and the importer parses it the careful
way (`BulkImport._parse`: the exact rejection, the metrics). It never rejects.

`ParseWorker` runs `fast_lines` in a second process, so that on a machine with two cores the
parsing of one chunk overlaps the writing of the one before (the writer, SQLite or PostgreSQL,
is one transaction at a time in this process). Records cross the pipe as plain values
(`fastpath.pack`); the worker holds no secret but the pseudonym key (content hashes) and no state
between chunks. It is started in the background (`python -m services.intake.parsing`, talking
over its stdin and stdout), so an import never waits for it: lines are parsed here until it says
it is ready. If it breaks (killed, or an error), the importer parses
the chunks it had sent here, and the rest of the import too. Idle workers are kept for the next
large import of this process (`acquire` / `release`), and end with it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from services.intake.domain import fastpath
from services.intake.domain.records import RecordBase
from shared.events.codes import MeasureType

log = logging.getLogger(__name__)

# a line's record, content hash and `occurred_at.isoformat()` (when known), or None: parse it carefully
Parsed = tuple[RecordBase, str, str | None] | None
Packed = tuple[tuple[Any, ...], str] | None


def fast_lines(
    lines: Sequence[bytes | None],
    now: datetime,
    measure_types: Mapping[str, MeasureType],
    municipality: str,
    mac: Any,
) -> list[Parsed]:
    """Each line's record and content hash (`mac`: an HMAC to copy, keyed with the pseudonym key),
    or None where the shortcut cannot tell (not JSON to orjson, not plainly valid, another
    municipality, an oversize line)."""
    ctx = fastpath.context(now, measure_types)
    out: list[Parsed] = []
    for raw in lines:
        record = None
        if raw is not None:
            try:
                record = fastpath.fast_record(orjson.loads(raw), ctx, municipality)
            except orjson.JSONDecodeError:
                record = None
        if record is None:
            out.append(None)
            continue
        digest = mac.copy()
        digest.update(fastpath.canonical_json(record))
        out.append((record, digest.hexdigest(), None))
    return out


# --- the worker process ------------------------------------------------------------------------------

_READY = b"ready"
_FRAME = struct.Struct(">I")
RECEIVE_TIMEOUT = 300.0  # seconds for one chunk's answer before the worker counts as hung


def _read_frame(stream: IO[bytes]) -> bytes:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError
    (size,) = _FRAME.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return body


def _write_frame(stream: IO[bytes], body: bytes) -> None:
    stream.write(_FRAME.pack(len(body)) + body)
    stream.flush()


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The worker's loop: a pickled job in, its lines' packed records and hashes out, until the
    parent closes the pipe."""
    macs: dict[bytes, Any] = {}
    _write_frame(sink, _READY)
    while True:
        try:
            message = _read_frame(source)
        except (EOFError, OSError):
            return
        try:
            now, measure_types, municipality, key, lines = pickle.loads(message)
            mac = macs.get(key)
            if mac is None:
                mac = macs[key] = hmac.new(key, digestmod=hashlib.sha256)
            packed: list[Packed] = []
            for item in fast_lines(lines, now, measure_types, municipality, mac):
                if item is None:
                    packed.append(None)
                    continue
                shape = fastpath.pack(item[0])
                packed.append((shape, item[1]) if shape is not None else None)
            answer = pickle.dumps(("ok", packed), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the parent parses this chunk itself
            answer = pickle.dumps(("error", type(exc).__name__), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_frame(sink, answer)
        except (EOFError, OSError):
            return


def _main() -> None:
    """`python -m services.intake.parsing`: a worker on stdin/stdout (anything else printed goes to
    stderr, so nothing can get between the frames)."""
    sink = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    _serve(sys.stdin.buffer, sink)


class WorkerGone(Exception):
    """The worker cannot take or answer a job (it died, or failed the job)."""


class ParseWorker:
    """One worker process (`python -m services.intake.parsing`, started in the background; it
    imports only the parsing modules). Jobs are answered in the order sent; one thread at a time."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the checkout holding `services`
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "services.intake.parsing"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in: IO[bytes] = self._process.stdin
        self._out: IO[bytes] = self._process.stdout
        # Answers are read as they come, by a thread: a worker blocked writing an answer nobody
        # reads would stop reading the next job, and a parent writing that job would wait forever.
        self._answers: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read_answers, name="intake-parse-reader", daemon=True)
        self._reader.start()
        self._ready = False
        self.pending = 0
        self.broken = False

    def _read_answers(self) -> None:
        try:
            while True:
                self._answers.put(_read_frame(self._out))
        except (EOFError, OSError, ValueError):
            self._answers.put(None)

    def ready(self) -> bool:
        """Whether the worker has started (never waits)."""
        if not self._ready and not self.broken:
            try:
                first = self._answers.get_nowait()
            except queue.Empty:
                return False
            self._ready = first == _READY
            self.broken = not self._ready
        return self._ready and not self.broken

    def alive(self) -> bool:
        return not self.broken and self._process.poll() is None

    def submit(
        self,
        lines: Sequence[bytes | None],
        now: datetime,
        measure_types: Mapping[str, MeasureType],
        municipality: str,
        key: bytes,
    ) -> None:
        job = pickle.dumps(
            (now, dict(measure_types), municipality, key, list(lines)), protocol=pickle.HIGHEST_PROTOCOL
        )
        try:
            _write_frame(self._in, job)
        except (OSError, ValueError) as exc:
            self.broken = True
            raise WorkerGone from exc
        self.pending += 1

    def receive(self) -> list[Packed]:
        """The answer to the oldest job sent (waits for it)."""
        try:
            frame = self._answers.get(timeout=RECEIVE_TIMEOUT)
            if frame is None:
                raise EOFError("the parsing worker ended")
            status, packed = pickle.loads(frame)
        except (EOFError, OSError, ValueError, pickle.UnpicklingError, queue.Empty) as exc:
            self.broken = True
            raise WorkerGone from exc
        finally:
            self.pending -= 1
        if status != "ok":
            log.warning("intake bulk: the parsing worker failed a chunk (%s); parsing it here", packed)
            raise WorkerGone(packed)
        return list(packed)

    def close(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            self._in.close()  # the worker ends at the end of its input; then the reader at its output's
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._reader.join(5)
        with contextlib.suppress(OSError):
            self._out.close()

    @property
    def pid(self) -> int:
        return self._process.pid


def unpack(item: Packed) -> Parsed:
    """A worker's answer for one line as the record and its content hash."""
    if item is None:
        return None
    return fastpath.unpack(item[0]), item[1], item[0][3]


def spare_core() -> bool:
    """Whether a core is free for a worker: fewer processes running or waiting to run, on average
    over the last minute, than cores this process may use, minus the one it keeps busy itself."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores < 2:
        return False
    return os.getloadavg()[0] < cores - 0.5


# --- workers kept for the next import ------------------------------------------------------------------

_IDLE: list[ParseWorker] = []
_LOCK = threading.Lock()


def acquire() -> ParseWorker:
    """An idle worker of this process, or a new one (starting in the background)."""
    with _LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.alive():
                return worker
            worker.close()
    return ParseWorker()


def release(worker: ParseWorker, keep: int = 1) -> None:
    """Give a worker back after an import: kept for the next one when it is healthy and idle."""
    if worker.pending or not worker.alive():
        worker.close()
        return
    with _LOCK:
        if len(_IDLE) < keep:
            _IDLE.append(worker)
            return
    worker.close()


def shutdown() -> None:
    """End the idle workers (at exit; a worker also ends by itself when this process ends)."""
    with _LOCK:
        idle, _IDLE[:] = list(_IDLE), []
    for worker in idle:
        worker.close()


atexit.register(shutdown)


if __name__ == "__main__":
    _main()
