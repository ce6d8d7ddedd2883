"""What a generated stream looks like, measured from its lines alone (used by the tests and by
`python -m synth.stats FILE --start YYYY-MM-DD [--years N]`).

The measures mirror `synth.targets`: notifier and severity shares of underretninger received in
the period, underretninger per notified child and the share of children with two or more, the
share assessed within 24 hours, the funnel of new children (first underretning in the first half
of the period, none earlier in the stream), the caseload at the end, and the share of the period's
lines that arrive after a line with a later `occurred_at` (late / out of order).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from synth.clock import start_of
from synth.generator import PLACEMENT_TYPES

FAMILY_CODES = frozenset({"7", "13"})


@dataclass
class Stats:
    lines: int = 0
    period_lines: int = 0  # lines with occurred_at in the period
    out_of_order: int = 0  # ... written after a line with a later occurred_at
    by_type: Counter[str] = field(default_factory=Counter)
    received: int = 0  # underretninger received in the period
    notifier: Counter[str] = field(default_factory=Counter)  # 7 and 13 counted as "family"
    severity: Counter[str] = field(default_factory=Counter)
    children: int = 0  # distinct children with an underretning in the period
    repeat_children: int = 0  # ... with two or more
    assessed_due: int = 0  # received in the period, at least 24 h before its end
    assessed_in_24h: int = 0
    new_children: int = 0  # funnel base
    funnel: Counter[str] = field(default_factory=Counter)  # case, investigation, measure, placement
    caseloads: list[int] = field(default_factory=list)  # open cases per caseworker (>= 1) at the end

    def share(self, counter: Counter[str], key: str) -> float:
        total = sum(counter.values())
        return counter[key] / total if total else 0.0

    @property
    def per_child(self) -> float:
        return self.received / self.children if self.children else 0.0

    @property
    def repeat_share(self) -> float:
        return self.repeat_children / self.children if self.children else 0.0

    @property
    def assessed_share(self) -> float:
        return self.assessed_in_24h / self.assessed_due if self.assessed_due else 0.0

    def funnel_share(self, step: str) -> float:
        return self.funnel[step] / self.new_children if self.new_children else 0.0

    @property
    def late_share(self) -> float:
        return self.out_of_order / self.period_lines if self.period_lines else 0.0

    @property
    def caseload_mean(self) -> float:
        return sum(self.caseloads) / len(self.caseloads) if self.caseloads else 0.0

    def as_dict(self) -> dict[str, Any]:
        notifiers = {k: round(self.share(self.notifier, k), 4) for k in sorted(self.notifier)}
        return {
            "lines": self.lines,
            "late_share": round(self.late_share, 4),
            "received": self.received,
            "notifier_shares": notifiers,
            "severity_shares": {k: round(self.share(self.severity, k), 4) for k in sorted(self.severity)},
            "children": self.children,
            "underretninger_per_child": round(self.per_child, 3),
            "repeat_child_share": round(self.repeat_share, 4),
            "assessed_within_24h": round(self.assessed_share, 4),
            "new_children": self.new_children,
            "funnel": {
                k: round(self.funnel_share(k), 4) for k in ("case", "investigation", "measure", "placement")
            },
            "caseworkers": len(self.caseloads),
            "caseload_mean": round(self.caseload_mean, 2),
            "caseload_min": min(self.caseloads, default=0),
            "caseload_max": max(self.caseloads, default=0),
            "by_type": dict(sorted(self.by_type.items())),
        }


def _child_key(municipality: str, child: dict[str, Any]) -> str:
    if "cpr" in child:
        return f"{municipality}:{child['cpr']}"
    return f"{municipality}:unborn:{child['mother_cpr']}:{child['expected_birth']}"


def measure(lines: Iterable[str | dict[str, Any]], start: date, end: date) -> Stats:
    """Stats of a stream (lines or decoded records) for the period [start, end)."""
    t0, t1 = start_of(start), start_of(end)
    half = start_of(start + (end - start) / 2)
    st = Stats()
    max_seen = -1.0
    first_seen: dict[str, tuple[float, str]] = {}  # child -> first underretning in the stream (t, key)
    child_count: Counter[str] = Counter()
    received_at: dict[str, tuple[float, str]] = {}  # (municipality, underretning) -> (t, child)
    assessed_at: dict[str, float] = {}
    case_of_underretning: dict[str, str] = {}
    case_events: dict[str, list[tuple[float, str, str | None]]] = {}  # case -> (t, type, arg)
    records: list[dict[str, Any]] = []
    for item in lines:
        rec = json.loads(item) if isinstance(item, str) else item
        st.lines += 1
        t = datetime.fromisoformat(rec["occurred_at"]).timestamp()
        if t0 <= t < t1:
            st.period_lines += 1
            if t < max_seen:
                st.out_of_order += 1
        max_seen = max(max_seen, t)
        rtype, m, d = rec["type"], rec["municipality"], rec["data"]
        st.by_type[rtype] += 1
        records.append({"t": t, "type": rtype, "m": m, "d": d})
    # the rest in occurred_at order (ties: file order)
    records.sort(key=lambda r: r["t"])
    for r in records:
        t, rtype, m, d = r["t"], r["type"], r["m"], r["d"]
        if rtype == "UnderretningReceived":
            child = _child_key(m, d["child"])
            u_key = f"{m}:{d['underretning_id']}"
            first_seen.setdefault(child, (t, u_key))
            received_at[u_key] = (t, child)
            if t0 <= t < t1:
                st.received += 1
                code = d["notifier"]
                st.notifier["family" if code in FAMILY_CODES else code] += 1
                st.severity[d["severity"]] += 1
                child_count[child] += 1
        elif rtype == "UnderretningAssessed":
            assessed_at.setdefault(f"{m}:{d['underretning_id']}", t)
        elif rtype == "CaseOpened":
            if d.get("underretning_id"):
                case_of_underretning[f"{m}:{d['underretning_id']}"] = f"{m}:{d['case_id']}"
            case_events.setdefault(f"{m}:{d['case_id']}", []).append((t, rtype, None))
        elif "case_id" in d:
            arg = d.get("kind") or d.get("measure_type") or d.get("caseworker_id")
            case_events.setdefault(f"{m}:{d['case_id']}", []).append((t, rtype, arg))
    st.children = len(child_count)
    st.repeat_children = sum(1 for n in child_count.values() if n >= 2)
    for key, (t, _) in received_at.items():
        if t0 <= t < t1 - 86_400:
            st.assessed_due += 1
            a = assessed_at.get(key)
            if a is not None and a - t <= 86_400:
                st.assessed_in_24h += 1
    # the funnel: what the first underretning of a new child led to (the case it opened)
    new = [u for t, u in first_seen.values() if t0 <= t < half]
    st.new_children = len(new)
    for u in new:
        case = case_of_underretning.get(u)
        if case is None:
            continue
        steps: set[str] = set()
        for _, rtype, arg in case_events.get(case, ()):
            if rtype == "CaseOpened":
                steps.add("case")
            elif rtype == "InvestigationStarted" and arg == "boernefaglig_undersoegelse":
                steps.add("investigation")
            elif rtype == "MeasureStarted":
                steps.add("measure")
                if arg in PLACEMENT_TYPES:
                    steps.add("placement")
        st.funnel.update(steps)
    # caseload at the end: open cases per current caseworker
    load: Counter[str] = Counter()
    for case, events in case_events.items():
        worker, closed = None, False
        for _, rtype, arg in sorted(events, key=lambda e: e[0]):
            if rtype == "CaseworkerAssigned":
                worker = arg
            elif rtype == "CaseClosed":
                closed = True
        if worker is not None and not closed:
            load[f"{case.split(':')[0]}:{worker}"] += 1
    st.caseloads = sorted(load.values())
    return st


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synth.stats", description="Measure a generated stream")
    p.add_argument("file")
    p.add_argument("--start", required=True, help="first day of the period, YYYY-MM-DD")
    p.add_argument("--years", type=int, default=1)
    args = p.parse_args(argv)
    start = date.fromisoformat(args.start)
    end = (
        start.replace(year=start.year + args.years)
        if not (start.month == 2 and start.day == 29)
        else (start + timedelta(days=365 * args.years))
    )
    with open(args.file, encoding="utf-8") as fh:
        st = measure(fh, start, end)
    json.dump(st.as_dict(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
