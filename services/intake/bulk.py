"""Bulk import of NDJSON records, streamed: memory stays flat however large the input.

- `LineSplitter` cuts a byte stream into numbered lines incrementally; a line longer than the
  limit is reported as oversize and skipped without being buffered.
- `BulkImport` takes numbered lines, commits them in chunks: the chunk's lines are parsed first,
  then written in one transaction by `IntakeService.write_many` (a few IN-queries for the state,
  the rules decided in memory in line order, one executemany per table; a refused line is simply
  not written, so a bad line never rolls back good ones). Lines whose case, measure or
  underretning has not been seen yet are deferred and retried after the input ends until no more
  progress is made; what is left is then rejected with the reason.
- Results go to a spooled temporary file in line order (deferred lines' results, few, are merged
  in when read back), so neither the input nor the per-line results are held in memory.
  Deferred lines wait in a spooled file too, encrypted with a key that lives only in memory
  (a line may carry a CPR number; nothing readable is ever written to disk).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import struct
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.intake.domain.records import RecordBase, Rejection
from services.intake.service import IntakeService, Outcome, in_transaction

log = logging.getLogger(__name__)

OVERSIZE = None
SPOOL_BYTES = 8 * 1024 * 1024
RESPONSE_BLOCK_BYTES = 64 * 1024
_HEADER = struct.Struct(">QI")
_encode = json.JSONEncoder(ensure_ascii=False).encode  # as json.dumps(doc, ensure_ascii=False)
_LINE_PREFIX = b'{"line": '


def _line_of(encoded: bytes) -> int:
    """The line number of a spooled result (its JSON starts with it: see `_result`)."""
    if not encoded.startswith(_LINE_PREFIX):
        raise ValueError("a spooled result does not start with its line number")
    return int(encoded[len(_LINE_PREFIX) : encoded.index(b",", len(_LINE_PREFIX))])


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
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                rest = chunk[start:]
                if not self._skipping:
                    if len(self._buf) + len(rest) > self.max_line_bytes:
                        self._buf.clear()
                        self._skipping = True
                    else:
                        self._buf += rest
                return out
            piece = chunk[start:nl]
            if self._skipping:
                self._skipping = False
                self._emit(OVERSIZE, out)
            elif len(self._buf) + len(piece) > self.max_line_bytes + 1:  # +1: a trailing \r
                self._buf.clear()
                self._emit(OVERSIZE, out)
            else:
                self._buf += piece
                self._emit(bytes(self._buf), out)
                self._buf.clear()
            start = nl + 1

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


class BulkImport:
    """One bulk import on behalf of a caller of `municipality`. Not thread-safe: feed it from one
    thread at a time (`add` is cheap; `flush` and `finish` do the database work)."""

    def __init__(
        self,
        service: IntakeService,
        municipality: str,
        *,
        chunk_lines: int | None = None,
        correlation_id: str | None = None,
        on_progress: Callable[[Summary], None] | None = None,
    ) -> None:
        self.service = service
        self.municipality = municipality
        self.chunk_lines = chunk_lines or service.settings.bulk_chunk_lines
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self.on_progress = on_progress
        self.summary = Summary()
        self._buffer: list[tuple[int, bytes | None]] = []
        self._results: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self._deferred = _DeferredSpool()
        self._late: dict[int, dict[str, Any]] = {}  # final results of deferred lines
        self._finished = False

    # --- feeding ------------------------------------------------------------------------------

    def add(self, line_no: int, raw: bytes | None) -> bool:
        """Queue a line (None = oversize); True when a chunk is full and `flush` should run."""
        self._buffer.append((line_no, raw))
        return len(self._buffer) >= self.chunk_lines

    def flush(self) -> None:
        """Process the queued lines in one transaction."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        outcomes = self._process_many(batch)
        defer: list[tuple[int, bytes]] = []
        for (line_no, raw), outcome in zip(batch, outcomes, strict=True):
            if outcome.retry_later and raw is not None:
                defer.append((line_no, raw))
                continue
            doc = _result(line_no, outcome)
            self._count(doc)
            self._results.write(_encode(doc).encode() + b"\n")
        for line_no, raw in defer:
            self._deferred.add(line_no, raw)
        self.summary.lines += len(batch)
        if self.on_progress:
            self.on_progress(self.summary)

    def feed_lines(self, lines: Sequence[tuple[int, bytes | None]]) -> None:
        for line_no, raw in lines:
            if self.add(line_no, raw):
                self.flush()

    def finish(self) -> Summary:
        """Flush, retry deferred lines until no progress, reject what is left."""
        self.flush()
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

    def _process_many(self, lines: Sequence[tuple[int, bytes | None]]) -> list[Outcome]:
        """Parse the lines (outside the transaction), then write the records among them in one."""
        outcomes: list[Outcome | None] = []
        records: list[RecordBase] = []
        where: list[int] = []  # index in `lines` of each record
        for index, (line_no, raw) in enumerate(lines):
            parsed = self._parse(line_no, raw)
            if isinstance(parsed, Outcome):
                outcomes.append(parsed)
            else:
                outcomes.append(None)
                records.append(parsed)
                where.append(index)
        if records:

            def on_error(i: int, exc: Exception) -> Outcome:
                return self._internal_error(lines[where[i]][0], records[i], exc)

            written = in_transaction(
                self.service.engine,
                lambda conn: self.service.write_many(conn, records, self.correlation_id, on_error=on_error),
            )
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
            yield json.loads(encoded)

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
        self._results.close()
        self._deferred.close()
