"""Projection benchmark: rebuild rates of follow-up and ledelsesinfo beside the raw consume rate,
the ledelsesinfo projector's peak memory, and read latencies (GET /deadlines, weekly/monthly reports).

    python -m bench.projections [--events 1000000] [--quick] [--out bench-results]

Generates DUBU-like records with `synth` (all municipalities, scale chosen for the event count),
imports them into a SQLite event store with the intake CLI (loading is not measured), then:
- raw consume: read every event of the log by position, in pages, and decode its envelope (no projection);
- follow-up rebuild and ledelsesinfo rebuild (`replay`, as `python -m services.<svc> replay`), each in a
  subprocess, whose peak RSS (ru_maxrss) is reported;
- p95 of GET /deadlines for the team with the most deadlines (200 requests, TestClient);
- p95 of the weekly and monthly reports for one municipality (Herning, 657) after one year (the
  national store) and after five years of its history (a second store).
Everything is on 127.0.0.1 / local files. Timing is noisy on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MUNI = "657"
NATIONAL_EVENTS_PER_YEAR = 1_600_000  # about, at synth scale 1.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()}
    env.update({"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", **extra})
    return env


def _run(args: list[str], **env: str) -> str:
    out = subprocess.run(args, cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {out.stderr[-2000:]}")
    return out.stdout


# --- data ---------------------------------------------------------------------------------------


def build_store(work: Path, name: str, *, start: int, years: int, scale: float, municipalities: str) -> Path:
    data = work / f"{name}-records"
    data.mkdir()
    _run([PY, "-m", "synth", "--seed", "7", "--start", f"{start}-01-01", "--years", str(years),
          "--municipalities", municipalities, "--scale", str(scale), "--quiet",
          "--out", str(data / "{municipality}.ndjson")])
    store = work / f"{name}.db"
    env = {"EVENT_STORE_URL": f"sqlite:///{store}", "DATABASE_URL": f"sqlite:///{work / name}-intake.db"}
    _run([PY, "-m", "services.intake", "migrate"], **env)
    for f in sorted(data.glob("*.ndjson")):
        if f.stat().st_size:
            _run([PY, "-m", "services.intake", "import", str(f), "--municipality", f.stem], **env)
    return store


# --- measured in a subprocess (peak RSS of that process alone) -----------------------------------


def child_main(kind: str, store: str, own: str) -> None:
    from shared.db import make_engine

    os.environ.update({"EVENT_STORE_URL": f"sqlite:///{store}", "DATABASE_URL": f"sqlite:///{own}"})
    t0 = time.perf_counter()
    if kind == "raw":
        from sqlalchemy import select

        from shared.eventstore.schema import events
        from shared.eventstore.store import row_to_envelope

        engine = make_engine(f"sqlite:///{store}")
        t0 = time.perf_counter()
        n, pos = 0, 0
        while True:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(events).where(events.c.position > pos).order_by(events.c.position).limit(5000)
                ).all()
            if not rows:
                break
            for row in rows:
                row_to_envelope(row)
            n += len(rows)
            pos = rows[-1].position
    elif kind == "followup":
        from services.followup.config import Settings as FuSettings
        from services.followup.projection import FollowupProjection
        from shared.messaging.runner import replay
        from shared.migrations import migrate_service

        migrate_service("followup", f"sqlite:///{own}")
        fu = FuSettings()  # type: ignore[call-arg]
        t0 = time.perf_counter()
        n = replay(FollowupProjection(fu, deferred=True), fu)
        engine = make_engine(fu.own_database_url)
        FollowupProjection(fu).flush(engine)
    else:
        from services.ledelsesinfo.config import Settings as LiSettings
        from services.ledelsesinfo.projection import LedelsesinfoProjection
        from shared.messaging.runner import replay
        from shared.migrations import migrate_service

        migrate_service("ledelsesinfo", f"sqlite:///{own}")
        li = LiSettings()  # type: ignore[call-arg]
        t0 = time.perf_counter()
        n = replay(LedelsesinfoProjection(li.rules()), li)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"events": n, "seconds": seconds, "rate": n / seconds, "peak_rss_mb": rss_mb}))


def measure(kind: str, store: Path, own: Path) -> dict[str, Any]:
    own.unlink(missing_ok=True)
    out = _run([PY, "-m", "bench.projections", "--child", kind, str(store), str(own)])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# --- read latencies ------------------------------------------------------------------------------


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[94] * 1000


def deadlines_p95(store: Path, fu_db: Path, requests: int = 200, states: str | None = None) -> dict[str, Any]:
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from services.followup.app import create_app
    from services.followup.config import Settings
    from services.followup.tables import fu_deadlines
    from shared.db import make_engine
    from shared.mint_token import mint_token

    settings = Settings(event_store_url=f"sqlite:///{store}", database_url=f"sqlite:///{fu_db}",  # type: ignore[call-arg]
                        run_worker=False, log_level="WARNING")
    engine = make_engine(settings.own_database_url)
    with engine.connect() as conn:
        muni, team, count = conn.execute(
            select(fu_deadlines.c.municipality, fu_deadlines.c.team_id, func.count())
            .where(fu_deadlines.c.team_id.is_not(None))
            .group_by(fu_deadlines.c.municipality, fu_deadlines.c.team_id)
            .order_by(func.count().desc()).limit(1)
        ).one()
    engine.dispose()
    token = mint_token(role="teamleder", municipality=muni, teams=[team], secret=settings.auth_jwt_secret)
    samples: list[float] = []
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(requests):
            t0 = time.perf_counter()
            params = {"municipality": muni, "team_id": team}
            if states:
                params["state"] = states
            r = client.get("/deadlines", params=params, headers=headers)
            samples.append(time.perf_counter() - t0)
            r.raise_for_status()
        items = r.json()
    listed = items.get("deadlines", items.get("items", [])) if isinstance(items, dict) else items
    n_items = len(listed or [])
    return {"p95_ms": _p95(samples), "team_deadline_rows": count, "returned": n_items, "requests": requests}


def reports_p95(store: Path, li_db: Path, last_year: int, requests: int = 100) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from services.ledelsesinfo.app import create_app
    from services.ledelsesinfo.config import Settings
    from shared.mint_token import mint_token

    settings = Settings(event_store_url=f"sqlite:///{store}", database_url=f"sqlite:///{li_db}",  # type: ignore[call-arg]
                        run_worker=False, log_level="WARNING")
    token = mint_token(role="chef", municipality=MUNI, secret=settings.auth_jwt_secret)
    out: dict[str, Any] = {}
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for name, path, params in (
            ("weekly", "/reports/weekly", {"municipality": MUNI, "week": f"{last_year}-W48"}),
            ("monthly", "/reports/monthly", {"municipality": MUNI, "month": f"{last_year}-11"}),
        ):
            samples: list[float] = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = client.get(path, params=params, headers=headers)
                samples.append(time.perf_counter() - t0)
                r.raise_for_status()
            out[name] = _p95(samples)
    return out


# --- main ----------------------------------------------------------------------------------------


def run(events: int, out_dir: Path) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="bench-projections-"))
    scale = round(min(2.0, max(0.01, events / NATIONAL_EVENTS_PER_YEAR * 1.05)), 3)
    t = time.perf_counter()
    store = build_store(work, "national", start=2024, years=1, scale=scale, municipalities="all")
    history = build_store(work, "history5", start=2020, years=5, scale=scale, municipalities=MUNI)
    print(f"data loaded in {time.perf_counter() - t:.0f} s (scale {scale})", file=sys.stderr)

    raw = measure("raw", store, work / "raw.db")
    fu = measure("followup", store, work / "fu.db")
    li = measure("ledelsesinfo", store, work / "li.db")
    measure("ledelsesinfo", history, work / "li5.db")
    dl = deadlines_p95(store, work / "fu.db")
    worklist = deadlines_p95(store, work / "fu.db", states="overdue,due_soon")
    rep1 = reports_p95(store, work / "li.db", 2024)
    rep5 = reports_p95(history, work / "li5.db", 2024)
    n = raw["events"]
    rows: list[dict[str, Any]] = [
        {"benchmark": f"raw consume (read + decode), {n} events", "measured": round(raw["rate"]),
         "unit": "events/s", "raw": None, "ratio": None, "target": None},
        {"benchmark": "follow-up rebuild", "measured": round(fu["rate"]), "unit": "events/s",
         "raw": round(raw["rate"]), "ratio": round(fu["rate"] / raw["rate"], 2),
         "target": ">= 50000 and >= 0.5 x raw"},
        {"benchmark": "ledelsesinfo rebuild", "measured": round(li["rate"]), "unit": "events/s",
         "raw": round(raw["rate"]), "ratio": round(li["rate"] / raw["rate"], 2), "target": ">= 50000"},
        {"benchmark": "ledelsesinfo projector peak RSS", "measured": round(li["peak_rss_mb"]), "unit": "MB",
         "raw": round(raw["peak_rss_mb"]), "ratio": None, "target": "< 300"},
        {"benchmark": "follow-up rebuild peak RSS", "measured": round(fu["peak_rss_mb"]), "unit": "MB",
         "raw": round(raw["peak_rss_mb"]), "ratio": None, "target": None},
        {"benchmark": f"GET /deadlines p95, one team, every state ({dl['team_deadline_rows']} deadline rows)",
         "measured": round(dl["p95_ms"], 1), "unit": "ms", "raw": None, "ratio": None, "target": "< 50"},
        {"benchmark": f"GET /deadlines p95, the same team's worklist (state=overdue,due_soon: "
                      f"{worklist['returned']} items)",
         "measured": round(worklist["p95_ms"], 1), "unit": "ms", "raw": None, "ratio": None,
         "target": "< 50"},
    ]
    for label, rep in (("1 year", rep1), ("5 years", rep5)):
        for kind in ("weekly", "monthly"):
            rows.append({"benchmark": f"{kind} report p95, {MUNI}, after {label}",
                         "measured": round(rep[kind], 1), "unit": "ms", "raw": None,
                         "ratio": round(rep[kind] / rep1[kind], 2) if label == "5 years" else None,
                         "target": "< 20 (5y/1y ratio ~1)"})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "projections.json").write_text(json.dumps(
        {"events": n, "scale": scale, "rows": rows, "raw": raw, "followup": fu, "ledelsesinfo": li},
        indent=2))
    lines = ["| benchmark | measured | unit | raw baseline | ratio | target |", "|---|---|---|---|---|---|"]
    keys = ("benchmark", "measured", "unit", "raw", "ratio", "target")
    for r in rows:
        cells = ("" if r[k] is None else str(r[k]) for k in keys)
        lines.append("| " + " | ".join(cells) + " |")
    (out_dir / "projections.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.projections")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="about 100,000 events")
    p.add_argument("--out", default=str(ROOT / "bench-results"))
    p.add_argument("--child", nargs=3, metavar=("KIND", "STORE", "OWN"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(*args.child)
        return 0
    run(100_000 if args.quick else args.events, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
