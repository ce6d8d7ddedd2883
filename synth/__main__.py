"""Generate a synthetic record stream (NDJSON, domain.md §3).

    python -m synth --seed 1 --years 1 --municipalities 101,657,751 --start 2025-11-01 \\
        --out FILE.ndjson [--scale 1.0] [--late-share 0.03] [--warmup-years 2] [--manifest M.json]
        [--until 2026-11-23T09:00:00+01:00]

`--out` may contain `{municipality}` to write one file per municipality (what
`python -m services.intake import FILE --municipality M` wants), or be `-` for stdout.
`--municipalities all` (the default) generates the 98 municipalities at national volume.
`--manifest` writes the teams and caseworkers of each municipality as JSON (the demo uses it).
The same arguments give byte-identical output. A summary goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from synth.generator import Config, MunicipalityResult, write
from synth.municipalities import MUNICIPALITIES, parse_codes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m synth", description="Synthetic DUBU-like record streams")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--years", type=int, default=1, help="length of the period in years (default 1)")
    p.add_argument(
        "--until",
        default=None,
        help="end the period at this instant instead (ISO 8601 with offset, e.g. an export taken now)",
    )
    p.add_argument("--municipalities", default="all", help="comma-separated kommunekoder, or all (default)")
    p.add_argument("--start", required=True, help="first day of the period, YYYY-MM-DD")
    p.add_argument("--out", required=True, help="output file; {municipality} for one file each; - = stdout")
    p.add_argument("--scale", type=float, default=1.0, help="volume relative to the national level (1.0)")
    p.add_argument("--late-share", type=float, default=None, help="share of lines arriving late (0.03)")
    p.add_argument("--warmup-years", type=int, default=2, help="years simulated before the start (2)")
    p.add_argument("--manifest", default=None, help="write teams and caseworkers to this JSON file")
    p.add_argument("--quiet", action="store_true")
    return p


def _manifest(cfg: Config, results: list[MunicipalityResult]) -> dict[str, Any]:
    return {
        "seed": cfg.seed,
        "start": cfg.start.isoformat(),
        "end": cfg.until.isoformat() if cfg.until else cfg.end.isoformat(),
        "scale": cfg.scale,
        "municipalities": {
            r.code: {
                "name": MUNICIPALITIES[r.code].name,
                "lines": r.lines,
                "records_by_type": dict(sorted(r.by_type.items())),
                "teams": r.teams,
                "caseload_at_end": r.caseload_at_end,
            }
            for r in results
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        kwargs: dict[str, Any] = {
            "seed": args.seed,
            "start": date.fromisoformat(args.start),
            "years": args.years,
            "municipalities": tuple(parse_codes(args.municipalities)),
            "scale": args.scale,
            "warmup_years": args.warmup_years,
        }
        if args.until:
            kwargs["until"] = datetime.fromisoformat(args.until)
        if args.late_share is not None:
            kwargs["late_share"] = args.late_share
        cfg = Config(**kwargs)
    except ValueError as exc:
        print(f"python -m synth: {exc}", file=sys.stderr)
        return 2
    if cfg.t_end > time.time() + 86_400 and not args.quiet:
        print(
            "python -m synth: note: the period ends after tomorrow; intake rejects records "
            "more than 24 hours in the future",
            file=sys.stderr,
        )
    started = time.monotonic()
    show = not args.quiet and sys.stderr.isatty()

    def progress(n: int) -> None:
        if show:
            rate = n / max(time.monotonic() - started, 1e-6)
            sys.stderr.write(f"\rsynth: {n:,} records  {rate:,.0f} records/s ")
            sys.stderr.flush()

    if args.out == "-":
        results = write(cfg, "-", opener=lambda _: _Stdout(), on_line=progress)
    else:
        results = write(cfg, args.out, on_line=progress)
    elapsed = time.monotonic() - started
    total = sum(r.lines for r in results)
    if show:
        sys.stderr.write("\n")
    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as fh:
            json.dump(_manifest(cfg, results), fh, ensure_ascii=False, indent=1)
            fh.write("\n")
    if not args.quiet:
        print(
            f"synth: {total:,} records for {len(results)} municipalities, {cfg.start} to "
            f"{cfg.until.isoformat() if cfg.until else cfg.end} "
            f"(seed {cfg.seed}, scale {cfg.scale}) in {elapsed:,.1f} s "
            f"({total / max(elapsed, 1e-6):,.0f} records/s)",
            file=sys.stderr,
        )
    return 0


class _Stdout:
    def __enter__(self) -> Any:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
