"""Bulk import of NDJSON records, streamed: memory stays flat however large the input.

- `LineSplitter` cuts a byte stream into numbered lines incrementally; a line longer than the
  limit is reported as oversize and skipped without being buffered.
- `BulkImport` takes numbered lines, commits them in chunks: the chunk's lines are parsed first,
  then written in one transaction by `IntakeService.write_many` (a few IN-queries for the state,
  the rules decided in memory in line order, one executemany per table; a refused line is simply
  not written, so a bad line never rolls back good ones). Lines whose case, measure or
  underretning has not been seen yet are deferred and retried after the input ends until no more
  progress is made; what is left is then rejected with the reason.
- Parsing takes a shortcut for plainly valid lines (`parsing.fast_lines`: orjson and
  `fastpath.fast_record`, the same records pydantic would give); every other line is parsed the
  careful way, with its exact rejection. A large import (after its first `WORKER_AFTER_CHUNKS`
  chunks, with the `bulk_parse_workers` setting > 0) parses in a second process
  (`parsing.ParseWorker`) while this one writes: chunk k+1 is parsed there while chunk k is
  written here, in order. Any trouble with the worker and the chunks are parsed here instead; the
  results are the same either way.
- Results go to a spooled temporary file in line order (deferred lines' results, few, are merged
  in when read back), so neither the input nor the per-line results are held in memory.
  Deferred lines wait in a spooled file too, encrypted with a key that lives only in memory
  (a line may carry a CPR number; nothing readable is ever written to disk).
"""

from __future__ import annotations

import gc
import heapq
import json
import logging
import os
import struct
import tempfile
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection

from services.intake import parsing
from services.intake.domain.records import RecordBase, Rejection
from services.intake.service import IntakeService, Outcome, in_transaction

log = logging.getLogger(__name__)

OVERSIZE = None
SPOOL_BYTES = 8 * 1024 * 1024
RESPONSE_BLOCK_BYTES = 64 * 1024
_HEADER = struct.Struct(">QI")
_encode = json.JSONEncoder(ensure_ascii=False).encode  # as json.dumps(doc, ensure_ascii=False)
_LINE_PREFIX = b'{"line": '
WORKER_AFTER_CHUNKS = 2  # a parsing worker for imports of more chunks than this (small ones never wait)
PIPELINE_DEPTH = 1  # chunks parsed ahead by the worker while this process writes


