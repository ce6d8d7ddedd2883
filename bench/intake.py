"""Intake benchmark: bulk import and single POST /records, each beside the raw rate of the same store.

    python -m bench.intake [--records 200000] [--transport sql|kafka] [--db sqlite|postgres]
                           [--pg-url URL] [--posts 20000] [--clients 16] [--max-seconds 300]
                           [--chunk-lines N] [--log-level WARNING] [--no-http-bulk] [--no-2x]
                           [--out bench-results]

What it measures, all in one run on one machine (loopback only, every loop bounded):

1. Bulk import of `--records` generated records through the real service layer (`BulkImport`, as
   `python -m services.intake import` drives it), in a fresh process and a fresh database; then a
   bare DBAPI `executemany` of the same event rows (those intake wrote, copied into a table with
   the same columns and unique keys, one transaction per chunk of the same size) into the same
   database: the store's raw rate. Memory: peak RSS (`resource.getrusage`) of that process, and of
   a second process importing a file twice as large: it should not grow with the file.
2. The same file through HTTP `POST /records/bulk` (uvicorn, 1 worker, in a subprocess), streamed;
   the server's peak RSS (VmHWM) is reported too.
3. Single `POST /records` under concurrent load: uvicorn with 1 worker in a subprocess, `--clients`
   threads with keep-alive HTTP clients (`--client raw`: a minimal socket client whose own CPU is
   small; `--client httpx`), `--posts` requests in all (each thread posts whole
   families of records in order, so every record is valid when it arrives); records/s, p50, p99.
   Raw baseline: a bare DBAPI insert of one event row per transaction (commit each) into the same
   database, as many rows as were posted.

Records come from a deterministic generator in this file (children with underretninger, cases,
assignments, investigations, measures, follow-ups, closings), interleaved across children the way an
export sorted by time would be. `--transport kafka` makes intake write an outbox row beside every
event (the relay is not run: publishing is the backbone benchmark's business). `--db postgres`
starts a throwaway PostgreSQL (deploy/postgres/pg.sh) unless `--pg-url` names one.
Timing on a shared 2-core machine is noisy: the load average before and after each measurement is
recorded beside it (other work on the same cores shows up there); read the ratios.
Writes bench-results/intake.json and intake.md (intake-postgres-kafka.* etc. for another store or
transport) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MUNICIPALITY = "751"
SECRET = "bench-intake-jwt-secret-0123456789abcdef-0123456789"
PSEUDONYM_KEY = "bench-pseudonym-key-0123456789abcdef-xyz"
MASTER_KEY = "bench-master-key-0123456789abcdef-0123456"
INTERLEAVE = 64  # children whose records are interleaved (an export sorted by time, roughly)
BASE = datetime(2023, 1, 2, 8, 0, tzinfo=UTC)
PLACEMENT_TYPES = ("plejefamilie", "opholdssted", "netvaerksanbringelse", "doegninstitution")
HOME_TYPES = ("raadgivning", "stoette_i_hjemmet", "familiebehandling")
NOTIFIERS = ("1", "2", "3", "4", "5", "6", "9", "10", "12", "13")
REASONS = ("barn_skole", "barn_adfaerd", "omsorgssvigt", "foraeldre_misbrug", "vold_konflikt", "andet")
SEVERITIES = ("akut", "alvorlig", "bekymring", "ukendt")


# --- the generator ---------------------------------------------------------------------------------


def cpr_of(i: int) -> str:
    """A valid CPR number, distinct for every i < 4.7 million: born 2010-2023 (digit 7 = 4)."""
    serial, rest = i % 1000, i // 1000
    day, month, year = 1 + rest % 28, 1 + (rest // 28) % 12, 10 + (rest // 336) % 14
    return f"{day:02d}{month:02d}{year:02d}4{serial:03d}"


def _at(moment: datetime) -> str:
    offset = timedelta(hours=2) if 4 <= moment.month <= 9 else timedelta(hours=1)
    return moment.astimezone(timezone(offset)).isoformat()


def family(i: int, tag: str) -> list[dict[str, Any]]:
    """The records of child i, in the order they happened (15 records, all 16 types but one)."""
    u, s, m = f"U-{tag}-{i}", f"S-{tag}-{i}", f"M-{tag}-{i}"
    team = f"team-{i % 7}"
    start = BASE + timedelta(days=i % 500, minutes=(i * 7) % 600)
    placement = i % 2 == 0
    mtype = PLACEMENT_TYPES[i % 4] if placement else HOME_TYPES[i % 3]

    def rec(step: int, kind: str, days: float, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "record_id": f"{tag}-{i}-{step}",
            "type": kind,
            "municipality": MUNICIPALITY,
            "occurred_at": _at(start + timedelta(days=days)),
            "data": data,
        }

    out = [
        rec(
            1,
            "UnderretningReceived",
            0,
            {
                "underretning_id": u,
                "child": {"cpr": cpr_of(i)},
                "notifier": NOTIFIERS[i % len(NOTIFIERS)],
                "reasons": [REASONS[i % 6], REASONS[(i // 6) % 6]],
                "severity": SEVERITIES[i % 4],
                "team_id": team,
            },
        ),
        rec(2, "ReceiptSent", 1, {"underretning_id": u}),
        rec(
            3,
            "UnderretningAssessed",
            1.1,
            {"underretning_id": u, "acute": i % 9 == 0, "decision": "boernefaglig_undersoegelse"},
        ),
        rec(
            4,
            "CaseOpened",
            2,
            {"case_id": s, "child": {"cpr": cpr_of(i)}, "team_id": team, "underretning_id": u},
        ),
        rec(5, "CaseworkerAssigned", 2.1, {"case_id": s, "caseworker_id": f"sb-{i % 40}"}),
        rec(6, "InvestigationStarted", 3, {"case_id": s, "kind": "boernefaglig_undersoegelse"}),
        rec(7, "ChildConversationHeld", 5, {"case_id": s, "underretning_id": u}),
        rec(8, "InvestigationCompleted", 40, {"case_id": s, "kind": "boernefaglig_undersoegelse"}),
        rec(9, "ChildPlanMade", 45, {"case_id": s}),
        rec(
            10,
            "MeasureStarted",
            50,
            {
                "case_id": s,
                "measure_id": m,
                "measure_type": mtype,
                "monthly_cost_dkk": float(10_000 + i % 50_000),
            },
        ),
        rec(11, "FollowUpHeld", 140, {"case_id": s, "measure_id": m}),
        (
            rec(12, "SupervisionVisitHeld", 150, {"case_id": s, "measure_id": m})
            if placement
            else rec(12, "WaitlistEntered", 150, {"case_id": s, "offer_type": "psykolog"})
        ),
        rec(13, "CaseworkerAssigned", 160, {"case_id": s, "caseworker_id": f"sb-{(i + 1) % 40}"}),
        rec(14, "MeasureEnded", 300, {"case_id": s, "measure_id": m, "reason": "formaal_opnaaet"}),
        rec(15, "CaseClosed", 301, {"case_id": s}),
    ]
    return out


FAMILY = 15


def generate(n: int, tag: str = "b") -> Iterator[dict[str, Any]]:
    """Exactly n valid records: groups of INTERLEAVE children, step by step across the group."""
    emitted, first = 0, 0
    while emitted < n:
        group = [family(i, tag) for i in range(first, first + INTERLEAVE)]
        for step in range(FAMILY):
            for recs in group:
                if emitted >= n:
                    return
                yield recs[step]
                emitted += 1
        first += INTERLEAVE


def families_for(client: int, clients: int, tag: str) -> Iterator[list[dict[str, Any]]]:
    """The families one load-test client posts (children client, client+clients, ...)."""
    i = client
    while True:
        yield family(i, tag)
        i += clients


def write_file(path: Path, n: int, tag: str) -> int:
    size = 0
    with path.open("wb") as f:
        for record in generate(n, tag):
            line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
            f.write(line)
            size += len(line)
    return size


# --- databases ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Databases:
    """Fresh databases for each measurement: SQLite files in a temp dir, or PostgreSQL databases."""

    def __init__(self, kind: str, base: Path, pg_url: str | None) -> None:
        self.kind, self.base, self.pg_url = kind, base, pg_url

    def fresh(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.base / (name + '.db')}"
        from sqlalchemy import text

        from shared.db import make_engine

        assert self.pg_url is not None
        db = f"bench_{name}_{uuid.uuid4().hex[:6]}"
        admin = make_engine(self.pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {db}"))
        admin.dispose()
        return self.pg_url.rsplit("/", 1)[0] + "/" + db


@contextmanager
def postgres(base: Path) -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1 (deploy/postgres/pg.sh), stopped afterwards."""
    home = Path(tempfile.mkdtemp(prefix="bench-intake-pg-"))
    home.chmod(0o755)  # the server may run as another user (pg.sh as root): it must reach its data dir
    data = home / "pg"
    script = str(ROOT / "deploy/postgres/pg.sh")
    out = subprocess.run(
        ["bash", script, "start", str(data), str(free_port())], check=True, capture_output=True, text=True
    )
    url = out.stdout.strip().splitlines()[-1].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield url
    finally:
        subprocess.run(["bash", script, "stop", str(data)], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def service_env(
    url: str, transport: str, log_level: str, port: int | None = None, chunk_lines: int | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ENVIRONMENT": "development",
            "EVENT_STORE_URL": url,
            "TRANSPORT": transport,
            "RUN_RELAY": "false",  # the relay to Kafka is the backbone benchmark's business
            "AUTH_JWT_SECRET": SECRET,
            "CPR_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "CPR_MASTER_KEY": MASTER_KEY,
            "AUTO_CREATE_TABLES": "true",
            "LOG_LEVEL": log_level,
            "HOST": "127.0.0.1",
            "PYTHONPATH": str(ROOT),
        }
    )
    if port is not None:
        env["PORT"] = str(port)
    if chunk_lines:
        env["BULK_CHUNK_LINES"] = str(chunk_lines)
    return env


