"""Every log record of the security tests, at DEBUG, is scanned for the test data's CPR numbers and
for every token the tests minted: a CPR or a token in a log fails the test during which it was
logged (records of module fixtures are checked by the next test; the rest when the package ends).

The collecting handler sits on the root logger and sees the raw records, before any redaction a
deployment's log handler would apply: no CPR or token may reach a log call in the first place.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest

from tests.security.support import MINTED, test_cprs

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not hide what was passed
            text = f"{record.msg!r} {record.args!r}"
        parts = [record.name, record.levelname, text]
        parts += [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.lines.append(" ".join(parts))
        self.total += 1

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def leaks(lines: list[str]) -> list[str]:
    """The lines carrying a test CPR (with or without hyphen) or a minted token."""
    needles = [c for cpr in test_cprs() for c in (cpr, f"{cpr[:6]}-{cpr[6:]}")] + sorted(MINTED)
    return [line[:300] for line in lines if any(n in line for n in needles)]


@pytest.fixture(scope="package")
def log_collector() -> Iterator[Collector]:
    root = logging.getLogger()
    collector = Collector()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(old_level)
    assert not leaks(collector.take()), "a CPR number or a token was logged"


@pytest.fixture(autouse=True)
def _no_cpr_or_token_in_logs(log_collector: Collector) -> Iterator[None]:
    yield
    found = leaks(log_collector.take())
    assert not found, "a CPR number or a token was logged:\n" + "\n".join(found[:20])