def _line_of(encoded: bytes) -> int:
    """The line number of a spooled result (its JSON starts with it: see `_result`)."""
    if not encoded.startswith(_LINE_PREFIX):
        raise ValueError("a spooled result does not start with its line number")
    return int(encoded[len(_LINE_PREFIX) : encoded.index(b",", len(_LINE_PREFIX))])


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is processed: a chunk makes tens of thousands of
    short-lived objects (freed by reference counting as the chunk ends), and the collector would
    walk them again and again (about a tenth of a chunk's time). Cycles wait until after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


SQLITE_PAGE_CACHE_KIB = 64 * 1024


def _roomy_page_cache(conn: Connection) -> None:
    """On SQLite, a page cache of `SQLITE_PAGE_CACHE_KIB` for the connection a bulk import writes
    with (the default is 2 MiB; set at every chunk, a statement that costs next to nothing). A
    chunk's events land at scattered places of the log's three unique indexes: with the default
    cache most of those pages are read back from the file for every chunk, and dirty ones spill
    before the commit. The cache is bounded, so memory stays flat however large the import."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size = -{int(SQLITE_PAGE_CACHE_KIB)}")


class LineSplitter:
    """Bytes in any chunking -> (line number, line bytes or None when the line is too long).

    Line numbers count every physical line from 1 (blank lines are skipped but counted); a
    trailing `\\r` is dropped, and a UTF-8 byte order mark at the very start.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()
        self._line_no = 0
        self._skipping = False
        self._started = False
        self.bytes_seen = 0

    def _emit(self, raw: bytes | None, out: list[tuple[int, bytes | None]]) -> None:
        self._line_no += 1
        if raw is None:
            out.append((self._line_no, OVERSIZE))
            return
        if self._line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.strip():
            out.append((self._line_no, raw))

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        out: list[tuple[int, bytes | None]] = []
        self.bytes_seen += len(chunk)
        pieces = chunk.split(b"\n")
        rest = pieces.pop()  # after the last newline: the start of a line still to come
        limit = self.max_line_bytes + 1  # +1: a trailing \r
        for piece in pieces:
            if self._skipping:
                self._skipping = False
                self._emit(OVERSIZE, out)
            elif self._buf:
                if len(self._buf) + len(piece) > limit:
                    self._buf.clear()
                    self._emit(OVERSIZE, out)
                else:
                    self._buf += piece
                    self._emit(bytes(self._buf), out)
                    self._buf.clear()
            elif len(piece) > limit:
                self._emit(OVERSIZE, out)
            elif self._line_no and piece[-1:] != b"\r" and piece[:1] == b"{":
                self._line_no += 1  # the common case of `_emit`: not the first line, no \r, not blank
                out.append((self._line_no, piece))
            else:
                self._emit(piece, out)
        if not self._skipping:
            if len(self._buf) + len(rest) > self.max_line_bytes:
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += rest
        return out

    def end(self) -> list[tuple[int, bytes | None]]:
        out: list[tuple[int, bytes | None]] = []
        if self._skipping:
            self._skipping = False
            self._emit(OVERSIZE, out)
        elif self._buf:
            self._emit(bytes(self._buf), out)
            self._buf.clear()
        return out


class _DeferredSpool:
    """Lines waiting for a reference, in line order; encrypted, in memory up to a bound then on disk."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=128))
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self.count = 0

    def add(self, line_no: int, raw: bytes) -> None:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, raw, None)
        self._file.write(_HEADER.pack(line_no, len(sealed)) + nonce + sealed)
        self.count += 1

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        self._file.seek(0)
        while True:
            head = self._file.read(_HEADER.size)
            if not head:
                return
            line_no, size = _HEADER.unpack(head)
            nonce = self._file.read(12)
            yield line_no, self._aead.decrypt(nonce, self._file.read(size), None)

    def close(self) -> None:
        self._file.close()


@dataclass
class Summary:
    lines: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    deferred_resolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
        }


def _result(line_no: int, outcome: Outcome) -> dict[str, Any]:
    status = outcome.status
    if status in ("conflict", "busy"):
        status = "rejected"
    doc: dict[str, Any] = {
        "line": line_no,
        "record_id": outcome.record_id,
        "status": status,
        "reason": outcome.reason,
    }
    if status == "rejected":
        doc["field"] = outcome.field
    return doc


_ACCEPTED = b'{"line": %d, "record_id": %s, "status": "accepted", "reason": null}'
_DUPLICATE = b'{"line": %d, "record_id": %s, "status": "duplicate", "reason": null}'


def _encoded(line_no: int, outcome: Outcome) -> bytes:
    """`_encode(_result(line_no, outcome)).encode()`: the same bytes, the common cases without a dict
    (orjson writes a string as `json.dumps(..., ensure_ascii=False)` does)."""
    status, record_id = outcome.status, outcome.record_id
    if outcome.reason is None and record_id is not None:
        if status == "accepted":
            return _ACCEPTED % (line_no, orjson.dumps(record_id))
        if status == "duplicate":
            return _DUPLICATE % (line_no, orjson.dumps(record_id))
    return _encode(_result(line_no, outcome)).encode()


class BulkImport:
    """One bulk import on behalf of a caller of `municipality`. Not thread-safe: feed it from one
    thread at a time (`add` is cheap; `flush` and `finish` do the database work). `close` it at the
    end (it gives back its parsing worker)."""

    def __init__(
        self,
        service: IntakeService,
        municipality: str,
        *,
        chunk_lines: int | None = None,
        correlation_id: str | None = None,
        on_progress: Callable[[Summary], None] | None = None,
        parse_workers: int | None = None,
    ) -> None:
        self.service = service
        self.municipality = municipality
        self.chunk_lines = chunk_lines or service.settings.bulk_chunk_lines
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self.on_progress = on_progress
        self.summary = Summary()
        self.parse_workers = service.settings.bulk_parse_workers if parse_workers is None else parse_workers
        self._buffer: list[tuple[int, bytes | None]] = []
        self._results: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self._deferred = _DeferredSpool()
        self._late: dict[int, dict[str, Any]] = {}  # final results of deferred lines
        self._finished = False
        self._chunks = 0
        self._worker: parsing.ParseWorker | None = None
        self._inflight: deque[list[tuple[int, bytes | None]]] = deque()  # sent to the worker, in order
        self.worker_chunks = 0  # chunks the worker parsed (for tests and the curious)
        self._spare_core_checked = False
        self._spare_core = False

    # --- feeding ------------------------------------------------------------------------------

    def add(self, line_no: int, raw: bytes | None) -> bool:
        """Queue a line (None = oversize); True when a chunk is full and `flush` should run."""
        self._buffer.append((line_no, raw))
        return len(self._buffer) >= self.chunk_lines

    def flush(self) -> None:
        """Process the queued lines in one transaction (with a parsing worker: send them to it, and
        write the chunk it parsed before)."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self._chunks += 1
        worker = self._parse_worker()
        if worker is not None:
            try:
                worker.submit(
                    [raw for _, raw in batch],
                    self.service.clock(),
                    self.service.measure_types(self.municipality),
                    self.municipality,
                    self.service.settings.cpr_pseudonym_key.encode(),
                )
            except parsing.WorkerGone:
                pass
            else:
                self._inflight.append(batch)
                while len(self._inflight) > PIPELINE_DEPTH:
                    self._complete_next()
                return
        self._drain()
        self._done(batch, self._process_many(batch))

    def _parse_worker(self) -> parsing.ParseWorker | None:
        """The worker to parse the next chunk, once the import is large enough and it has started.
        Only with a core to spare: the pipeline overlaps two processes' work, but costs some more
        work in all (records cross a pipe), so on a machine that is busy anyway it does not pay."""
        if self.parse_workers <= 0 or self._chunks <= WORKER_AFTER_CHUNKS:
            return None
        if self._worker is None:
            if not self._spare_core_checked:
                self._spare_core_checked = True
                self._spare_core = parsing.spare_core()
            if not self._spare_core:
                return None
            self._worker = parsing.acquire()
        if self._worker.broken or not self._worker.ready():
            return None
        return self._worker

    def _complete_next(self) -> None:
        """Write the oldest chunk the worker has (or had) in hand."""
        batch = self._inflight.popleft()
        parsed: list[parsing.Parsed] | None = None
        worker = self._worker
        if worker is not None and not worker.broken:
            try:
                parsed = [parsing.unpack(item) for item in worker.receive()]
                if len(parsed) != len(batch):
                    raise parsing.WorkerGone("an answer of the wrong length")
                self.worker_chunks += 1
            except parsing.WorkerGone:
                worker.broken = True
                parsed = None
        self._done(batch, self._process_many(batch, parsed))

    def _drain(self) -> None:
        while self._inflight:
            self._complete_next()

    def _done(self, batch: list[tuple[int, bytes | None]], outcomes: list[Outcome]) -> None:
        """Results of a written chunk: spooled in line order; lines waiting for a reference deferred."""
        encoded: list[bytes] = []
        summary = self.summary
        for (line_no, raw), outcome in zip(batch, outcomes, strict=True):
            if outcome.retry_later and raw is not None:
                self._deferred.add(line_no, raw)
                continue
            encoded.append(_encoded(line_no, outcome))
            status = outcome.status
            if status == "accepted":
                summary.accepted += 1
            elif status == "duplicate":
                summary.duplicate += 1
            else:
                summary.rejected += 1
        if encoded:
            encoded.append(b"")
            self._results.write(b"\n".join(encoded))
        summary.lines += len(batch)
        if self.on_progress:
            self.on_progress(summary)

    def feed_lines(self, lines: Sequence[tuple[int, bytes | None]]) -> None:
        for line_no, raw in lines:
            if self.add(line_no, raw):
                self.flush()

    def finish(self) -> Summary:
        """Flush, retry deferred lines until no progress, reject what is left."""
        self.flush()
        self._drain()
        self._give_back_worker()
        pending = self._deferred
        while pending.count:
            still = _DeferredSpool()
            progressed = False
            chunk: list[tuple[int, bytes]] = []
            for item in pending:
                chunk.append(item)
                if len(chunk) >= self.chunk_lines:
                    progressed |= self._retry(chunk, still, final=False)
                    chunk = []
            if chunk:
                progressed |= self._retry(chunk, still, final=False)
            pending.close()
            pending = still
            if not progressed:
                break
        if pending.count:
            chunk = []
            for item in pending:
                chunk.append(item)
                if len(chunk) >= self.chunk_lines:
                    self._retry(chunk, None, final=True)
                    chunk = []
            if chunk:
                self._retry(chunk, None, final=True)
        pending.close()
        self._deferred = _DeferredSpool()
        self._finished = True
        if self.on_progress:
            self.on_progress(self.summary)
        return self.summary

    def _give_back_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            parsing.release(worker, keep=self.parse_workers)

    def _retry(self, chunk: list[tuple[int, bytes]], still: _DeferredSpool | None, *, final: bool) -> bool:
        """One transaction over deferred lines; True if any of them got its final result."""
        later: list[tuple[int, bytes]] = []
        finals: list[tuple[int, dict[str, Any]]] = []
        for (line_no, raw), outcome in zip(chunk, self._process_many(list(chunk)), strict=True):
            if outcome.retry_later:
                if not final:
                    later.append((line_no, raw))
                    continue
                outcome = Outcome(
                    "rejected",
                    outcome.record_id,
                    reason=f"{outcome.reason}; no line of this import supplied it either",
                    field=outcome.field,
                )
            finals.append((line_no, _result(line_no, outcome)))
        progressed = bool(finals) and not final
        for line_no, doc in finals:
            self._late[line_no] = doc
            self._count(doc)
            if doc["status"] != "rejected":
                self.summary.deferred_resolved += 1
        if still is not None:
            for line_no, raw in later:
                still.add(line_no, raw)
        return progressed

    def _count(self, doc: dict[str, Any]) -> None:
        status = doc["status"]
        if status == "accepted":
            self.summary.accepted += 1
        elif status == "duplicate":
            self.summary.duplicate += 1
        else:
            self.summary.rejected += 1

    # --- lines -------------------------------------------------------------------------------------

    def _process_many(
        self, lines: Sequence[tuple[int, bytes | None]], parsed: list[parsing.Parsed] | None = None
    ) -> list[Outcome]:
        """Parse the lines (outside the transaction), then write the records among them in one.
        `parsed`: what the worker made of each line (None for a line to parse here carefully);
        without it the lines are parsed here (the shortcut first)."""
        with _gc_paused():
            return self._process_lines(lines, parsed)

    def _process_lines(
        self, lines: Sequence[tuple[int, bytes | None]], parsed: list[parsing.Parsed] | None
    ) -> list[Outcome]:
        if parsed is None:
            parsed = parsing.fast_lines(
                [raw for _, raw in lines],
                self.service.clock(),
                self.service.measure_types(self.municipality),
                self.municipality,
                self.service._content_mac,
            )
        outcomes: list[Outcome | None] = []
        records: list[RecordBase] = []
        hashes: list[str | None] = []
        isos: list[str | None] = []
        where: list[int] = []  # index in `lines` of each record
        for index, ((line_no, raw), fast) in enumerate(zip(lines, parsed, strict=True)):
            if fast is not None:
                outcomes.append(None)
                records.append(fast[0])
                hashes.append(fast[1])
                isos.append(fast[2])
                where.append(index)
                continue
            careful = self._parse(line_no, raw)
            if isinstance(careful, Outcome):
                outcomes.append(careful)
            else:
                outcomes.append(None)
                records.append(careful)
                hashes.append(None)
                isos.append(None)
                where.append(index)
        if records:

            def on_error(i: int, exc: Exception) -> Outcome:
                return self._internal_error(lines[where[i]][0], records[i], exc)

            def write(conn: Connection) -> list[Outcome]:
                _roomy_page_cache(conn)
                return self.service.write_many(
                    conn,
                    records,
                    self.correlation_id,
                    on_error=on_error,
                    content_hashes=hashes,
                    occurred_at_isos=isos,
                )

            written = in_transaction(self.service.engine, write)
            self.service.statistics.wrote(len(written))
            for index, outcome in zip(where, written, strict=True):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def _parse(self, line_no: int, raw: bytes | None) -> RecordBase | Outcome:
        if raw is None:
            return Outcome(
                "rejected",
                None,
                reason=f"line: longer than {self.service.settings.max_line_bytes} bytes; not read",
                field="line",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome("rejected", None, reason="line: not valid UTF-8 text", field="line")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return Outcome(
                "rejected",
                None,
                reason=f"line: not valid JSON ({exc.msg} at column {exc.colno})",
                field="line",
            )
        except (ValueError, RecursionError):  # a number over 4,300 digits, nesting too deep
            return Outcome(
                "rejected", None, reason="line: JSON too deeply nested or a number too long", field="line"
            )
        try:
            parsed = self.service.parse(obj)
        except Exception as exc:
            return self._internal_error(line_no, None, exc)
        if isinstance(parsed, Rejection):
            return Outcome.rejected(parsed)
        if parsed.municipality != self.municipality:
            return Outcome(
                "rejected",
                parsed.record_id,
                reason=(
                    f"municipality: {parsed.municipality} is outside your credentials "
                    f"(you may write records for {self.municipality})"
                ),
                field="municipality",
            )
        return parsed

    @staticmethod
    def _internal_error(line_no: int, record: RecordBase | None, exc: Exception) -> Outcome:
        # Frames only: an exception's message may quote the data it choked on.
        log.error(
            "intake bulk: line %d could not be processed (%s)\n%s",
            line_no,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return Outcome(
            "rejected",
            record.record_id if record is not None else None,
            reason="record: could not be processed because of an internal error; it was not stored",
            field="record",
        )

    # --- reading the results ------------------------------------------------------------------

    def results(self) -> Iterator[dict[str, Any]]:
        """Every line's result, in line order."""
        for encoded in self._encoded_results():
            yield orjson.loads(encoded)

    def _encoded_results(self) -> Iterator[bytes]:
        """Every line's result as its JSON (as spooled, not decoded and encoded again), in line order."""
        if not self._finished:
            raise RuntimeError("finish() the import first")
        self._results.seek(0)

        def in_order() -> Iterator[tuple[int, bytes]]:
            for raw in self._results:
                yield _line_of(raw), raw.rstrip(b"\n")

        late = ((line_no, _encode(doc).encode()) for line_no, doc in sorted(self._late.items()))
        for _, encoded in heapq.merge(in_order(), late, key=lambda item: item[0]):
            yield encoded

    def iter_json(self, block_bytes: int = RESPONSE_BLOCK_BYTES) -> Iterator[bytes]:
        """The HTTP answer, streamed: counts first, then `results` line by line, in blocks of about
        `block_bytes` (a server iterates a sync generator in a thread pool, one hop per block)."""
        head = dict(self.summary.as_dict())
        block = bytearray(json.dumps(head)[:-1].encode() + b', "results": [')
        separator = b"\n"
        for encoded in self._encoded_results():
            block += separator
            block += encoded
            separator = b",\n"
            if len(block) >= block_bytes:
                yield bytes(block)
                block.clear()
        block += b"\n]}\n"
        yield bytes(block)

    def close(self) -> None:
        try:
            self._inflight.clear()
            self._give_back_worker()
        finally:
            self._results.close()
            self._deferred.close()