# --- raw baselines (bare DBAPI on the same database) ------------------------------------------------

RAW_COLUMNS = (
    "event_id, stream_id, version, type, schema_version, municipality, record_id, occurred_at,"
    " recorded_at, correlation_id, content_hash, data"
)


def _raw_table(engine: Any) -> str:
    """A table shaped like `events` (same columns and unique keys) for the bare inserts."""
    from sqlalchemy import Column, MetaData, Table, UniqueConstraint

    from shared.eventstore.schema import events

    name = f"bench_raw_{uuid.uuid4().hex[:6]}"
    cols = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in events.columns]
    table = Table(
        name,
        MetaData(),
        *cols,
        UniqueConstraint("event_id", name=f"{name}_eid"),
        UniqueConstraint("stream_id", "version", name=f"{name}_sv"),
        UniqueConstraint("municipality", "record_id", name=f"{name}_mr"),
    )
    table.create(engine)
    return name


def _insert_sql(engine: Any, table: str) -> str:
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    return f"INSERT INTO {table} ({RAW_COLUMNS}) VALUES ({', '.join([mark] * 12)})"


def _copied_rows(raw: Any, after: int, limit: int) -> list[tuple[Any, ...]]:
    """Event rows as intake wrote them (position first), to copy into the bare table."""
    mark = "?" if "sqlite" in type(raw).__module__ else "%s"
    cur = raw.cursor()
    cur.execute(
        f"SELECT position, {RAW_COLUMNS} FROM events WHERE position > {mark}"
        f" ORDER BY position LIMIT {int(limit)}",
        (after,),
    )
    rows = cur.fetchall()
    cur.close()
    return rows


