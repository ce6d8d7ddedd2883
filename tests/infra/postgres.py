"""A real PostgreSQL server for tests, run by deploy/postgres/pg.sh."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.infra.errors import REPO_ROOT, InfraError, log_tail, run_script
from tests.infra.ports import free_port, wait_for_port

SCRIPT = REPO_ROOT / "deploy" / "postgres" / "pg.sh"
DEFAULT_DB = "underretning"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def sqlalchemy_url(port: int, database: str = DEFAULT_DB) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"


@dataclass
class PostgresServer:
    """One PostgreSQL server on 127.0.0.1:port with its cluster in data_dir (trust auth, user postgres)."""

    data_dir: Path
    port: int
    owns_dir: bool = False
    start_seconds: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path | None = None, port: int | None = None) -> PostgresServer:
        owns = data_dir is None
        # under /tmp, not pytest's tmp_path: as root the server runs as `pgtest`, which must reach the dir
        directory = Path(tempfile.mkdtemp(prefix="pg-test-")) if data_dir is None else Path(data_dir)
        server = cls(directory, port or free_port(), owns_dir=owns)
        try:
            server.up()
        except BaseException:
            if owns:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        return server

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_file, lines)

    def url(self, database: str = DEFAULT_DB) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return sqlalchemy_url(self.port, database)

    def conninfo(self, database: str = DEFAULT_DB) -> str:
        """libpq URL for psycopg.connect."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except (OSError, IndexError):
            return True

    def up(self) -> None:
        """Start (or restart after stop/kill: crash recovery) on the same port and data dir."""
        t0 = time.monotonic()
        run_script([str(SCRIPT), "start", str(self.data_dir), str(self.port)], timeout=120, log=self.log_file)
        self.start_seconds.append(time.monotonic() - t0)

    restart = up

    def stop(self) -> None:
        run_script([str(SCRIPT), "stop", str(self.data_dir)], timeout=90, log=self.log_file)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its backends (a crash); the port is closed when this returns."""
        run_script([str(SCRIPT), "kill", str(self.data_dir)], timeout=30, log=self.log_file)
        if not wait_for_port(self.port, open_=False, timeout=10):
            raise InfraError(f"port {self.port} still open after killing PostgreSQL\n{self.log_tail()}")

    def ensure_running(self) -> bool:
        if self.is_running():
            return False
        self.up()
        return True

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (a unique name unless given); returns its SQLAlchemy URL."""
        db = name or f"test_{uuid.uuid4().hex[:16]}"
        if not _NAME.match(db):
            raise ValueError(f"invalid database name {db!r}")
        try:
            with psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        except psycopg.Error as exc:
            raise InfraError(f"CREATE DATABASE {db} failed: {exc}\n{self.log_tail()}") from exc
        return self.url(db)

    def drop_database(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        with psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.owns_dir and not os.environ.get("KEEP_INFRA_DATA"):
                shutil.rmtree(self.data_dir, ignore_errors=True)
