"""The follow-up service's command line.

    python -m services.followup migrate   bring the service's own database to the newest Alembic revision
    python -m services.followup serve     the HTTP API on HOST:PORT (default 127.0.0.1:8002), with the
                                          projection worker unless RUN_WORKER=false
    python -m services.followup work      the projection worker alone, until SIGTERM / Ctrl-C
    python -m services.followup replay    rebuild the projection from the start of the event log
                                          (stop the worker first); profile changes come back from
                                          the log (those made before they were events are kept)
    python -m services.followup publish-profiles
                                          put the profile changes made before they were events into
                                          the shared log (once; safe to run again), so ledelsesinfo
                                          and a fresh follow-up database learn them too

Settings come from the environment (services/followup/config.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from services.followup.config import Settings


def cmd_migrate(settings: Settings) -> int:
    from shared.migrations import migrate_service

    migrate_service("followup", settings.own_database_url)
    print("followup: database migrated to head", file=sys.stderr)
    return 0


def cmd_serve(settings: Settings) -> int:
    from services.followup.app import create_app
    from shared.serving import serve

    serve(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def cmd_work(settings: Settings) -> int:
    from services.followup.projection import FollowupProjection
    from shared.messaging.runner import ProjectionWorker

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = ProjectionWorker(FollowupProjection(settings), settings)
    stop_metrics = None
    if settings.worker_metrics_port:
        from shared.observability import serve_worker_metrics

        stop_metrics = serve_worker_metrics("followup", settings, worker, settings.worker_metrics_port)
    worker.start()
    print("followup: projection worker running", file=sys.stderr)
    try:
        stop.wait()
    finally:
        worker.stop()
        if stop_metrics is not None:
            stop_metrics()
    print(f"followup: worker stopped after {worker.processed} events", file=sys.stderr)
    return 0


def cmd_replay(settings: Settings) -> int:
    from services.followup.projection import FollowupProjection
    from shared.db import make_engine
    from shared.messaging.runner import replay

    # Deferred: the replay only stores the events; each child is then derived once, not per batch.
    projection = FollowupProjection(settings, deferred=True)
    count = replay(projection, settings)
    engine = make_engine(settings.own_database_url)
    children = FollowupProjection(settings).flush(engine)
    engine.dispose()
    print(f"followup: replayed {count} events, derived {children} children", file=sys.stderr)
    return 0


def cmd_publish_profiles(settings: Settings) -> int:
    from services.followup.profiles import event_store_for, publish_earlier_changes
    from shared.db import make_engine

    engine = make_engine(settings.own_database_url)
    store_engine = make_engine(settings.event_store_url)
    try:
        store = event_store_for(settings.transport, settings.kafka_topic)
        count = publish_earlier_changes(engine, store_engine, store)
    finally:
        engine.dispose()
        store_engine.dispose()
    print(f"followup: published {count} earlier profile changes to the event log", file=sys.stderr)
    return 0


COMMANDS = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
    "work": cmd_work,
    "replay": cmd_replay,
    "publish-profiles": cmd_publish_profiles,
}


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Run a command. `settings` (tests) replaces the environment and leaves logging alone."""
    parser = argparse.ArgumentParser(prog="python -m services.followup", description="The follow-up service.")
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    if settings is None:
        from shared.config import load_settings

        settings = load_settings(Settings, "followup")
        from shared.logs import configure_logging

        configure_logging("followup", settings.log_level)
    return COMMANDS[args.command](settings)


if __name__ == "__main__":
    raise SystemExit(main())
