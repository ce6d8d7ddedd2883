"""Fault injection (issue 7): a steady load of records goes through intake while a seeded chaos loop
SIGKILLs, at random moments, the intake process, the outbox relay, each projector, the Kafka broker and
the PostgreSQL server, and starts them again. Afterwards:

  (a) every acknowledged record is in the event log exactly once, and nothing else is;
  (b) every projection equals a clean replay from the log into a fresh database (full rows compared);
  (c) no consumer is stuck (the restarted workers themselves reach the end of the log) and the
      dead-letter topic and the `dead_letters` tables are empty (nothing is poisoned on purpose here).

Deterministic: FAULT_SEED (default 20261123) drives the record stream and the kill schedule;
FAULT_ROUNDS (default 24) the number of kill-and-restart rounds; FAULT_RATE (default 40) records/s.
Every failure message carries the seed.
The summary line `fault-suite: ...` is printed past pytest's capture (in the CI log without -s).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, MetaData, func, select

from shared.db import make_engine
from shared.eventstore.schema import events as log_events
from shared.eventstore.schema import outbox
from shared.messaging.kafka import ensure_topics
from shared.messaging.schema import dead_letters, processed_events
from shared.migrations import migrate_service
from shared.mint_token import mint_token
from tests.infra import KafkaBroker, PostgresServer, free_port, unique_topic_name, wait_for_port
from tests.infra.errors import REPO_ROOT, log_tail

SEED = int(os.environ.get("FAULT_SEED", "20261123"))
ROUNDS = int(os.environ.get("FAULT_ROUNDS", "24"))
RATE = float(os.environ.get("FAULT_RATE", "40"))  # records per second: a steady load, not a flood
MUNICIPALITY = "751"
SECRET = "fault-suite-secret-long-enough-for-hs256-0123456789"
PROCESSES = ("intake", "relay", "followup", "ledelsesinfo")
# columns that are surrogate keys (autoincrement), not state: a replay numbers rows afresh
SURROGATE = {"id"}


# --- the processes ------------------------------------------------------------------------------


class Proc:
    """One service process (python -m services.X CMD) with its own env and log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, port: int | None):
        self.name, self.args, self.env, self.port = name, args, env, port
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            out.write(f"\n===== start #{self.starts + 1} =====\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", *self.args], env=self.env, cwd=REPO_ROOT, stdout=out, stderr=out
            )
        self.starts += 1
        if self.port is not None and not wait_for_port(self.port, timeout=60):
            raise AssertionError(f"{self.name} did not listen on {self.port}\n{log_tail(self.log)}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.kill()  # SIGKILL
        self.popen.wait(30)
        if self.port is not None:
            wait_for_port(self.port, open_=False, timeout=10)

    def terminate(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


# --- the load -----------------------------------------------------------------------------------


def synth_records(seed: int, out: Path) -> list[tuple[str, bytes]]:
    """A deterministic, valid record stream of one municipality, in source order: (record_id, json)."""
    subprocess.run(
        [
            sys.executable, "-m", "synth", "--seed", str(seed % 100_000), "--years", "1",
            "--municipalities", MUNICIPALITY, "--start", "2025-01-01", "--out", str(out),
            "--scale", "0.5", "--late-share", "0", "--warmup-years", "0", "--quiet",
        ],
        cwd=REPO_ROOT, check=True, timeout=120,
    )  # fmt: skip
    records = []
    for line in out.read_bytes().splitlines():
        if line.strip():
            match = re.search(rb'"record_id":\s*"([^"]+)"', line)
            assert match, line[:200]
            records.append((match.group(1).decode(), line))
    return records


class Load(threading.Thread):
    """Posts the records one by one, in order; a record is retried (same id) until intake answers it."""

    def __init__(self, base_url: str, token: str, records: list[tuple[str, bytes]]) -> None:
        super().__init__(name="fault-load", daemon=True)
        self.base_url, self.records = base_url, records
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.stop = threading.Event()
        self.acknowledged: dict[str, str] = {}  # record_id -> accepted | duplicate
        self.rejected: dict[str, str] = {}
        self.retries = Counter[str]()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
                next_at = time.monotonic()
                for record_id, body in self.records:
                    if self.stop.is_set():
                        return
                    self._post(client, record_id, body)
                    next_at += 1.0 / RATE
                    time.sleep(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _post(self, client: httpx.Client, record_id: str, body: bytes) -> None:
        while True:  # never give up on a record half-way: its fate must be known
            try:
                r = client.post("/records", content=body, headers=self.headers)
            except httpx.HTTPError as exc:
                self.retries[type(exc).__name__] += 1
                time.sleep(0.1)
                continue
            if r.status_code in (200, 201):
                status = r.json()["status"]
                assert status in ("accepted", "duplicate"), r.text
                self.acknowledged[record_id] = status
                return
            if r.status_code >= 500:
                self.retries[str(r.status_code)] += 1
                time.sleep(0.1)
                continue
            self.rejected[record_id] = f"{r.status_code} {r.text[:200]}"
            return


# --- the checks ---------------------------------------------------------------------------------


def table_rows(engine: Engine, metadata: MetaData) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table (surrogate ids left out), sorted: the full state."""
    state: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            cols = [c for c in table.columns if c.name not in SURROGATE]
            rows = conn.execute(select(*cols)).all()
            state[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return state


def diff_states(live: dict[str, list[tuple[Any, ...]]], clean: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    problems = []
    for name in sorted(set(live) | set(clean)):
        a, b = Counter(live.get(name, [])), Counter(clean.get(name, []))
        if a != b:
            extra, missing = a - b, b - a
            problems.append(
                f"{name}: {sum(extra.values())} rows only live, "
                f"{sum(missing.values())} rows only in the replay; "
                f"e.g. live {next(iter(extra), None)!r} / replay {next(iter(missing), None)!r}"
            )
    return problems


def wait_until(
    what: str, check: Callable[[], tuple[bool, str]], timeout: float, context: Callable[[], str] = str
) -> str:
    """Poll `check` until it is done; on timeout fail with its last detail and `context()` (the
    processes' state and log tails, so a CI failure says why)."""
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        try:
            done, detail = check()
        except Exception as exc:  # a server still coming back
            done, detail = False, repr(exc)
        if done:
            return detail
        time.sleep(0.5)
    raise AssertionError(f"seed={SEED}: {what} not reached within {timeout:.0f}s: {detail}\n{context()}")


def dlq_messages(bootstrap: str, topic: str) -> list[str]:
    """What the dead-letter topic holds: one line per message (headers and the start of the value)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert parts, f"dead-letter topic {topic} has no partitions"
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        want = sum(end.values()) - sum(consumer.beginning_offsets(parts).values())
        got: list[str] = []
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for m in batch:
                    heads = {k: v.decode(errors="replace")[:300] for k, v in m.headers or ()}
                    got.append(f"{heads} {m.value[:120]!r}")
        return got + ["(unread)"] * (want - len(got))
    finally:
        consumer.close()


def summary_line(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Printed past pytest's capture, so it is in the CI log whether the test passes or fails."""
    with capsys.disabled():
        print(f"\n{text}", flush=True)


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_sigkill_and_restart_everything_under_load_loses_duplicates_and_diverges_nothing(
    kafka_broker: KafkaBroker,
    postgres_server: PostgresServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    t0 = time.monotonic()
    rng = random.Random(SEED)
    where = f"seed={SEED} (reproduce: FAULT_SEED={SEED} FAULT_ROUNDS={ROUNDS})"
    bootstrap = kafka_broker.bootstrap
    topic = unique_topic_name("faults")
    dlq = f"{topic}.dlq"
    ensure_topics(bootstrap, (topic, dlq), 6)
    dbs = {svc: f"fault_{svc[:6]}_{os.urandom(5).hex()}" for svc in ("intake", "followup", "ledelsesinfo")}
    dbs |= {
        f"{svc}_replay": f"fault_{svc[:6]}_r_{os.urandom(5).hex()}" for svc in ("followup", "ledelsesinfo")
    }
    urls = {key: postgres_server.create_database(name) for key, name in dbs.items()}
    for svc in ("intake", "followup", "ledelsesinfo"):
        migrate_service(svc, urls[svc])
    for svc in ("followup", "ledelsesinfo"):
        migrate_service(svc, urls[f"{svc}_replay"])

    base_env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "TRANSPORT": "kafka",
        "EVENT_STORE_URL": urls["intake"],
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": dlq,
        "AUTH_JWT_SECRET": SECRET,
        "HOST": "127.0.0.1",
    }
    port = free_port()
    procs = {
        "intake": Proc(
            "intake", ["services.intake", "serve"],
            {**base_env, "PORT": str(port), "RUN_RELAY": "false"}, tmp_path, port,
        ),
        "relay": Proc("relay", ["services.intake", "relay"], base_env, tmp_path, None),
        "followup": Proc(
            "followup", ["services.followup", "work"],
            {**base_env, "DATABASE_URL": urls["followup"], "PORT": str(free_port())}, tmp_path, None,
        ),
        "ledelsesinfo": Proc(
            "ledelsesinfo", ["services.ledelsesinfo", "work"],
            {**base_env, "DATABASE_URL": urls["ledelsesinfo"], "PORT": str(free_port())}, tmp_path, None,
        ),
    }  # fmt: skip
    records = synth_records(SEED, tmp_path / "records.ndjson")
    token = mint_token(role="system", municipality=MUNICIPALITY, secret=SECRET)
    load = Load(f"http://127.0.0.1:{port}", token, records)
    kills: Counter[str] = Counter()
    self_exits: Counter[str] = Counter()
    engines: list[Engine] = []

    def tails() -> str:
        alive = ", ".join(
            f"{p.name}: {'up' if p.alive() else 'exited'}, {p.starts} starts" for p in procs.values()
        )
        return f"processes: {alive}\n" + "\n".join(log_tail(p.log, 25) for p in procs.values())

    try:
        for proc in procs.values():
            proc.start()
        load.start()

        # the kill schedule: every process 4 times, PostgreSQL 4 times, the broker twice, the rest random
        schedule = [*PROCESSES * 4, *["postgres"] * 4, *["broker"] * 2]
        while len(schedule) < ROUNDS:
            schedule.append(rng.choice(PROCESSES))
        schedule = schedule[:ROUNDS] if len(schedule) > ROUNDS else schedule
        rng.shuffle(schedule)
        for victim in schedule:
            time.sleep(rng.uniform(0.3, 2.5))  # a random moment under load
            for proc in procs.values():  # a process that died by itself is a finding: note it, restart
                if not proc.alive():
                    self_exits[proc.name] += 1
                    proc.start()
            if victim in procs:
                procs[victim].kill()
            elif victim == "broker":
                kafka_broker.kill()
            else:
                postgres_server.kill()
            kills[victim] += 1
            time.sleep(rng.uniform(0.1, 1.5))
            if victim in procs:
                procs[victim].start()
            elif victim == "broker":
                kafka_broker.restart()
            else:
                postgres_server.restart()
            assert load.is_alive() or load.error is None, f"{where}: the load died: {load.error!r}"

        # let the load run a little on a healthy system, then stop it (the record in flight is finished)
        time.sleep(2)
        load.stop.set()
        load.join(90)
        assert not load.is_alive(), f"{where}: the load did not finish its last record\n{tails()}"
        assert load.error is None, f"{where}: the load failed: {load.error!r}"
        for proc in procs.values():
            if not proc.alive():
                self_exits[proc.name] += 1
                proc.start()

        intake_db = make_engine(urls["intake"])
        fu_db, li_db = make_engine(urls["followup"]), make_engine(urls["ledelsesinfo"])
        engines += [intake_db, fu_db, li_db]

        def outbox_empty() -> tuple[bool, str]:
            with intake_db.connect() as conn:
                n = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
            return n == 0, f"{n} outbox rows left"

        wait_until("an empty outbox (relay not stuck)", outbox_empty, 120, tails)
        with intake_db.connect() as conn:
            log_count = conn.execute(select(func.count()).select_from(log_events)).scalar_one()

        def caught_up(engine: Engine, name: str) -> Callable[[], tuple[bool, str]]:
            def check() -> tuple[bool, str]:
                with engine.connect() as conn:
                    done = conn.execute(
                        select(func.count()).where(processed_events.c.projection == name)
                    ).scalar_one()
                    dead = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
                return done + dead >= log_count, f"{name}: {done} processed, {dead} dead of {log_count}"

            return check

        # (c) no consumer stuck: the restarted worker processes themselves reach the end of the log
        wait_until("followup worker at the end of the log", caught_up(fu_db, "followup"), 300, tails)
        wait_until("ledelsesinfo worker at the end of the log", caught_up(li_db, "ledelsesinfo"), 300, tails)
        for proc in procs.values():
            proc.terminate()

        # (a) every acknowledged record exactly once in the log, and nothing else
        with intake_db.connect() as conn:
            per_record: Counter[str] = Counter(
                dict(
                    conn.execute(
                        select(log_events.c.record_id, func.count()).group_by(
                            log_events.c.municipality, log_events.c.record_id
                        )
                    ).all()
                )
            )
        acked = set(load.acknowledged)
        lost = sorted(acked - set(per_record))
        duplicated = sorted(rid for rid, n in per_record.items() if n > 1)
        unacknowledged = sorted(set(per_record) - acked)

        # (b) each projection equals a clean replay from the SQL log into a fresh database
        from services.followup.__main__ import main as followup_main
        from services.followup.config import Settings as FollowupSettings
        from services.followup.tables import metadata as fu_metadata
        from services.ledelsesinfo.__main__ import replay as ledelsesinfo_replay
        from services.ledelsesinfo.config import Settings as LedelsesinfoSettings
        from services.ledelsesinfo.tables import metadata as li_metadata

        common: dict[str, Any] = {
            "environment": "test",
            "transport": "sql",
            "event_store_url": urls["intake"],
        }
        fu_replay = FollowupSettings(**common, database_url=urls["followup_replay"])
        assert followup_main(["replay"], settings=fu_replay) == 0
        ledelsesinfo_replay(LedelsesinfoSettings(**common, database_url=urls["ledelsesinfo_replay"]))
        fu_clean, li_clean = make_engine(urls["followup_replay"]), make_engine(urls["ledelsesinfo_replay"])
        engines += [fu_clean, li_clean]
        divergent = {
            "followup": diff_states(table_rows(fu_db, fu_metadata), table_rows(fu_clean, fu_metadata)),
            "ledelsesinfo": diff_states(table_rows(li_db, li_metadata), table_rows(li_clean, li_metadata)),
        }
        fu_rows = sum(len(r) for r in table_rows(fu_db, fu_metadata).values())
        li_rows = sum(len(r) for r in table_rows(li_db, li_metadata).values())

        # (c) nothing dead-lettered (nothing was poisoned on purpose)
        dead = {}
        for name, engine in (("followup", fu_db), ("ledelsesinfo", li_db)):
            with engine.connect() as conn:
                dead[name] = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
        dlq_content = dlq_messages(bootstrap, dlq)
        dead["dlq_topic"] = len(dlq_content)

        n_divergent = sum(bool(v) for v in divergent.values())
        summary_line(
            capsys,
            f"fault-suite: rounds={len(schedule)} kills={dict(sorted(kills.items()))} "
            f"acknowledged={len(acked)} rejected={len(load.rejected)} events={log_count} "
            f"lost={len(lost)} duplicated={len(duplicated)} unacknowledged={len(unacknowledged)} "
            f"divergent={n_divergent} dead_letters={sum(dead.values())} self_exits={dict(self_exits)} "
            f"retries={dict(load.retries)} projection_rows=followup:{fu_rows},ledelsesinfo:{li_rows} "
            f"seconds={time.monotonic() - t0:.0f} seed={SEED}",
        )
        assert len(schedule) >= 20, where
        assert len(acked) > 500, f"{where}: too little load got through ({len(acked)} records)\n{tails()}"
        assert not lost, f"{where}: {len(lost)} acknowledged records missing from the log: {lost[:10]}"
        assert not duplicated, f"{where}: records in the log more than once: {duplicated[:10]}"
        assert not unacknowledged, f"{where}: records in the log never acknowledged: {unacknowledged[:10]}"
        assert not any(divergent.values()), f"{where}: projections differ from a clean replay: {divergent}"
        assert fu_rows > 0 and li_rows > 0, f"{where}: empty projections prove nothing"
        assert sum(dead.values()) == 0, (
            f"{where}: dead letters although nothing was poisoned: {dead}\n" + "\n".join(dlq_content[:5])
        )
        assert not self_exits, f"{where}: processes exited by themselves: {dict(self_exits)}\n{tails()}"
    finally:
        load.stop.set()
        for proc in procs.values():
            with contextlib.suppress(Exception):
                proc.terminate()
        for engine in engines:
            engine.dispose()
        postgres_server.ensure_running()
        kafka_broker.ensure_running()
        for name in dbs.values():
            with contextlib.suppress(Exception):
                postgres_server.drop_database(name)
