"""Visibility benchmark: the delay from POST /records to the change being visible in GET /cases.

    python -m bench.visibility [--transport sql|kafka|both] [--seconds 30] [--rate 200]
                               [--timed-every 1,10] [--poll-ms 25] [--log-level INFO]
                               [--layout default|inprocess|separate] [--out bench-results]

The issue's figure: "the p99 delay from POST /records to the change being visible in GET /cases at
200 records/s (target under 500 ms)", on both transports:

- `sql` (the embedded default): SQLite files; intake appends to the event log, followup's projection
  worker tails that log.
- `kafka`: PostgreSQL (deploy/postgres/pg.sh) and a Kafka broker (deploy/kafka/kafka.sh), both started
  here on 127.0.0.1 and stopped afterwards; intake's outbox relay publishes to the broker, followup's
  worker consumes the topic.

The services are the real ones (`migrate`, then `serve` with uvicorn, one process each, on free
loopback ports), laid out as production runs each transport (`--layout` changes it): sql as `make run`
(the projection worker inside `followup serve`), kafka as docker-compose.yml (`intake relay` and
`followup work` as processes of their own, RUN_RELAY / RUN_WORKER false in the servers); with the
code's default worker, relay and log settings (reported with the results).

Load: an open-loop schedule of `--rate` records per second for `--seconds`: the main thread hands
record k to `rate` POST threads at t0 + k / rate, whatever earlier responses did (the slip behind the
schedule is reported). Many children; each child's records are CaseOpened, CaseworkerAssigned,
UnderretningReceived (naming the case), CaseworkerAssigned, one second apart (a record waits for its
child's previous POST to be answered, so it is never rejected for arriving first). After its POST is
answered (201), a record's case is read by `rate`/4 GET threads with
GET /cases/{case_id}?municipality= (role chef) at once and then every `--poll-ms` until the record's
effect shows: the case exists / the caseworker is in the case's caseworker history / the
underretning is among the case's underretninger. Delay = end of the first GET that shows it - start
of the POST (an upper bound; its resolution is the poll interval plus one GET). The raw baseline of
each row is the same percentile of the POST alone, of the same records.

Phases (`--timed-every`, one load each, fresh children, same services): `1` times every record, as
the figure asks; but every GET /cases writes an audit row (domain.md section 8), so that phase puts
about 1.4 reads per record (about 270 reads/s) on followup beside the 200 writes/s. `10` times one
record in ten (about 40 reads/s) and reads the others once the schedule is over, to check that they
became visible: the delay of the pipeline itself under a light read load. Both are reported.

Writes bench-results/visibility.json and visibility.md (visibility-<layout>.* with `--layout`) and
prints the table. Timing on a shared 2-core machine is noisy: the load average before and after each
phase is recorded.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import inspect
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from bench.intake import MASTER_KEY, PSEUDONYM_KEY, SECRET, Databases, cpr_of, free_port, percentile
from bench.intake import _at as at_local
from shared.mint_token import mint_token

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MUNICIPALITY = "751"
TARGET_MS = 500.0
STEPS = 4  # records per child
LABELS = {"sql": "embedded SQLite", "kafka": "Kafka + PostgreSQL"}


# --- the records -----------------------------------------------------------------------------------


@dataclass
class Planned:
    """One record of the schedule and how to see its effect in GET /cases/{case_id}."""

    index: int
    record: dict[str, Any]
    case_id: str
    check: tuple[str, str]  # ("case", case_id) | ("caseworker", id) | ("underretning", id)
    previous: int | None  # the index of the same child's previous record


def child_records(i: int, tag: str, base: datetime) -> list[tuple[dict[str, Any], tuple[str, str]]]:
    """The four records of child i, in order, each with the check that shows it in GET /cases."""
    case, und = f"S-{tag}-{i}", f"U-{tag}-{i}"
    team = f"team-{i % 7}"
    cw1, cw2 = f"sb-{i % 40}", f"sb-{(i + 1) % 40}"
    start = base + timedelta(seconds=i % 86_400)

    def rec(step: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "record_id": f"vis-{tag}-{i}-{step}",
            "type": kind,
            "municipality": MUNICIPALITY,
            "occurred_at": at_local(start + timedelta(minutes=step)),
            "data": data,
        }

    child = {"cpr": cpr_of(i)}
    return [
        (rec(1, "CaseOpened", {"case_id": case, "child": child, "team_id": team}), ("case", case)),
        (rec(2, "CaseworkerAssigned", {"case_id": case, "caseworker_id": cw1}), ("caseworker", cw1)),
        (
            rec(
                3,
                "UnderretningReceived",
                {
                    "underretning_id": und,
                    "child": child,
                    "notifier": ("1", "3", "4", "9")[i % 4],
                    "reasons": [("barn_adfaerd", "omsorgssvigt", "foraeldre_misbrug")[i % 3]],
                    "severity": ("akut", "alvorlig", "bekymring")[i % 3],
                    "team_id": team,
                    "case_id": case,
                },
            ),
            ("underretning", und),
        ),
        (rec(4, "CaseworkerAssigned", {"case_id": case, "caseworker_id": cw2}), ("caseworker", cw2)),
    ]


def schedule(n: int, group: int, tag: str, first_child: int = 0) -> list[Planned]:
    """Exactly n records: groups of `group` children, step by step across the group, so that one
    child's records are `group` records apart (one second at rate = group)."""
    base = datetime.now(UTC) - timedelta(days=2)
    out: list[Planned] = []
    last: dict[int, int] = {}
    first = first_child
    while len(out) < n:
        children = {i: child_records(i, tag, base) for i in range(first, first + group)}
        for step in range(STEPS):
            for i, recs in children.items():
                if len(out) >= n:
                    return out
                record, check = recs[step]
                out.append(Planned(len(out), record, record["data"]["case_id"], check, last.get(i)))
                last[i] = len(out) - 1
        first += group
    return out


