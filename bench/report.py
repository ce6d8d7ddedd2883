"""One results table from the separate benchmarks' JSON files (pure: no I/O but what the caller passes).

Every row: area, benchmark, mode ("embedded" = SQLite + SQL event log, "kafka+postgres"), measured,
unit, raw (the raw baseline measured in the same run), raw_label, ratio (measured / raw), target
(text) and met (True / False / None when the row has no target).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

EMBEDDED = "embedded"
PRODUCTION = "kafka+postgres"

Row = dict[str, Any]


def row(
    area: str,
    benchmark: str,
    mode: str,
    measured: float | None,
    unit: str,
    *,
    raw: float | None = None,
    raw_label: str = "",
    target: str = "",
    met: bool | None = None,
) -> Row:
    ratio = round(measured / raw, 3) if measured is not None and raw else None
    return {
        "area": area,
        "benchmark": benchmark,
        "mode": mode,
        "measured": measured,
        "unit": unit,
        "raw": raw,
        "raw_label": raw_label,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def below(value: float | None, bound: float) -> bool | None:
    return None if value is None else value < bound


def judge(target: str, value: float | None) -> bool | None:
    """A target written "< 500" or ">= 200" (a number after the operator) against a value."""
    parts = target.split()
    if value is None or len(parts) < 2 or parts[0] not in ("<", ">="):
        return None
    try:
        bound = float(parts[1].replace(",", ""))
    except ValueError:
        return None
    return below(value, bound) if parts[0] == "<" else at_least(value, bound)


# --- the separate benchmarks' documents -> rows -------------------------------------------------


def backbone_rows(doc: list[dict[str, Any]]) -> list[Row]:
    """bench.backbone: append / relay / consume over PostgreSQL + Kafka beside COPY and bare kafka-python."""
    return [
        row(
            "backbone",
            r["benchmark"],
            PRODUCTION,
            r["events_per_s"],
            "events/s",
            raw=r["baseline_events_per_s"],
            raw_label=r["baseline"],
        )
        for r in doc
    ]


def intake_rows(doc: dict[str, Any]) -> list[Row]:
    """bench.intake: bulk import (service layer, HTTP, 2x file) and single POST under load."""
    mode = EMBEDDED if doc["store"] == "sqlite" else PRODUCTION
    targets = doc.get("targets", {})
    bulk_target = float(targets.get("bulk_records_per_s", 50_000))
    single_target = float(targets.get("single_records_per_s", 1_000))
    p99_target = float(targets.get("single_p99_ms", 50))
    out: list[Row] = []
    for r in doc["rows"]:
        name = r["benchmark"]
        rate = r.get("records_per_s")
        raw, raw_label = r.get("baseline_per_s"), r.get("baseline", "")
        if name.startswith("single POST"):
            out.append(
                row(
                    "intake",
                    f"{name}: accepted records/s",
                    mode,
                    rate,
                    "records/s",
                    raw=raw,
                    raw_label=raw_label,
                    target=f">= {single_target:g}",
                    met=at_least(rate, single_target),
                )
            )
            p99 = r.get("p99_ms")
            out.append(
                row(
                    "intake",
                    f"{name}: p99 latency",
                    mode,
                    p99,
                    "ms",
                    target=f"< {p99_target:g}",
                    met=below(p99, p99_target),
                )
            )
            per_transaction = r.get("records_per_transaction")
            if per_transaction is not None:
                label = f"{name}: records per transaction (group commit)"
                out.append(row("intake", label, mode, per_transaction, "records"))
        elif "2x" in name:
            growth = r.get("rss_growth_mib_vs_1x")
            out.append(
                row(
                    "intake",
                    f"{name}: peak RSS growth vs 1x file",
                    mode,
                    growth,
                    "MiB",
                    target="flat (< 10 MiB)",
                    met=below(growth, 10),
                )
            )
        else:
            out.append(
                row(
                    "intake",
                    f"{name}, {r['records']} records",
                    mode,
                    rate,
                    "records/s",
                    raw=raw,
                    raw_label=raw_label,
                    target=f">= {bulk_target:g}",
                    met=at_least(rate, bulk_target),
                )
            )
    return out


# the first entry whose prefix fits a row's name judges it (the longer names first)
_PROJECTION_TARGETS: tuple[tuple[str, str, Callable[[Row, dict[str, Any]], bool | None]], ...] = (
    ("ledelsesinfo projector peak RSS", "< 300", lambda r, _d: below(r["measured"], 300)),
    ("follow-up rebuild peak RSS", "", lambda _r, _d: None),
    (
        "follow-up rebuild",
        ">= 50000 and >= 0.5 x raw",
        lambda r, _d: (
            None
            if r["measured"] is None
            else r["measured"] >= 50_000 and (r["raw"] is None or r["measured"] >= 0.5 * r["raw"])
        ),
    ),
    ("ledelsesinfo rebuild", ">= 50000", lambda r, _d: at_least(r["measured"], 50_000)),
    ("GET /deadlines p95", "< 50", lambda r, _d: below(r["measured"], 50)),
    ("weekly report p95", "< 20, not growing with history", lambda r, d: _flat(r, d, "weekly")),
    ("monthly report p95", "< 20, not growing with history", lambda r, d: _flat(r, d, "monthly")),
)


def _flat(r: Row, doc: dict[str, Any], kind: str) -> bool | None:
    """Under 20 ms, and after five years at most 1.5x the one-year latency (noise allowance)."""
    if r["measured"] is None:
        return None
    if r["measured"] >= 20:
        return False
    one_year = next(
        (
            x["measured"]
            for x in doc["rows"]
            if x["benchmark"].startswith(f"{kind} report p95") and "1 year" in x["benchmark"]
        ),
        None,
    )
    return one_year is None or r["measured"] <= 1.5 * max(one_year, 1.0)


def projection_rows(doc: dict[str, Any], mode: str = EMBEDDED) -> list[Row]:
    """bench.projections: rebuild rates beside the raw read+decode rate, memory, read latencies."""
    out: list[Row] = []
    for r in doc["rows"]:
        if r.get("measured") is None:
            continue
        area = (
            "ledelsesinfo"
            if ("ledelsesinfo" in r["benchmark"] or "report" in r["benchmark"])
            else "follow-up"
            if ("follow-up" in r["benchmark"] or "deadlines" in r["benchmark"])
            else "backbone"
        )
        label = ""
        if r.get("raw"):
            label = (
                "peak RSS of the raw reader"
                if r["unit"] == "MB"
                else "read + decode every event of the same log"
            )
        new = row(area, r["benchmark"], mode, r["measured"], r["unit"], raw=r.get("raw"), raw_label=label)
        if r.get("ratio") is not None and new["ratio"] is None:
            new["ratio"] = r["ratio"]
        for prefix, target, judge_row in _PROJECTION_TARGETS:
            if r["benchmark"].startswith(prefix):
                new["target"], new["met"] = target, judge_row(new, doc)
                break
        out.append(new)
    return out


def visibility_rows(rows: Iterable[dict[str, Any]], mode: str) -> list[Row]:
    """bench.visibility: POST /records -> visible in GET /cases at a steady rate."""
    out: list[Row] = []
    for r in rows:
        if ", p95 " in r["benchmark"] or ", max " in r["benchmark"]:
            continue  # in the benchmark's own table (parts/visibility.md)
        target = str(r.get("target") or "")
        met = judge(target, r.get("measured"))
        out.append(
            row(
                "follow-up",
                r["benchmark"],
                mode,
                r.get("measured"),
                r.get("unit", "ms"),
                raw=r.get("raw"),
                raw_label="the POST itself (its own p99)" if r.get("raw") else "",
                target=target,
                met=met,
            )
        )
    return out


# --- Markdown -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/")


def markdown(rows: list[Row], header: str = "") -> str:
    lines = [header, ""] if header else []
    lines += [
        "| area | benchmark | mode | measured | unit | raw baseline, same run | raw | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (
            r["area"],
            r["benchmark"],
            r["mode"],
            r["measured"],
            r["unit"],
            r["raw_label"],
            r["raw"],
            r["ratio"],
            r["target"],
            r["met"],
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def side_by_side(rows: list[Row]) -> str:
    """The benchmarks run in both modes, embedded beside Kafka + PostgreSQL."""
    pairs: dict[str, dict[str, Row]] = {}
    for r in rows:
        key = _strip_mode(r["benchmark"])
        pairs.setdefault(key, {})[r["mode"]] = r
    lines = [
        f"| benchmark | unit | {EMBEDDED} | {PRODUCTION} | {PRODUCTION} / {EMBEDDED} |",
        "|---|---|---|---|---|",
    ]
    for name, by_mode in pairs.items():
        if EMBEDDED not in by_mode or PRODUCTION not in by_mode:
            continue
        a, b = by_mode[EMBEDDED]["measured"], by_mode[PRODUCTION]["measured"]
        ratio = round(b / a, 3) if a and b is not None else None
        lines.append(
            f"| {_cell(name)} | {by_mode[EMBEDDED]['unit']} | {_cell(a)} | {_cell(b)} | {_cell(ratio)} |"
        )
    return "\n".join(lines)


def _strip_mode(name: str) -> str:
    for tag in (" (embedded SQLite)", " (Kafka + PostgreSQL)", " (embedded)", " (kafka+postgres)"):
        name = name.replace(tag, "")
    for tag in ("(embedded SQLite; ", "(Kafka + PostgreSQL; "):
        name = name.replace(tag, "(")
    return name


def summary(rows: list[Row]) -> dict[str, int]:
    judged = [r for r in rows if r["met"] is not None]
    return {"rows": len(rows), "with_target": len(judged), "met": sum(1 for r in judged if r["met"])}
