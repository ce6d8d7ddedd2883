"""Helpers of the operations tests: scraping /metrics, capturing the JSON logs, polling."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from shared.logs import JsonFormatter, RedactingFilter

T = TypeVar("T")
Samples = list[tuple[str, dict[str, str], float]]


def scrape(client: TestClient) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def values(samples: Samples, name: str, **labels: str) -> list[float]:
    return [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]


def by_label(samples: Samples, name: str, key: str, **labels: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == x for k, x in labels.items()):
            out[lab[key]] = out.get(lab[key], 0.0) + v
    return out


def eventually(fn: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60.0, every: float = 0.25) -> T:
    """Call `fn` until `ok(result)`; the last result when time runs out (the caller asserts)."""
    deadline = time.monotonic() + timeout
    result = fn()
    while not ok(result) and time.monotonic() < deadline:
        time.sleep(every)
        result = fn()
    return result


class JsonLines(logging.Handler):
    """Keeps every record as the JSON line the services' handler would write (redaction included)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.formatter_ = JsonFormatter("test")
        self.addFilter(RedactingFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.formatter_.format(record))

    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@contextmanager
def json_logs(level: int = logging.INFO) -> Iterator[JsonLines]:
    root = logging.getLogger()
    handler = JsonLines()
    handler.setLevel(level)
    old_level = root.level
    kafka = logging.getLogger("kafka")
    old_kafka = kafka.level
    root.addHandler(handler)
    root.setLevel(level)
    kafka.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        kafka.setLevel(old_kafka)
