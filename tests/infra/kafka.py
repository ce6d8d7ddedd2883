"""A real Apache Kafka broker for tests (deploy/kafka/kafka.sh); topics via kafka-python's admin client."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.infra.errors import REPO_ROOT, InfraError, log_tail, run_script
from tests.infra.ports import free_port, wait_for_port

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
START_TIMEOUT = float(os.environ.get("KAFKA_START_TIMEOUT", "120"))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return True
    return state != "Z"


@dataclass
class KafkaBroker:
    """One single-node KRaft broker on 127.0.0.1:port with its data in data_dir."""

    data_dir: Path
    port: int
    owns_dir: bool = False
    start_seconds: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path | None = None, port: int | None = None) -> KafkaBroker:
        """Start a broker (a temporary data dir and a free port unless given); InfraError with the log tail
        when it does not come up."""
        owns = data_dir is None
        directory = Path(tempfile.mkdtemp(prefix="kafka-test-")) if data_dir is None else Path(data_dir)
        broker = cls(directory, port or free_port(), owns_dir=owns)
        try:
            broker.up()
        except BaseException:
            if owns:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        return broker

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log_file, lines)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.pid
        return pid is not None and _process_alive(pid)

    def up(self) -> None:
        """Start (or restart after stop/kill) on the same port and data dir; waits until it answers."""
        t0 = time.monotonic()
        run_script(
            [str(SCRIPT), "start", str(self.data_dir), str(self.port)],
            timeout=START_TIMEOUT + 60,
            log=self.log_file,
        )
        self.start_seconds.append(time.monotonic() - t0)

    restart = up

    def stop(self) -> None:
        """Clean shutdown (SIGTERM; SIGKILL after 30 s)."""
        run_script([str(SCRIPT), "stop", str(self.data_dir)], timeout=90, log=self.log_file)

    def kill(self) -> None:
        """SIGKILL the broker (a crash); the port is closed when this returns."""
        run_script([str(SCRIPT), "kill", str(self.data_dir)], timeout=30, log=self.log_file)
        if not wait_for_port(self.port, open_=False, timeout=10):
            raise InfraError(f"port {self.port} still open after killing the broker\n{self.log_tail()}")

    def ensure_running(self) -> bool:
        """Start the broker again if it is down; True when it had to."""
        if self.is_running():
            return False
        self.up()
        return True

    def close(self) -> None:
        """Stop it and remove its data dir if it was a temporary one (keep with KEEP_INFRA_DATA=1)."""
        try:
            self.stop()
        finally:
            if self.owns_dir and not os.environ.get("KEEP_INFRA_DATA"):
                shutil.rmtree(self.data_dir, ignore_errors=True)


def unique_topic_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _admin(bootstrap: str) -> KafkaAdminClient:
    from kafka.admin import KafkaAdminClient  # imported late: kafka-python is slow and noisy to import

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-infra", request_timeout_ms=30000)


def create_topic(
    bootstrap: str,
    name: str | None = None,
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
) -> str:
    """Create a topic (a unique name unless given) and wait until every partition has a leader."""
    topic = name or unique_topic_name()
    admin = _admin(bootstrap)
    try:
        admin.create_topics(
            {
                topic: {
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": dict(configs or {}),
                }
            },
            timeout_ms=30000,
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    return topic


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    topics = list(names)
    if not topics:
        return
    admin = _admin(bootstrap)
    try:
        admin.delete_topics(topics, timeout_ms=30000)
    finally:
        admin.close()
