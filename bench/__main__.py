"""`make bench`: every benchmark of the project in one go, one results file.

    python -m bench [--scale standard|quick] [--modes embedded,kafka+postgres] [--out bench-results]

Runs, each in its own process and each beside a raw baseline measured in the same run:
- intake (bench.intake): bulk import and single POST under load, in each mode;
- POST -> visible (bench.visibility): a steady 200 records/s through intake and follow-up, in each mode;
- backbone (bench.backbone): append, outbox relay and consume over PostgreSQL + Kafka;
- projections (bench.projections): follow-up and ledelsesinfo rebuilds from a log of `--scale` size
  (standard: 1,000,000 events), read latencies, projector memory; on the embedded SQL log.
Writes OUT/bench.json (every row, the scale, the machine, each step's duration) and OUT/bench.md
(the table, the side-by-side table of the two modes); the separate benchmarks' own files go to
OUT/parts/. A step that fails is reported in both files and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.report import EMBEDDED, PRODUCTION, Row

ROOT = Path(__file__).resolve().parents[1]

SCALES: dict[str, dict[str, int]] = {
    # the issues' scales: >= 1M events rebuilt, >= 200,000 records imported, 200 records/s for 30 s
    "standard": {
        "projection_events": 1_000_000,
        "bulk_records": 200_000,
        "posts": 10_000,
        "backbone_events": 50_000,
        "visibility_seconds": 30,
    },
    "quick": {
        "projection_events": 60_000,
        "bulk_records": 20_000,
        "posts": 1_000,
        "backbone_events": 5_000,
        "visibility_seconds": 8,
    },
}


def machine() -> dict[str, Any]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _python(args: list[str], timeout: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited {done.returncode}: {done.stderr[-1500:]}")


def steps(scale: dict[str, int], modes: list[str], parts: Path) -> list[tuple[str, Callable[[], list[Row]]]]:
    """(name, run) of every step; each run returns its rows."""
    out: list[tuple[str, Callable[[], list[Row]]]] = []
    for mode in modes:
        db, transport = ("sqlite", "sql") if mode == EMBEDDED else ("postgres", "kafka")
        stem = "intake" if mode == EMBEDDED else "intake-postgres-kafka"

        def intake(db: str = db, transport: str = transport, stem: str = stem) -> list[Row]:
            _python(
                [
                    "-m",
                    "bench.intake",
                    "--db",
                    db,
                    "--transport",
                    transport,
                    "--records",
                    str(scale["bulk_records"]),
                    "--posts",
                    str(scale["posts"]),
                    "--max-seconds",
                    "120",
                    "--out",
                    str(parts),
                ],
                timeout=1200,
            )
            return report.intake_rows(json.loads((parts / f"{stem}.json").read_text()))

        out.append((f"intake ({mode})", intake))
    if modes:

        def visibility() -> list[Row]:
            transports = {EMBEDDED: "sql", PRODUCTION: "kafka"}
            which = "both" if len(modes) == 2 else transports[modes[0]]
            _python(
                [
                    "-m",
                    "bench.visibility",
                    "--transport",
                    which,
                    "--seconds",
                    str(scale["visibility_seconds"]),
                    "--rate",
                    "200",
                    "--out",
                    str(parts),
                ],
                timeout=900,
            )
            doc = json.loads((parts / "visibility.json").read_text())
            rows: list[Row] = []
            for r in doc["rows"] if isinstance(doc, dict) else doc:
                kafka = "Kafka" in r["benchmark"] or "kafka" in r["benchmark"]
                rows += report.visibility_rows([r], PRODUCTION if kafka else EMBEDDED)
            return rows

        out.append(("POST -> visible", visibility))
    if PRODUCTION in modes:

        def backbone() -> list[Row]:
            _python(
                ["-m", "bench.backbone", "--events", str(scale["backbone_events"]), "--out", str(parts)],
                timeout=900,
            )
            return report.backbone_rows(json.loads((parts / "backbone.json").read_text()))

        out.append(("backbone", backbone))

    def projections() -> list[Row]:
        _python(
            ["-m", "bench.projections", "--events", str(scale["projection_events"]), "--out", str(parts)],
            timeout=2400,
        )
        return report.projection_rows(json.loads((parts / "projections.json").read_text()))

    out.append(("projections", projections))
    return out


def run(scale_name: str, modes: list[str], out_dir: Path) -> int:
    scale = SCALES[scale_name]
    parts = out_dir / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[Row] = []
    durations: dict[str, float] = {}
    failures: dict[str, str] = {}
    for name, step in steps(scale, modes, parts):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rows += step()
        except Exception as exc:  # reported, the other steps still run
            failures[name] = str(exc)
            print(f"bench: {name} FAILED: {exc}", file=sys.stderr)
        durations[name] = round(time.perf_counter() - t0, 1)
        print(f"bench: {name} done in {durations[name]:.0f} s", file=sys.stderr, flush=True)
    total = round(time.perf_counter() - started, 1)
    info = machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = report.summary(rows)
    doc: dict[str, Any] = {
        "when": when,
        "scale": scale_name,
        "scale_values": scale,
        "modes": modes,
        "machine": info,
        "total_seconds": total,
        "step_seconds": durations,
        "failures": failures,
        "summary": summary,
        "rows": rows,
    }
    (out_dir / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    header = (
        f"Benchmarks, {when}, scale `{scale_name}` ({', '.join(f'{k}={v:,}' for k, v in scale.items())}); "
        f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, Python {info['python']}, "
        f"{info['system']}. Whole run {total / 60:.1f} min. "
        f"Targets met: {summary['met']} of {summary['with_target']}."
    )
    md = [
        report.markdown(rows, header),
        "",
        "Side by side, the same workload in both modes:",
        "",
        report.side_by_side(rows),
    ]
    if failures:
        md += ["", "Failed steps:", ""] + [
            f"- {k}: {v.splitlines()[0] if v else ''}" for k, v in failures.items()
        ]
    (out_dir / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", choices=sorted(SCALES), default="standard")
    p.add_argument(
        "--modes",
        default=f"{EMBEDDED},{PRODUCTION}",
        help=f"comma-separated: {EMBEDDED} (SQLite + SQL log), {PRODUCTION}",
    )
    p.add_argument("--out", default=str(ROOT / "bench-results"))
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {EMBEDDED, PRODUCTION}
    if unknown:
        p.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    return run(args.scale, modes, Path(args.out))


if __name__ == "__main__":
    raise SystemExit(main())