def raw_bulk(url: str, n: int, chunk: int) -> float:
    """Seconds for a bare executemany of n event rows, one transaction per `chunk` rows."""
    from shared.db import make_engine

    engine = make_engine(url)
    table = _raw_table(engine)
    sql = _insert_sql(engine, table)
    sqlite = engine.dialect.name == "sqlite"
    raw = engine.raw_connection()
    spent, done, after = 0.0, 0, 0
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        while done < n:
            rows = _copied_rows(dbapi, after, min(chunk, n - done))
            if not rows:
                break
            after = rows[-1][0]
            params = [tuple(r[1:]) for r in rows]  # the rows intake wrote, into a table of their own
            cur = dbapi.cursor()
            t0 = time.perf_counter()
            if sqlite:
                cur.execute("BEGIN IMMEDIATE")
            cur.executemany(sql, params)
            cur.execute("COMMIT") if sqlite else dbapi.commit()
            spent += time.perf_counter() - t0
            cur.close()
            done += len(rows)
    finally:
        raw.close()
        engine.dispose()
    if done < n:
        raise RuntimeError(f"raw baseline: only {done} event rows to copy, wanted {n}")
    return spent


def raw_single(url: str, n: int) -> tuple[float, list[float]]:
    """Seconds and per-row latencies for n bare single-row inserts, each in its own transaction."""
    from shared.db import make_engine

    engine = make_engine(url)
    table = _raw_table(engine)
    sql = _insert_sql(engine, table)
    sqlite = engine.dialect.name == "sqlite"
    raw = engine.raw_connection()
    latencies: list[float] = []
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        rows = _copied_rows(dbapi, 0, n)
        cur = dbapi.cursor()
        t_all = time.perf_counter()
        for r in rows:
            t0 = time.perf_counter()
            if sqlite:
                cur.execute("BEGIN IMMEDIATE")
            cur.execute(sql, tuple(r[1:]))
            cur.execute("COMMIT") if sqlite else dbapi.commit()
            latencies.append(time.perf_counter() - t0)
        spent = time.perf_counter() - t_all
        cur.close()
    finally:
        raw.close()
        engine.dispose()
    return spent, latencies


