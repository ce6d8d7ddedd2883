"""python -m services.ledelsesinfo migrate | serve | work | replay | load-population FILE.csv

- migrate: bring the service's own database to the newest Alembic revision.
- serve: the HTTP service (and, unless RUN_WORKER=false, the projection worker in-process).
- work: the projection worker alone, until Ctrl-C / SIGTERM.
- replay: rebuild the projection from the start of the event log (the worker must not be running).
- load-population FILE.csv: child populations for the per-1,000 comparison, CSV with the columns
  municipality,year,children (any number of municipalities; the HTTP PUT loads only one's own).
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import threading
from collections.abc import Sequence

from sqlalchemy import MetaData

from services.ledelsesinfo import store, tables
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.projection import LedelsesinfoProjection
from shared.db import make_engine


def _metadatas() -> list[MetaData]:
    out = [tables.metadata]
    try:
        from shared.messaging.schema import runner_metadata

        out.append(runner_metadata)
    except ImportError:  # pragma: no cover
        pass
    try:
        from shared.audit import audit_metadata

        out.append(audit_metadata)
    except ImportError:  # pragma: no cover
        pass
    return out


def migrate(settings: Settings) -> None:
    from shared.migrations import migrate_service

    migrate_service("ledelsesinfo", settings.own_database_url)


def serve(settings: Settings) -> None:
    from services.ledelsesinfo.app import create_app
    from shared.serving import serve as serve_app

    serve_app(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


def work(settings: Settings) -> None:
    from shared.messaging.runner import ProjectionWorker

    worker = ProjectionWorker(LedelsesinfoProjection(settings.rules()), settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop_metrics = None
    if settings.worker_metrics_port:
        from shared.observability import serve_worker_metrics

        stop_metrics = serve_worker_metrics("ledelsesinfo", settings, worker, settings.worker_metrics_port)
    worker.start()
    stop.wait()
    worker.stop()
    if stop_metrics is not None:
        stop_metrics()


def replay(settings: Settings) -> int:
    from shared.messaging.runner import replay as run_replay

    return run_replay(LedelsesinfoProjection(settings.rules()), settings)


def load_population(settings: Settings, path: str) -> int:
    engine = make_engine(settings.own_database_url)
    n = 0
    with open(path, newline="", encoding="utf-8-sig") as fh, engine.begin() as conn:
        for row in csv.DictReader(fh):
            municipality = row["municipality"].strip().zfill(3)
            store.put_population(conn, municipality, int(row["year"]), int(row["children"]))
            n += 1
    engine.dispose()
    return n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ledelsesinfo")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("migrate", "serve", "work", "replay"):
        sub.add_parser(name)
    lp = sub.add_parser("load-population", help="CSV with municipality,year,children")
    lp.add_argument("file")
    args = parser.parse_args(argv)
    from shared.config import load_settings
    from shared.logs import configure_logging

    settings = load_settings(Settings, "ledelsesinfo")
    configure_logging("ledelsesinfo", settings.log_level)
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "serve":
        serve(settings)
    elif args.command == "work":
        work(settings)
    elif args.command == "replay":
        print(f"replayed {replay(settings)} events")
    else:
        print(f"loaded {load_population(settings, args.file)} population rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