def shows(doc: dict[str, Any], check: tuple[str, str]) -> bool:
    """Whether a GET /cases/{case_id} answer shows the record (monotone: later records keep it)."""
    kind, value = check
    if kind == "case":
        return bool(doc.get("case_id") == value)
    if kind == "caseworker":
        return any(h.get("caseworker_id") == value for h in doc.get("caseworker_history", []))
    return any(u.get("underretning_id") == value for u in doc.get("underretninger", []))


# --- the services ----------------------------------------------------------------------------------


def service_env(
    service: str, transport: str, urls: dict[str, str], port: int, log_level: str, kafka: dict[str, str]
) -> dict[str, str]:
    """The environment of one service, as deploy/run-local.sh gives it (defaults for everything else)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ENVIRONMENT": "production",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": log_level,
            "TRANSPORT": transport,
            "EVENT_STORE_URL": urls["intake"],
            "DATABASE_URL": "" if service == "intake" else urls[service],
            "AUTH_JWT_SECRET": SECRET,
            "CPR_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "CPR_MASTER_KEY": MASTER_KEY,
            **kafka,
        }
    )
    return env


def _setting_names() -> frozenset[str]:
    from services.followup.config import Settings as FollowupSettings
    from services.intake.config import Settings as IntakeSettings

    return frozenset(n.upper() for s in (IntakeSettings, FollowupSettings) for n in s.model_fields)


_SETTING_NAMES = _setting_names()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited ({proc.returncode}): {_tail(log)}")
        try:
            r = httpx.get(url + "/ready", timeout=5)
            if r.status_code == 200:
                return
            last = r.text[:300]
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout:.0f} s: {last}; {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def service(name: str, env: dict[str, str], base: Path, command: str = "serve") -> Iterator[str]:
    """`python -m services.<name> migrate` (for `serve`), then `<command>` (`serve`: uvicorn, one
    process; `work` / `relay`: the background process alone) until the block ends."""
    log = base / f"{name}-{command}.log"
    if command == "serve":
        done = subprocess.run(
            [PY, "-m", f"services.{name}", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name} migrate failed: {done.stderr[-2000:]}")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", f"services.{name}", command], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{env['PORT']}"
        try:
            if command == "serve":
                _wait_ready(url, proc, log)
            else:
                time.sleep(1.0)
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} {command} exited ({proc.returncode}): {_tail(log)}")
            yield url
        finally:
            _stop(proc)


def _start_kafka(script: str, kafka_dir: Path, attempts: int = 3) -> tuple[str, Path]:
    """Start the broker (the project's script) on a free port: its bootstrap address and data
    folder. A port found free can be taken before the broker binds it (the load's own client
    sockets draw from the same ephemeral range), so a failed start is tried again on other ports,
    in a fresh data folder."""
    errors: list[str] = []
    for attempt in range(attempts):
        folder = kafka_dir if attempt == 0 else kafka_dir.with_name(f"{kafka_dir.name}-{attempt}")
        folder.mkdir(exist_ok=True)
        out = subprocess.run(
            ["bash", script, "start", str(folder), str(free_port())], capture_output=True, text=True
        )
        if out.returncode == 0:
            return out.stdout.strip().splitlines()[-1], folder
        errors.append(out.stderr.strip()[-800:])
        subprocess.run(["bash", script, "stop", str(folder)], check=False, capture_output=True)
    raise RuntimeError("the Kafka broker did not start:\n" + "\n---\n".join(errors))


@contextmanager
def backing_servers(base: Path) -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL and Kafka broker on 127.0.0.1 (the project's scripts); (pg URL, bootstrap)."""
    from bench.intake import postgres

    kafka_dir = base / "kafka"
    kafka_dir.mkdir()
    script = str(ROOT / "deploy/kafka/kafka.sh")
    with postgres(base) as pg_url:
        bootstrap, kafka_dir = _start_kafka(script, kafka_dir)
        try:
            yield pg_url, bootstrap
        finally:
            subprocess.run(["bash", script, "stop", str(kafka_dir)], check=False, capture_output=True)


@dataclass
class Stack:
    intake: str
    followup: str
    settings: dict[str, Any] = field(default_factory=dict)


LAYOUTS = {
    "inprocess": "the worker runs inside `followup serve`, the relay inside `intake serve` (make run)",
    "separate": "`followup work` and `intake relay` run as processes of their own (docker-compose.yml)",
}


def default_layout(transport: str) -> str:
    """As production runs each transport: `make run` (sql), docker-compose.yml (kafka)."""
    return "inprocess" if transport == "sql" else "separate"


@contextmanager
def stack(transport: str, base: Path, log_level: str, layout: str) -> Iterator[Stack]:
    """intake + followup over the transport, on free loopback ports, in the given process layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}")
    with ExitStack() as es:
        kafka: dict[str, str] = {}
        if transport == "sql":
            urls = {svc: f"sqlite:///{base / svc}.db" for svc in ("intake", "followup")}
        else:
            pg_url, bootstrap = es.enter_context(backing_servers(base))
            dbs = Databases("postgres", base, pg_url)
            urls = {svc: dbs.fresh(svc) for svc in ("intake", "followup")}
            topic = f"vis-{uuid.uuid4().hex[:8]}"
            kafka = {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA_TOPIC": topic,
                "KAFKA_DLQ_TOPIC": topic + ".dlq",
            }
        envs = {
            svc: service_env(svc, transport, urls, free_port(), log_level, kafka)
            for svc in ("intake", "followup")
        }
        separate = layout == "separate"
        envs["intake"]["RUN_RELAY"] = str(not separate).lower()
        envs["followup"]["RUN_WORKER"] = str(not separate).lower()
        intake = es.enter_context(service("intake", envs["intake"], base))
        followup = es.enter_context(service("followup", envs["followup"], base))
        if separate:
            es.enter_context(service("followup", envs["followup"], base, "work"))
            if transport == "kafka":
                es.enter_context(service("intake", envs["intake"], base, "relay"))
        yield Stack(intake, followup, worker_settings(transport, layout))


def worker_settings(transport: str, layout: str) -> dict[str, Any]:
    """The settings the projection worker (and in Kafka mode the relay and consumer) run with: the code's
    defaults, read from the signatures, as the services construct them."""
    from shared.messaging.relay import OutboxRelay
    from shared.messaging.runner import ProjectionWorker

    w = inspect.signature(ProjectionWorker.__init__).parameters
    out: dict[str, Any] = {
        "layout": f"{layout}: {LAYOUTS[layout]}",
        "worker batch_size": w["batch_size"].default,
        "worker poll_timeout_s": w["poll_timeout"].default,
        "worker idle wait_s": 0.05,  # ProjectionWorker.run: self._stop.wait(0.05) after an empty step
    }
    if transport == "sql":
        out["source"] = (
            "SqlLogSource: SELECT events WHERE position > checkpoint LIMIT batch_size (poll_timeout unused)"
        )
    else:
        r = inspect.signature(OutboxRelay.__init__).parameters
        out |= {
            "source": "KafkaSource: consumer.poll(timeout_ms=poll_timeout*1000, max_records=1000)",
            "relay batch_size": r["batch_size"].default,
            "relay idle_sleep_s": r["idle_sleep"].default,
            "producer": "acks=all, idempotent, linger_ms=5 (shared/messaging/kafka.py)",
            "consumer": "max_poll_records=500, read_committed, fetch defaults (shared/messaging/kafka.py)",
            "partitions": 6,
        }
    return out


# --- the load ----------------------------------------------------------------------------------------


@dataclass
class Sample:
    scheduled: float = 0.0
    post_start: float = 0.0
    post_end: float = 0.0
    status: int = 0
    reason: str = ""
    visible_at: float | None = None
    gets: int = 0
    accepted: bool = False
    timed: bool = True


@dataclass
class Load:
    samples: list[Sample]
    t0: float
    get_latencies: list[float]
    seconds: float


class _Http:
    """One keep-alive HTTP/1.1 connection (stdlib: little client CPU beside the servers)."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = headers
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, bool]:
        """(status, body, retried): a kept-alive connection the server closed meanwhile (uvicorn drops
        idle ones after 5 s) is reopened and the request sent once more."""
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        reused = self.conn is not None
        try:
            return (*self._send(method, path, body, headers), False)
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            if not reused:
                raise
        return (*self._send(method, path, body, headers), True)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _drive(
    intake: str,
    followup: str,
    plan: list[Planned],
    rate: float,
    poll: float,
    visible_timeout: float,
    *,
    posters: int | None = None,
    pollers: int | None = None,
    every: int = 1,
) -> Load:
    """Open loop: the main thread hands record k to the POST threads at t0 + k / rate; a record whose
    POST is answered 201 goes to the GET threads, polled now and every `poll` s until it shows. With
    `every` > 1 only every `every`-th record is timed so; the others are read once the schedule is over
    (that they became visible is checked, not when)."""
    post_auth = {
        "Authorization": "Bearer "
        + mint_token(role="system", municipality=MUNICIPALITY, secret=SECRET, ttl_minutes=600)
    }
    get_auth = {
        "Authorization": "Bearer "
        + mint_token(
            role="chef", municipality=MUNICIPALITY, secret=SECRET, ttl_minutes=600, sub="bench-visibility"
        )
    }
    samples = [Sample() for _ in plan]
    answered = [threading.Event() for _ in plan]
    get_latencies: list[float] = []
    to_post: queue.SimpleQueue[Planned | None] = queue.SimpleQueue()
    due: list[tuple[float, int]] = []  # heap of (next poll time, plan index)
    cond = threading.Condition()
    state = {"polling": 0, "posting_done": False}
    errors: list[BaseException] = []
    query = "?" + urlencode({"municipality": MUNICIPALITY})

    def post_loop() -> None:
        client = _Http(intake, post_auth)
        try:
            while (p := to_post.get()) is not None:
                s = samples[p.index]
                try:
                    if p.previous is not None:
                        answered[p.previous].wait(visible_timeout)
                    body = json.dumps(p.record).encode()
                    s.post_start = time.perf_counter()
                    try:
                        s.status, data, retried = client.request("POST", "/records", body)
                        # a resent record the first attempt had stored answers 200 duplicate
                        s.accepted = s.status == 201 or (retried and s.status == 200)
                        if not s.accepted:
                            s.reason = data[:300].decode(errors="replace")
                    except (OSError, http.client.HTTPException) as exc:
                        s.reason = f"POST failed: {exc!r}"
                    s.post_end = time.perf_counter()
                finally:
                    answered[p.index].set()
                if s.accepted:
                    with cond:
                        state["polling"] += 1
                        heapq.heappush(due, (s.post_end if s.timed else after, p.index))
                        cond.notify()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            client.close()

    def poll_loop() -> None:
        client = _Http(followup, get_auth)
        try:
            while True:
                with cond:
                    while True:
                        if due and due[0][0] <= time.perf_counter():
                            _, i = heapq.heappop(due)
                            break
                        if not due and state["posting_done"] and state["polling"] == 0:
                            return
                        cond.wait(max(0.0, due[0][0] - time.perf_counter()) if due else 0.1)
                p, s = plan[i], samples[i]
                g0 = time.perf_counter()
                try:
                    status, data, _ = client.request("GET", f"/cases/{quote(p.case_id)}{query}")
                except (OSError, http.client.HTTPException) as exc:
                    status, data, s.reason = 0, b"", f"GET failed: {exc!r}"
                g1 = time.perf_counter()
                s.gets += 1
                get_latencies.append(g1 - g0)
                if status == 200 and shows(json.loads(data), p.check):
                    s.visible_at, again = g1, False
                else:
                    if status not in (0, 200, 404):
                        s.reason = f"GET {status}: {data[:200].decode(errors='replace')}"
                    again = g1 - s.post_start <= visible_timeout
                    if not again:
                        s.reason = s.reason or "not visible in time"
                with cond:
                    if again:
                        heapq.heappush(due, (g1 + poll, i))
                    else:
                        state["polling"] -= 1
                    cond.notify_all()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            with cond:
                state["posting_done"], state["polling"] = True, 0
                due.clear()
                cond.notify_all()
        finally:
            client.close()

    # enough threads that a slow answer does not hold the next record back (a second of latency at rate)
    posters = posters or min(256, max(8, int(rate)))
    pollers = pollers or min(64, max(4, int(rate) // 4))
    post_threads = [threading.Thread(target=post_loop, daemon=True) for _ in range(posters)]
    poll_threads = [threading.Thread(target=poll_loop, daemon=True) for _ in range(pollers)]
    for t in post_threads + poll_threads:
        t.start()
    t0 = time.perf_counter() + 0.2
    after = t0 + len(plan) / rate + 0.5
    for p in plan:
        samples[p.index].timed = p.index % every == 0
        samples[p.index].scheduled = at = t0 + p.index / rate
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        to_post.put(p)
    for _ in post_threads:
        to_post.put(None)
    limit = len(plan) / rate + 2 * visible_timeout + 60
    for t in post_threads:
        t.join(limit)
    with cond:
        state["posting_done"] = True
        cond.notify_all()
    for t in poll_threads:
        t.join(limit)
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"visibility load: a client thread failed: {errors[0]!r}")
    if any(t.is_alive() for t in post_threads + poll_threads):
        raise RuntimeError("visibility load: client threads did not finish in time")
    return Load(samples, t0, get_latencies, seconds)


def warm_up(intake: str, followup: str, tag: str) -> None:
    """One child's records, posted and seen, before the measurement (connections, caches, imports)."""
    plan = schedule(STEPS, 1, tag + "w", first_child=4_000_000)
    load = _drive(intake, followup, plan, 20.0, 0.05, 120.0)
    bad = [s.reason for s in load.samples if s.visible_at is None]
    if bad:
        raise RuntimeError(f"warm-up failed: {bad[0]}")


# --- measuring ---------------------------------------------------------------------------------------


@dataclass
class Result:
    rows: list[dict[str, Any]]
    details: dict[str, Any]


def _ms(x: float) -> float:
    return round(1000 * x, 1)


PHASES = (1, 10)  # every record read back / one in ten (see the module doc)


def measure(
    transport: str,
    seconds: float,
    rate: int,
    *,
    phases: tuple[int, ...] = PHASES,
    poll_ms: float = 25.0,
    log_level: str = "INFO",
    visible_timeout: float = 60.0,
    layout: str | None = None,
) -> list[Result]:
    """One stack of the transport; one load of `seconds` at `rate` per phase (fresh children each),
    where a phase `k` times the visibility of every k-th record and checks the others afterwards."""
    if transport not in LABELS:
        raise ValueError(f"transport must be one of {sorted(LABELS)}")
    n = max(1, round(seconds * rate))
    group = max(rate, 1)
    tag = uuid.uuid4().hex[:6]
    base = Path(tempfile.mkdtemp(prefix="bench-visibility-"))
    base.chmod(0o755)  # PostgreSQL may run as another user (pg.sh as root) and needs to reach its dir
    results: list[Result] = []
    try:
        layout = layout or default_layout(transport)
        with stack(transport, base, log_level, layout) as st:
            warm_up(st.intake, st.followup, tag)
            first_child = 0
            for every in phases:
                plan = schedule(n, group, tag, first_child=first_child)
                first_child += (n // (STEPS * group) + 1) * group
                time.sleep(1.0)  # let the previous phase's verification reads settle
                load_before = round(os.getloadavg()[0], 2)
                load = _drive(
                    st.intake, st.followup, plan, float(rate), poll_ms / 1000, visible_timeout, every=every
                )
                load_avg = [load_before, round(os.getloadavg()[0], 2)]
                results.append(
                    summarize(
                        transport,
                        rate,
                        seconds,
                        load,
                        poll_ms,
                        log_level,
                        st.settings,
                        load_avg,
                        every,
                        layout,
                    )
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def summarize(
    transport: str,
    rate: int,
    seconds: float,
    load: Load,
    poll_ms: float,
    log_level: str,
    settings: dict[str, Any],
    load_avg: list[float],
    every: int = 1,
    layout: str | None = None,
) -> Result:
    samples = load.samples
    accepted = [s for s in samples if s.accepted]
    visible = [s for s in accepted if s.visible_at is not None]
    delays = sorted(s.visible_at - s.post_start for s in visible if s.visible_at is not None and s.timed)
    post = sorted(s.post_end - s.post_start for s in samples if s.post_end)
    # the baseline of the delay rows: the POST alone of the same (timed) records
    timed_post = sorted(s.post_end - s.post_start for s in visible if s.timed)
    starts = sorted(s.post_start for s in samples if s.post_start)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    achieved = (len(starts) - 1) / span if span > 0 else float(len(starts))
    slip = max((s.post_start - s.scheduled for s in samples if s.post_start), default=0.0)
    gets = sum(s.gets for s in samples)
    timed_gets = sum(s.gets for s in samples if s.timed)
    label = LABELS[transport]
    if layout is not None and layout != default_layout(transport):
        label += f", {layout} worker"
    reads = "every record read back" if every == 1 else f"1 in {every} records timed"
    rows: list[dict[str, Any]] = []
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        d, raw = percentile(delays, q), percentile(timed_post, q)
        rows.append(
            {
                "benchmark": f"POST /records -> visible in GET /cases, {name} at {rate} records/s"
                f" ({label}; {reads})",
                "measured": _ms(d),
                "unit": "ms",
                "raw": _ms(raw),
                "ratio": round(d / raw, 2) if raw > 0 else None,
                "target": f"< {TARGET_MS:.0f}" if name == "p99" else "",
            }
        )
    rows.append(
        {
            "benchmark": f"POST /records achieved rate, offered {rate} records/s open loop"
            f" ({label}; {reads})",
            "measured": round(achieved, 1),
            "unit": "records/s",
            "raw": float(rate),
            "ratio": round(achieved / rate, 3) if rate else None,
            "target": f">= {rate}",
        }
    )
    failures = [
        {"record": i, "status": s.status, "reason": s.reason}
        for i, s in enumerate(samples)
        if not s.accepted or s.visible_at is None
    ]
    details = {
        "transport": transport,
        "label": label,
        "timed_every": every,
        "reads": reads,
        "offered_rate": rate,
        "seconds": seconds,
        "records": len(samples),
        "accepted": len(accepted),
        "visible": len(visible),
        "timed": len(delays),
        "failures": len(failures),
        "first_failures": failures[:5],
        "delay_ms": {
            k: _ms(percentile(delays, q))
            for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        },
        "post_ms": {
            k: _ms(percentile(post, q)) for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        },
        "get_cases_ms": {
            k: _ms(percentile(sorted(load.get_latencies), q)) for k, q in (("p50", 0.5), ("p99", 0.99))
        },
        "over_target": sum(1 for d in delays if d * 1000 >= TARGET_MS),
        "achieved_rate": round(achieved, 1),
        "max_send_slip_ms": _ms(slip),
        "get_requests": gets,
        "get_rate_per_s": round(gets / load.seconds, 1) if load.seconds else None,
        "timed_get_rate_per_s": round(timed_gets * rate / len(samples), 1) if samples else None,
        "poll_ms": poll_ms,
        "log_level": log_level,
        "load_avg_before_after": load_avg,
        "worker_settings": settings,
    }
    return Result(rows, details)


def run(transport: str, seconds: float, rate: int) -> list[dict[str, Any]]:
    """The benchmark rows of one transport (`sql` or `kafka`), both phases; raises if a record was not
    accepted or never became visible."""
    results = measure(transport, seconds, rate)
    check(results)
    return [r for res in results for r in res.rows]


def check(results: list[Result]) -> None:
    for res in results:
        if res.details["failures"]:
            raise RuntimeError(
                f"visibility ({res.details['label']}, {res.details['reads']}): {res.details['failures']}"
                f" records failed, e.g. {res.details['first_failures']}"
            )


# --- the report --------------------------------------------------------------------------------------


def markdown(results: list[Result]) -> str:
    lines = [
        "| benchmark | measured | unit | raw (POST alone) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res.rows:
            lines.append(
                f"| {r['benchmark']} | {r['measured']} | {r['unit']} | {r['raw']} | {r['ratio']} |"
                f" {r['target']} |"
            )
    for res in results:
        d = res.details
        lines += [
            "",
            f"**{d['label']}, {d['reads']}**: {d['records']} records posted, {d['accepted']} accepted,"
            f" {d['visible']} seen"
            f" in GET /cases, {d['timed']} timed, {d['over_target']} over {TARGET_MS:.0f} ms;"
            f" achieved {d['achieved_rate']} records/s"
            f" (max send slip {d['max_send_slip_ms']} ms); GET /cases polls every {d['poll_ms']} ms:"
            f" {d['get_requests']} GETs in all (timing reads {d['timed_get_rate_per_s']}/s during the load;"
            f" p50 {d['get_cases_ms']['p50']} ms,"
            f" p99 {d['get_cases_ms']['p99']} ms); server LOG_LEVEL {d['log_level']};"
            f" load average before, after: {d['load_avg_before_after']}.",
        ]
        if d["timed_every"] == min(
            r.details["timed_every"] for r in results if r.details["label"] == d["label"]
        ):
            lines += [
                "",
                "Settings: " + "; ".join(f"{k} = {v}" for k, v in d["worker_settings"].items()) + ".",
            ]
        if d["failures"]:
            lines.append(f"Failures: {d['failures']}, e.g. {d['first_failures']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", choices=("sql", "kafka", "both"), default="both")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument(
        "--poll-ms", type=float, default=25.0, help="interval of the GET /cases polls of a record"
    )
    ap.add_argument(
        "--timed-every",
        default=",".join(str(k) for k in PHASES),
        help="phases: time every k-th record's visibility (1 = every record), comma-separated",
    )
    ap.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL (default: the setting's)")
    ap.add_argument(
        "--layout",
        choices=("default", *LAYOUTS),
        default="default",
        help="worker/relay processes; default: in-process for sql (make run), separate for kafka (compose)",
    )
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    phases = tuple(int(k) for k in args.timed_every.split(",") if k.strip())
    layout = None if args.layout == "default" else args.layout
    if not phases or min(phases) < 1:
        ap.error("--timed-every: positive integers, e.g. 1,10")
    transports = ("sql", "kafka") if args.transport == "both" else (args.transport,)
    results: list[Result] = []
    for t in transports:
        print(f"bench.visibility: {t}, {args.rate} records/s for {args.seconds} s ...", file=sys.stderr)
        results += measure(
            t,
            args.seconds,
            args.rate,
            phases=phases,
            poll_ms=args.poll_ms,
            log_level=args.log_level,
            layout=layout,
        )
    doc = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rows": [r for res in results for r in res.rows],
        "runs": [res.details for res in results],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "visibility" if layout is None else f"visibility-{layout}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(results)
    (out / f"{stem}.md").write_text("# Visibility benchmark (POST /records -> GET /cases)\n\n" + table + "\n")
    print(table)
    if any(res.details["failures"] for res in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