# --- 1. bulk import through the service layer (run in a fresh process) --------------------------------


def peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker_bulk(args: argparse.Namespace) -> None:
    """Child process: import `args.file` through BulkImport into `args.url`; optionally the raw rate."""
    from services.intake.adapters.schema import create_tables
    from services.intake.bulk import BulkImport, LineSplitter
    from services.intake.config import Settings
    from services.intake.service import IntakeService
    from shared.db import make_engine

    settings = Settings(
        event_store_url=args.url,
        transport=args.transport,
        run_relay=False,
        auth_jwt_secret=SECRET,
        cpr_pseudonym_key=PSEUDONYM_KEY,
        cpr_master_key=MASTER_KEY,
        **({"bulk_chunk_lines": args.chunk_lines} if args.chunk_lines else {}),
    )
    engine = make_engine(settings.event_store_url)
    create_tables(engine)
    service = IntakeService(engine, settings)
    from shared.serving import long_lived_frozen

    rss_before = peak_rss_kib()
    frozen = long_lived_frozen()  # as `python -m services.intake import` does
    frozen.__enter__()
    importer = BulkImport(service, MUNICIPALITY)
    splitter = LineSplitter(settings.max_line_bytes)
    t0 = time.perf_counter()
    with open(args.file, "rb") as src:
        while block := src.read(1 << 20):
            importer.feed_lines(splitter.feed(block))
    importer.feed_lines(splitter.end())
    summary = importer.finish()
    results = sum(1 for _ in importer.results())
    seconds = time.perf_counter() - t0
    frozen.__exit__(None, None, None)
    importer.close()
    engine.dispose()
    out: dict[str, Any] = {
        "lines": summary.lines,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "duplicate": summary.duplicate,
        "results": results,
        "seconds": seconds,
        "peak_rss_kib_before": rss_before,
        "peak_rss_kib": peak_rss_kib(),
        "chunk_lines": importer.chunk_lines,
    }
    if args.raw:
        out["raw_seconds"] = raw_bulk(args.url, summary.accepted, importer.chunk_lines)
    print(json.dumps(out))


def run_worker_bulk(
    file: Path, url: str, transport: str, raw: bool, chunk_lines: int | None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.intake",
        "--worker",
        "bulk",
        "--file",
        str(file),
        "--url",
        url,
        "--transport",
        transport,
    ]
    if raw:
        cmd.append("--raw")
    if chunk_lines:
        cmd += ["--chunk-lines", str(chunk_lines)]
    done = subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=3600,
        env=service_env(url, transport, "WARNING", chunk_lines=chunk_lines),
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the HTTP server -----------------------------------------------------------------------------------


