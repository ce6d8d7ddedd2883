"""Throwaway PostgreSQL and Kafka on 127.0.0.1 for benchmarks, started with the project's scripts."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_servers() -> Iterator[tuple[str, str]]:
    """Yields (SQLAlchemy PostgreSQL URL, Kafka bootstrap); stops both afterwards."""
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    base.chmod(0o755)  # PostgreSQL runs as its own user (pg.sh), which must reach its data directory
    pg_dir, kafka_dir = base / "pg", base / "kafka"
    pg_dir.mkdir()
    kafka_dir.mkdir()
    pg = (
        subprocess.run(
            ["bash", str(ROOT / "deploy/postgres/pg.sh"), "start", str(pg_dir), str(free_port())],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    try:
        bootstrap = (
            subprocess.run(
                ["bash", str(ROOT / "deploy/kafka/kafka.sh"), "start", str(kafka_dir), str(free_port())],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        try:
            yield pg.replace("postgresql://", "postgresql+psycopg://", 1), bootstrap
        finally:
            subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "stop", str(kafka_dir)], check=False)
    finally:
        subprocess.run(["bash", str(ROOT / "deploy/postgres/pg.sh"), "stop", str(pg_dir)], check=False)
