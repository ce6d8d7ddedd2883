"""Running a service's app under uvicorn, the same way for the three services (`serve` commands)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI


@contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Everything loaded so far (the frameworks, the app) lives as long as the process: keep it out
    of the garbage collector's full passes (`gc.freeze`). Those otherwise walk it about once a
    second under load, ~40 ms each on this code base, stalling every request in flight (the p99
    of POST /records) and a bulk import (~10% of its time). Undone at the end."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def serve(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    """uvicorn with `app` on host:port until stopped (SIGINT/SIGTERM: a graceful shutdown).

    Logging stays the JSON logging of `shared.logs` (no uvicorn log config), and the one access
    line per request is `RequestContextMiddleware`'s (method, route template, status, duration,
    caller, request and correlation ids): uvicorn's own access log wrote a second line for every
    request, doubling the log volume and saying less. What is loaded at start is frozen out of
    the collector's full passes (`long_lived_frozen`).
    """
    import uvicorn

    with long_lived_frozen():
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            log_config=None,
            access_log=False,
        )
