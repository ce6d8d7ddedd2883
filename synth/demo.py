"""Helpers of `make demo` (deploy/demo.sh); not part of the generator.

    python -m synth.demo start                      the first day of the demo year (one year before today)
    python -m synth.demo wait [--timeout S]         until followup and ledelsesinfo have every event
    python -m synth.demo info --manifest M.json     tokens, URLs and curl examples for the running demo

`wait` reads the embedded default's SQLite files under .run/ (the event log's head against each
projection's checkpoint); `info` asks the running services (127.0.0.1:8001-8003) which caseworker
has the longest worklist and shows a few of the weekly figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from synth.clock import add_years
from synth.municipalities import MUNICIPALITIES

INTAKE, FOLLOWUP, LEDELSESINFO = "http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"
DBS = {
    "intake": "sqlite:///.run/intake.db",
    "followup": "sqlite:///.run/followup.db",
    "ledelsesinfo": "sqlite:///.run/ledelsesinfo.db",
}


def cmd_start() -> int:
    print(add_years(date.today(), -1).isoformat())
    return 0


def _positions() -> tuple[int, dict[str, int]]:
    from sqlalchemy import func, select

    from shared.db import make_engine
    from shared.eventstore.schema import events
    from shared.messaging.schema import checkpoints

    engines = {name: make_engine(url) for name, url in DBS.items()}
    try:
        with engines["intake"].connect() as conn:
            head = int(conn.execute(select(func.max(events.c.position))).scalar() or 0)
        done: dict[str, int] = {}
        for name in ("followup", "ledelsesinfo"):
            with engines[name].connect() as conn:
                pos = conn.execute(
                    select(checkpoints.c.position).where(checkpoints.c.projection == name)
                ).scalar()
            done[name] = int(pos or 0)
        return head, done
    finally:
        for engine in engines.values():
            engine.dispose()


def cmd_wait(timeout: float) -> int:
    started = time.monotonic()
    tty = sys.stderr.isatty()
    while True:
        try:
            head, done = _positions()
        except Exception as exc:  # a projection has not created its tables yet
            head, done = -1, {}
            last_error = type(exc).__name__
        else:
            last_error = ""
            line = "  ".join(f"{name} {pos:,}/{head:,}" for name, pos in done.items())
            if tty:
                sys.stderr.write(f"\rdemo: projections catching up: {line} ")
                sys.stderr.flush()
            if head >= 0 and done and all(pos >= head for pos in done.values()):
                if tty:
                    sys.stderr.write("\n")
                print(f"demo: projections up to date ({head:,} events)", file=sys.stderr)
                return 0
        if time.monotonic() - started > timeout:
            if tty:
                sys.stderr.write("\n")
            print(f"demo: projections still behind after {timeout:.0f} s {last_error}", file=sys.stderr)
            return 1
        time.sleep(1.0)


def _get(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def _value(figure: Any) -> Any:
    return figure.get("value") if isinstance(figure, dict) and "value" in figure else figure


def cmd_info(manifest_path: str) -> int:
    from shared.mint_token import mint_token

    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    codes = list(manifest["municipalities"])
    code = codes[0]
    chef = mint_token(role="chef", municipality=code)
    today = date.today()
    last_week = (today - timedelta(days=7)).isocalendar()
    week = f"{last_week.year}-W{last_week.week:02d}"
    month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    q = urllib.parse.urlencode
    # the caseworker with the longest worklist right now
    worklists = _get(f"{FOLLOWUP}/deadlines?{q({'municipality': code, 'state': 'overdue,due_soon'})}", chef)
    per_worker: Counter[tuple[str, str]] = Counter(
        (d["caseworker_id"], d["team_id"]) for d in worklists["deadlines"] if d.get("caseworker_id")
    )
    if per_worker:
        (worker, team), _ = per_worker.most_common(1)[0]
    else:
        loads = manifest["municipalities"][code]["caseload_at_end"]
        worker = max(sorted(loads), key=lambda w: loads[w])
        team = next(t for t, ws in manifest["municipalities"][code]["teams"].items() if worker in ws)
    teamleder = mint_token(role="teamleder", municipality=code, teams=[team])
    sagsbehandler = mint_token(role="sagsbehandler", municipality=code, teams=[team], caseworker_id=worker)
    weekly = f"{LEDELSESINFO}/reports/weekly?{q({'municipality': code, 'week': week})}"
    weekly_team = f"{LEDELSESINFO}/reports/weekly?{q({'municipality': code, 'week': week, 'team_id': team})}"
    monthly = f"{LEDELSESINFO}/reports/monthly?{q({'municipality': code, 'month': month})}"
    worklist = (
        f"{FOLLOWUP}/deadlines?{q({'municipality': code, 'caseworker_id': worker})}&state=overdue,due_soon"
    )
    figures = _get(weekly, chef)["figures"]
    mine = _get(worklist, sagsbehandler)["deadlines"]
    names = ", ".join(f"{c} {MUNICIPALITIES[c].name}" for c in codes)
    lines = sum(m["lines"] for m in manifest["municipalities"].values())
    out = [
        "",
        "=" * 100,
        f"Demo data: {names}; {manifest['start']} to {manifest['end']} (one year, seed {manifest['seed']}, "
        f"scale {manifest['scale']}), {lines:,} records imported.",
        "",
        f"Tokens for {code} {MUNICIPALITIES[code].name} (valid 8 hours; more: "
        f".venv/bin/python -m shared.mint_token --role chef --municipality {codes[-1]}):",
        f"  export CHEF={chef}",
        f"  export TEAMLEDER={teamleder}        # team {team}",
        f"  export SAGSBEHANDLER={sagsbehandler}        # caseworker {worker}, team {team}",
        "",
        f"Weekly report {week} (team leaders; here for the chef, the whole municipality):",
        f"  {weekly}",
        f"  curl -s -H \"Authorization: Bearer $CHEF\" '{weekly}'",
        f"  curl -s -H \"Authorization: Bearer $TEAMLEDER\" '{weekly_team}&format=csv'",
        "  -> "
        + ", ".join(
            f"{fid} {_value(figures.get(fid))}"
            for fid in (
                "underretninger_received",
                "open_cases",
                "caseload_mean",
                "acute_assessment_on_time_share",
            )
        ),
        "",
        f"Monthly report {month} (the political committee):",
        f"  {monthly}",
        f"  curl -s -H \"Authorization: Bearer $CHEF\" '{monthly}'",
        "",
        f"Worklist of caseworker {worker} (overdue and due within 7 days: {len(mine)} deadlines now):",
        f"  {worklist}",
        f"  curl -s -H \"Authorization: Bearer $SAGSBEHANDLER\" '{worklist}'",
        "",
        f"Also: {FOLLOWUP}/caseload?municipality={code} (chef), the OpenAPI pages "
        f"{INTAKE}/docs {FOLLOWUP}/docs {LEDELSESINFO}/docs",
        "Services: intake :8001, followup :8002, ledelsesinfo :8003 (logs: .run/demo/services.log). "
        "Ctrl-C stops everything.",
        "=" * 100,
    ]
    print("\n".join(out), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synth.demo")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("start")
    w = sub.add_parser("wait")
    w.add_argument("--timeout", type=float, default=900.0)
    i = sub.add_parser("info")
    i.add_argument("--manifest", required=True)
    args = p.parse_args(argv)
    if args.command == "start":
        return cmd_start()
    if args.command == "wait":
        return cmd_wait(args.timeout)
    return cmd_info(args.manifest)


if __name__ == "__main__":
    raise SystemExit(main())
