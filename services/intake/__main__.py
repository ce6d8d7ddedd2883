"""Intake's command line.

    python -m services.intake migrate
    python -m services.intake serve
    python -m services.intake relay
    python -m services.intake import FILE --municipality 657 [--token JWT] [--results OUT.ndjson]
    python -m services.intake forget CHILD_ID --municipality 657 [--by NAME]
    python -m services.intake forget --cpr-stdin --municipality 657      (CPR read from stdin)

Settings come from the environment (see services/intake/config.py). `import` streams a DUBU export
(NDJSON, `-` = stdin) through the same service layer as POST /records/bulk, directly on the
database; it shows a progress line on stderr and ends with a summary. Re-importing the same file
reports every line as duplicate. Exit status: 0 all lines accepted or duplicate, 1 some lines
rejected, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from services.intake.config import Settings
from shared.serving import long_lived_frozen, serve

log = logging.getLogger("services.intake")

READ_BYTES = 1024 * 1024
MAX_SHOWN_REJECTIONS = 20


def _settings() -> Settings:
    from shared.config import load_settings

    return load_settings(Settings, "intake")


def _engine(settings: Settings) -> Any:
    from shared.db import make_engine

    return make_engine(settings.event_store_url)


# --- migrate / serve / relay -----------------------------------------------------------------


def cmd_migrate(settings: Settings) -> int:
    from shared.migrations import migrate_service

    migrate_service("intake", settings.event_store_url)
    print("intake: database migrated to head", file=sys.stderr)
    return 0


def cmd_serve(settings: Settings) -> int:
    from services.intake.app import create_app

    serve(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def cmd_relay(settings: Settings) -> int:
    from shared.messaging.relay import OutboxRelay

    if settings.transport != "kafka":
        print("intake relay: TRANSPORT is not kafka; nothing to relay", file=sys.stderr)
        return 2
    relay = OutboxRelay(
        _engine(settings),
        settings.kafka_bootstrap_servers,
        topics=(settings.kafka_topic, settings.kafka_dlq_topic),
        partitions=settings.kafka_partitions,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay.run(stop)
    return 0


# --- import ----------------------------------------------------------------------------------


class Progress:
    """A carriage-return progress line on stderr, at most five updates a second."""

    def __init__(self, stream: IO[str], total_bytes: int | None, enabled: bool) -> None:
        self.stream = stream
        self.total = total_bytes
        self.enabled = enabled
        self.started = time.monotonic()
        self._last = 0.0

    def show(
        self,
        lines: int,
        bytes_read: int,
        accepted: int,
        duplicate: int,
        rejected: int,
        *,
        force: bool = False,
    ) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.2):
            return
        self._last = now
        rate = lines / max(now - self.started, 1e-6)
        size = f"{bytes_read / 2**20:,.1f} MiB"
        if self.total:
            size += f" / {self.total / 2**20:,.1f} MiB ({100 * bytes_read / self.total:3.0f}%)"
        self.stream.write(
            f"\rimport: {lines:,} lines  {size}  accepted {accepted:,}  duplicate {duplicate:,}  "
            f"rejected {rejected:,}  {rate:,.0f} lines/s "
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _principal_municipality(settings: Settings, municipality: str, token: str | None) -> str:
    from shared.auth import AuthError, authorize_scope, decode_token

    if token:
        try:
            principal = decode_token(token, settings)
        except AuthError as exc:
            raise SystemExit(f"intake import: {exc}") from None
        if principal.municipality != municipality:
            raise SystemExit("intake import: the token is for another municipality")
        try:
            authorize_scope(principal, municipality, purpose="write")
        except Exception:
            raise SystemExit(f"intake import: role {principal.role} may not write records") from None
    return municipality


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from services.intake.bulk import BulkImport, LineSplitter, Summary
    from services.intake.service import IntakeService

    token = args.token or os.environ.get("INTAKE_TOKEN")
    municipality = _principal_municipality(settings, args.municipality, token)
    engine = _engine(settings)
    if settings.auto_create_tables:
        from services.intake.adapters.schema import create_tables

        create_tables(engine)
    service = IntakeService(engine, settings)
    source: IO[bytes]
    if args.file == "-":
        source, total = sys.stdin.buffer, None
    else:
        source = open(args.file, "rb")  # noqa: SIM115 - closed below
        total = os.fstat(source.fileno()).st_size
    progress = Progress(sys.stderr, total, enabled=not args.quiet)
    splitter = LineSplitter(settings.max_line_bytes)

    def on_progress(s: Summary) -> None:
        progress.show(s.lines, splitter.bytes_seen, s.accepted, s.duplicate, s.rejected)

    importer = BulkImport(service, municipality, chunk_lines=args.chunk_lines, on_progress=on_progress)
    frozen = long_lived_frozen()
    frozen.__enter__()  # (left in the finally below)
    try:
        while True:
            chunk = source.read(READ_BYTES)
            if not chunk:
                break
            importer.feed_lines(splitter.feed(chunk))
        importer.feed_lines(splitter.end())
        summary = importer.finish()
        s = summary
        progress.show(s.lines, splitter.bytes_seen, s.accepted, s.duplicate, s.rejected, force=True)
        progress.done()
        shown = 0
        out = open(args.results, "w", encoding="utf-8") if args.results else None  # noqa: SIM115
        try:
            for doc in importer.results():
                if out is not None:
                    out.write(json.dumps(doc, ensure_ascii=False) + "\n")
                if doc["status"] == "rejected" and shown < MAX_SHOWN_REJECTIONS and not args.quiet:
                    print(f"  line {doc['line']}: {doc['reason']}", file=sys.stderr)
                    shown += 1
        finally:
            if out is not None:
                out.close()
        if summary.rejected > shown and not args.quiet:
            print(f"  ... and {summary.rejected - shown} more rejected lines", file=sys.stderr)
    finally:
        frozen.__exit__(None, None, None)
        importer.close()
        if source is not sys.stdin.buffer:
            source.close()
        engine.dispose()
    elapsed = time.monotonic() - progress.started
    report = {**summary.as_dict(), "seconds": round(elapsed, 2), "correlation_id": importer.correlation_id}
    print(
        f"intake import: {summary.lines:,} lines: {summary.accepted:,} accepted, "
        f"{summary.duplicate:,} duplicate, {summary.rejected:,} rejected in {elapsed:,.1f} s",
        file=sys.stderr,
    )
    print(json.dumps(report))
    return 1 if summary.rejected else 0


# --- forget ----------------------------------------------------------------------------------


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    from services.intake.adapters.vault import ChildUnknown
    from services.intake.domain.cpr import ChildIdentity, CprError, validate_cpr
    from services.intake.service import IntakeService
    from shared.audit import write_audit
    from shared.auth import Principal

    engine = _engine(settings)
    service = IntakeService(engine, settings)
    if args.cpr_stdin:
        try:
            cpr = validate_cpr(sys.stdin.readline().strip())
        except CprError as exc:
            print(f"intake forget: not a valid CPR number: {exc}", file=sys.stderr)
            return 2
        child_id = service.child_id_for(ChildIdentity(cpr=cpr))
    elif args.child_id:
        child_id = args.child_id
    else:
        print("intake forget: give CHILD_ID or --cpr-stdin", file=sys.stderr)
        return 2
    principal = Principal(
        sub=args.by, role="chef", municipality=args.municipality, teams=frozenset(), caseworker_id=None
    )
    try:
        with engine.begin() as conn:
            result = service.vault.forget(conn, args.municipality, child_id, by=args.by)
            write_audit(conn, principal, [child_id], "cli forget", "intake")
    except ChildUnknown:
        print(f"intake forget: no child {child_id} in municipality {args.municipality}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(json.dumps({"child_id": child_id, "status": result.status, "forgotten_at": result.forgotten_at}))
    return 0


# --- main ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.intake", description="Intake service commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the event log, intake and audit tables where missing")
    sub.add_parser("serve", help="run the HTTP service (HOST, PORT from the environment)")
    sub.add_parser("relay", help="run the outbox relay to Kafka in the foreground")
    imp = sub.add_parser("import", help="import an NDJSON export file (DUBU-like)")
    imp.add_argument("file", help="NDJSON file, or - for stdin")
    imp.add_argument("--municipality", required=True, help="3-digit municipality code the file is for")
    imp.add_argument("--token", default=None, help="bearer JWT to check (default: $INTAKE_TOKEN, or none)")
    imp.add_argument("--results", default=None, help="write every line's result (NDJSON) to this file")
    imp.add_argument("--chunk-lines", type=int, default=None, help="lines per transaction")
    imp.add_argument("--quiet", action="store_true", help="no progress line and no rejection list")
    fg = sub.add_parser("forget", help="destroy a child's CPR key (the identity is gone for good)")
    fg.add_argument("child_id", nargs="?", default=None, help="the child's pseudonym (child_id)")
    fg.add_argument("--municipality", required=True)
    fg.add_argument("--cpr-stdin", action="store_true", help="read the child's CPR number from stdin")
    fg.add_argument("--by", default="cli", help="who asked (written to the audit log)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings()
    from shared.logs import configure_logging

    configure_logging("intake", settings.log_level)
    if args.command in ("import", "forget") and (
        len(args.municipality) != 3 or not args.municipality.isdigit()
    ):
        print("--municipality must be a 3-digit code such as 657", file=sys.stderr)
        return 2
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "relay":
        return cmd_relay(settings)
    if args.command == "import":
        return cmd_import(settings, args)
    return cmd_forget(settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
