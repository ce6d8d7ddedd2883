"""Runs an outbox relay as its own process, so a test can kill it with SIGKILL mid-batch."""

from __future__ import annotations

import sys

from shared.db import make_engine
from shared.messaging.relay import OutboxRelay

if __name__ == "__main__":
    url, bootstrap, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    OutboxRelay(make_engine(url), bootstrap, batch_size=batch, idle_sleep=0.01).run()
