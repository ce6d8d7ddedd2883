"""The follow-up service's own metric: deadlines overdue now, per deadline id and municipality.

Computed at scrape time by one grouped COUNT over the open deadlines already due (the same rule as
`GET /deadlines?state=overdue`, `services.followup.queries`), so it is always the worklists' truth.
Every (deadline, municipality) pair of a municipality with deadlines is exposed, zero included, so
that dashboards and alerts see a 0 rather than a missing series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select

from services.followup.queries import _state_condition
from services.followup.tables import fu_deadlines as d
from shared.casework.calendar import as_utc
from shared.casework.deadlines import DEADLINE_IDS
from shared.db import read_only
from shared.observability import FunctionCollector

OVERDUE_METRIC = "followup_deadlines_overdue"


def overdue_counts(engine: Engine, at: datetime) -> dict[tuple[str, str], int]:
    """{(deadline, municipality): deadlines overdue at `at`} for every municipality with deadlines."""
    t = as_utc(at)
    with read_only(engine).connect() as conn:
        municipalities = conn.execute(select(d.c.municipality).distinct()).scalars().all()
        rows = conn.execute(
            select(d.c.deadline, d.c.municipality, func.count())
            .where(d.c.starts_at <= t, _state_condition("overdue", t))
            .group_by(d.c.deadline, d.c.municipality)
        ).all()
    counts = {(deadline, m): 0 for m in municipalities for deadline in DEADLINE_IDS}
    for deadline, municipality, n in rows:
        counts[(deadline, municipality)] = int(n)
    return counts


def overdue_collector(engine: Engine, clock: Callable[[], datetime] | None = None) -> FunctionCollector:
    now = clock or (lambda: datetime.now(UTC))

    def collect() -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            OVERDUE_METRIC,
            "Deadlines (frister) overdue now: open, past their due time; by deadline id and municipality.",
            labels=["deadline", "municipality"],
        )
        for (deadline, municipality), n in sorted(overdue_counts(engine, now()).items()):
            gauge.add_metric([deadline, municipality], n)
        yield gauge

    return FunctionCollector(OVERDUE_METRIC, collect)