@contextmanager
def server(
    url: str, transport: str, log_level: str, base: Path, chunk_lines: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m services.intake serve` (uvicorn, 1 worker) on a free loopback port."""
    import httpx

    port = free_port()
    log_file = (base / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "serve"],
        cwd=ROOT,
        env=service_env(url, transport, log_level, port, chunk_lines),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"intake server exited ({proc.returncode}); see {log_file.name}")
            try:
                if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("intake server did not come up within 60 s")
            time.sleep(0.1)
        yield base_url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log_file.close()


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def token() -> str:
    from shared.mint_token import mint_token

    return mint_token(role="system", municipality=MUNICIPALITY, secret=SECRET, ttl_minutes=600)


# --- 2. bulk over HTTP -----------------------------------------------------------------------------------


def http_bulk(
    file: Path, url: str, transport: str, log_level: str, base: Path, chunk_lines: int | None
) -> dict[str, Any]:
    import httpx

    def body() -> Iterator[bytes]:
        with file.open("rb") as f:
            while block := f.read(256 * 1024):
                yield block

    with server(url, transport, log_level, base, chunk_lines) as (base_url, proc):
        rss_idle = vm_hwm_kib(proc.pid)
        headers = {"Authorization": f"Bearer {token()}", "Content-Type": "application/x-ndjson"}
        t0 = time.perf_counter()
        head = b""
        size = 0
        with (
            httpx.Client(timeout=httpx.Timeout(3600.0)) as client,
            client.stream("POST", base_url + "/records/bulk", content=body(), headers=headers) as resp,
        ):
            if resp.status_code != 200:
                raise RuntimeError(f"bulk over HTTP: {resp.status_code} {resp.read()[:500]!r}")
            for block in resp.iter_bytes():
                if len(head) < 4096:
                    head += block[: 4096 - len(head)]
                size += len(block)
        seconds = time.perf_counter() - t0
        counts = json.loads(head.split(b', "results"', 1)[0] + b"}")
        return {
            **counts,
            "seconds": seconds,
            "response_bytes": size,
            "server_peak_rss_kib": vm_hwm_kib(proc.pid),
            "server_rss_kib_idle": rss_idle,
        }


# --- 3. single POST /records under concurrent load ---------------------------------------------------------


class RawClient:
    """A minimal keep-alive HTTP/1.1 client over one socket: the load generator's own CPU stays
    small (httpx spends several times what the server does per request, and on a 2-core machine
    that, not the server, would set the pace). A connection idle for a while (the server closes
    those: uvicorn after 5 s) is opened again before the next request."""

    IDLE_SECONDS = 2.0

    def __init__(self, base_url: str, authorization: str) -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.sock: socket.socket | None = None
        self.last_used = 0.0
        self.buf = b""

    def _connect(self) -> socket.socket:
        self.close()
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        sock = self.sock
        if sock is None or time.monotonic() - self.last_used > self.IDLE_SECONDS:
            sock = self._connect()
        sock.sendall(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\n"
            + self.head
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._recv(sock)
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("RawClient: chunked responses are not expected here")
        while len(self.buf) < length:
            self._recv(sock)
        answer, self.buf = self.buf[:length], self.buf[length:]
        self.last_used = time.monotonic()
        return status, answer

    def _recv(self, sock: socket.socket) -> None:
        block = sock.recv(65536)
        if not block:
            raise ConnectionError("RawClient: the server closed the connection")
        self.buf += block

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def load_test(
    url: str,
    transport: str,
    log_level: str,
    base: Path,
    posts: int,
    clients: int,
    max_seconds: float,
    client_kind: str = "raw",
) -> dict[str, Any]:
    import httpx

    authorization = f"Bearer {token()}"
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: list[dict[int, int]] = [{} for _ in range(clients)]
    lock = threading.Lock()
    budget = {"left": posts}
    errors: list[BaseException] = []
    with server(url, transport, log_level, base) as (base_url, proc):
        start = threading.Barrier(clients + 1)
        stop_at: list[float] = [float("inf")]  # set just after the start; no client may stop before

        def take() -> bool:
            with lock:
                if budget["left"] <= 0 or time.perf_counter() > stop_at[0]:
                    return False
                budget["left"] -= 1
                return True

        def client(n: int) -> None:
            try:
                if client_kind == "raw":
                    raw = RawClient(base_url, authorization)
                    post = lambda body: raw.post("/records", body)[0]  # noqa: E731
                    close = raw.close
                else:
                    http = httpx.Client(
                        base_url=base_url,
                        headers={"Authorization": authorization, "Content-Type": "application/json"},
                        timeout=30.0,
                    )
                    post = lambda body: http.post("/records", content=body).status_code  # noqa: E731
                    close = http.close
                try:
                    families = families_for(n, clients, "l")
                    for rec in next(families):  # warm-up: one family, not timed
                        post(json.dumps(rec).encode())
                    start.wait()
                    for fam in families:
                        for rec in fam:
                            if not take():
                                return
                            body = json.dumps(rec).encode()
                            t0 = time.perf_counter()
                            code = post(body)
                            latencies[n].append(time.perf_counter() - t0)
                            statuses[n][code] = statuses[n].get(code, 0) + 1
                finally:
                    close()
            except BaseException as exc:  # reported below
                errors.append(exc)
                start.abort()

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
        for t in threads:
            t.start()
        warmed = time.monotonic() + 120
        while start.n_waiting < clients and not errors and time.monotonic() < warmed:
            time.sleep(0.01)  # every client done with its warm-up: the metrics before the timed part
        before = group_commits(base_url)
        start.wait()
        t0 = time.perf_counter()
        stop_at[0] = t0 + max_seconds
        for t in threads:
            t.join(max_seconds + 60)
        seconds = time.perf_counter() - t0
        server_rss = vm_hwm_kib(proc.pid)
        after = group_commits(base_url)
    if errors:
        raise RuntimeError(f"load test client failed: {errors[0]!r}")
    all_lat = sorted(x for lat in latencies for x in lat)
    merged: dict[int, int] = {}
    for s in statuses:
        for code, k in s.items():
            merged[code] = merged.get(code, 0) + k
    return {
        "requests": len(all_lat),
        "accepted": merged.get(201, 0),
        "statuses": {str(k): v for k, v in sorted(merged.items())},
        "seconds": seconds,
        "p50_ms": 1000 * percentile(all_lat, 0.50),
        "p99_ms": 1000 * percentile(all_lat, 0.99),
        "max_ms": 1000 * all_lat[-1] if all_lat else None,
        "clients": clients,
        "client": client_kind,
        "clients_that_posted": sum(1 for lat in latencies if lat),
        "server_peak_rss_kib": server_rss,
        "transactions": after[1] - before[1],
        "records_per_transaction": round((after[0] - before[0]) / (after[1] - before[1]), 2)
        if after[1] > before[1]
        else None,
    }


def group_commits(base_url: str) -> tuple[float, float]:
    """The server's `intake_group_commit_records` (sum, count): records and committed transactions
    of single POSTs so far."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    found = {"intake_group_commit_records_sum": 0.0, "intake_group_commit_records_count": 0.0}
    for family in text_string_to_metric_families(httpx.get(base_url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] = sample.value
    return found["intake_group_commit_records_sum"], found["intake_group_commit_records_count"]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


# --- the report ------------------------------------------------------------------------------------------


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _rate(n: float, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def run(args: argparse.Namespace, base: Path, dbs: Databases) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    if args.only != "single":
        rows += run_bulk(args, base, dbs)
    if args.only != "bulk":
        rows.append(run_single(args, base, dbs))
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "store": args.db,
        "transport": args.transport,
        "log_level": args.log_level,
        "targets": {"single_records_per_s": 1000, "single_p99_ms": 50, "bulk_records_per_s": 50000},
        "rows": rows,
    }


def run_bulk(args: argparse.Namespace, base: Path, dbs: Databases) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = args.records
    t0 = time.perf_counter()
    file1, file2 = base / "import-1x.ndjson", base / "import-2x.ndjson"
    size1 = write_file(file1, n, "b")
    took = time.perf_counter() - t0
    print(f"bench.intake: generated {n:,} records ({size1 / 2**20:.1f} MiB) in {took:.1f} s", file=sys.stderr)

    # 1. bulk through the service layer, raw executemany beside it
    url = dbs.fresh("bulk1x")
    la = load_avg()
    r1 = run_worker_bulk(file1, url, args.transport, True, args.chunk_lines)
    print(f"bench.intake: service bulk {r1}", file=sys.stderr)
    if r1["accepted"] != n:
        raise RuntimeError(f"bulk import accepted {r1['accepted']} of {n}")
    rows.append(
        {
            "benchmark": "bulk import, service layer (BulkImport)",
            "records": n,
            "records_per_s": _rate(n, r1["seconds"]),
            "baseline": f"bare executemany of {n} event rows, {r1['chunk_lines']} per transaction",
            "baseline_per_s": _rate(n, r1["raw_seconds"]),
            "ratio": round(r1["raw_seconds"] / r1["seconds"], 3),
            "peak_rss_mib": round(r1["peak_rss_kib"] / 1024, 1),
            "input_mib": round(size1 / 2**20, 1),
            "load_avg": [la, load_avg()],
        }
    )

    # memory: the same import of a file twice as large, in a fresh process
    if not args.no_2x:
        size2 = write_file(file2, 2 * n, "c")
        la = load_avg()
        r2 = run_worker_bulk(file2, dbs.fresh("bulk2x"), args.transport, False, args.chunk_lines)
        print(f"bench.intake: service bulk 2x {r2}", file=sys.stderr)
        if r2["accepted"] != 2 * n:
            raise RuntimeError(f"2x bulk import accepted {r2['accepted']} of {2 * n}")
        rows.append(
            {
                "benchmark": "bulk import, service layer, file 2x as large (memory check)",
                "records": 2 * n,
                "records_per_s": _rate(2 * n, r2["seconds"]),
                "peak_rss_mib": round(r2["peak_rss_kib"] / 1024, 1),
                "input_mib": round(size2 / 2**20, 1),
                "rss_growth_mib_vs_1x": round((r2["peak_rss_kib"] - r1["peak_rss_kib"]) / 1024, 1),
                "load_avg": [la, load_avg()],
            }
        )
        file2.unlink()

    # 2. the same file over HTTP
    if not args.no_http_bulk:
        url = dbs.fresh("http")
        la = load_avg()
        h = http_bulk(file1, url, args.transport, args.log_level, base, args.chunk_lines)
        print(f"bench.intake: HTTP bulk {h}", file=sys.stderr)
        if h["accepted"] != n:
            raise RuntimeError(f"bulk over HTTP accepted {h['accepted']} of {n}")
        raw_s = raw_bulk(url, n, r1["chunk_lines"])
        rows.append(
            {
                "benchmark": "bulk import, HTTP POST /records/bulk (uvicorn, 1 worker)",
                "records": n,
                "records_per_s": _rate(n, h["seconds"]),
                "baseline": f"bare executemany of {n} event rows, {r1['chunk_lines']} per transaction",
                "baseline_per_s": _rate(n, raw_s),
                "ratio": round(raw_s / h["seconds"], 3),
                "peak_rss_mib": round(h["server_peak_rss_kib"] / 1024, 1),
                "input_mib": round(size1 / 2**20, 1),
                "load_avg": [la, load_avg()],
            }
        )

    return rows


def run_single(args: argparse.Namespace, base: Path, dbs: Databases) -> dict[str, Any]:
    """3. single POST /records under concurrent load"""
    url = dbs.fresh("single")
    la = load_avg()
    s = load_test(
        url, args.transport, args.log_level, base, args.posts, args.clients, args.max_seconds, args.client
    )
    print(f"bench.intake: single POST {s}", file=sys.stderr)
    raw_s, raw_lat = raw_single(url, min(s["accepted"], args.posts))
    raw_lat.sort()
    raw_p50, raw_p99 = 1000 * percentile(raw_lat, 0.5), 1000 * percentile(raw_lat, 0.99)
    return {
        "benchmark": f"single POST /records, {args.clients} concurrent clients ({args.client} HTTP client;"
        " uvicorn, 1 worker)",
        "records": s["accepted"],
        "records_per_s": _rate(s["accepted"], s["seconds"]),
        "p50_ms": round(s["p50_ms"], 2),
        "p99_ms": round(s["p99_ms"], 2),
        "baseline": f"bare single-row insert, one transaction per row (p50 {raw_p50:.3f} ms,"
        f" p99 {raw_p99:.3f} ms)",
        "baseline_per_s": _rate(len(raw_lat), raw_s),
        "baseline_p50_ms": round(raw_p50, 3),
        "baseline_p99_ms": round(raw_p99, 3),
        "ratio": round((s["accepted"] / s["seconds"]) / (len(raw_lat) / raw_s), 3) if raw_s else None,
        "peak_rss_mib": round(s["server_peak_rss_kib"] / 1024, 1),
        "statuses": s["statuses"],
        "clients_that_posted": s["clients_that_posted"],
        "transactions": s["transactions"],
        "records_per_transaction": s["records_per_transaction"],
        "load_avg": [la, load_avg()],
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"Store: {doc['store']}, transport: {doc['transport']}, {doc['machine']['cpus']} CPUs, "
        f"Python {doc['machine']['python']}, server log level {doc['log_level']}.",
        "",
        "| benchmark | records | records/s | p50 ms | p99 ms | peak RSS MiB | raw baseline | raw/s | ratio"
        " | load avg before, after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['benchmark']} | {r['records']} | {r['records_per_s']} | {r.get('p50_ms', '')} |"
            f" {r.get('p99_ms', '')} | {r.get('peak_rss_mib', '')} | {r.get('baseline', '')} |"
            f" {r.get('baseline_per_s', '')} | {r.get('ratio', '')} |"
            f" {', '.join(str(x) for x in r.get('load_avg', []))} |"
        )
    for r in doc["rows"]:
        if r.get("records_per_transaction") is not None:
            lines.append(
                f"\n{r['benchmark']}: {r['transactions']:.0f} transactions,"
                f" {r['records_per_transaction']} records per transaction (group commit)."
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000, help="records of the bulk import")
    ap.add_argument("--transport", choices=("sql", "kafka"), default="sql")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg-url", help="an existing PostgreSQL server (else one is started for --db postgres)")
    ap.add_argument("--posts", type=int, default=20_000, help="single POST requests in all")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients of the single POST test")
    ap.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="HTTP client of the single POST load: a minimal keep-alive socket client (default; its own"
        " CPU is small) or httpx (several times the server's CPU per request: on 2 cores it sets the pace)",
    )
    ap.add_argument("--max-seconds", type=float, default=300.0, help="time bound of the single POST test")
    ap.add_argument("--log-level", default="WARNING", help="the server's LOG_LEVEL")
    ap.add_argument(
        "--chunk-lines",
        type=int,
        default=None,
        help="BULK_CHUNK_LINES of the import (default: the setting's)",
    )
    ap.add_argument("--only", choices=("bulk", "single"), help="run only the bulk or the single POST part")
    ap.add_argument("--no-http-bulk", action="store_true")
    ap.add_argument("--no-2x", action="store_true", help="skip the 2x file (memory check)")
    ap.add_argument("--out", default="bench-results")
    # internal: the bulk worker process
    ap.add_argument("--worker", choices=("bulk",), help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "bulk":
        worker_bulk(args)
        return
    base = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    try:
        if args.db == "postgres" and not args.pg_url:
            with postgres(base) as pg_url:
                doc = run(args, base, Databases("postgres", base, pg_url))
        else:
            doc = run(args, base, Databases(args.db, base, args.pg_url))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = (
        "intake" if (args.db, args.transport) == ("sqlite", "sql") else f"intake-{args.db}-{args.transport}"
    )
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    (out / f"{stem}.md").write_text("# Intake benchmark\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
