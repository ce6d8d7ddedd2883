"""Fixtures for the ledelsesinfo tests: a temp-file SQLite database with the projection's tables and a
harness that feeds events through `LedelsesinfoProjection.apply` and reads reports back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from services.ledelsesinfo import store, tables
from services.ledelsesinfo.domain.periods import MONTH, WEEK, month_index, week_index
from services.ledelsesinfo.projection import LedelsesinfoProjection
from services.ledelsesinfo.reports import (
    Report,
    monthly_point_periods,
    monthly_report,
    report_json,
    weekly_report,
)
from shared.casework.rules import RuleSettings
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from tests.ledelsesinfo.factory import Child

LATER = datetime(2031, 1, 1, tzinfo=UTC)  # a report made long after: every deadline has passed


class Harness:
    def __init__(self, engine: Engine, rules: RuleSettings | None = None) -> None:
        self.engine = engine
        self.projection = LedelsesinfoProjection(rules)

    def feed(self, *sources: Child | Iterable[EventEnvelope]) -> None:
        events: list[EventEnvelope] = []
        for s in sources:
            events.extend(s.events if isinstance(s, Child) else s)
        with self.engine.begin() as conn:
            self.projection.apply(conn, events)

    def weekly_report(
        self,
        week: str,
        team: str | None = None,
        cw: str | None = None,
        now: datetime = LATER,
        municipality: str = "657",
        target: int = 25,
    ) -> Report:
        scope = store.Scope(team, cw)
        with self.engine.connect() as conn:
            points = store.read_points(conn, municipality, WEEK, [week_index(week)], scope)
            state = store.read_state(conn, municipality, WEEK, week_index(week), scope)
        return weekly_report(
            municipality=municipality,
            week=week,
            team_id=team,
            caseworker_id=cw,
            points=points,
            state=state,
            generated_at=now,
            caseload_target=target,
        )

    def monthly_report(
        self, month: str, team: str | None = None, now: datetime = LATER, municipality: str = "657"
    ) -> Report:
        scope = store.Scope(team)
        with self.engine.connect() as conn:
            points = store.read_points(conn, municipality, MONTH, monthly_point_periods(month), scope)
            state = store.read_state(conn, municipality, MONTH, month_index(month), scope)
        return monthly_report(
            municipality=municipality, month=month, team_id=team, points=points, state=state, generated_at=now
        )

    def weekly(self, week: str, **kw: Any) -> dict[str, Any]:
        figures: dict[str, Any] = report_json(self.weekly_report(week, **kw))["figures"]
        return figures

    def monthly(self, month: str, **kw: Any) -> dict[str, Any]:
        figures: dict[str, Any] = report_json(self.monthly_report(month, **kw))["figures"]
        return figures


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'ledelsesinfo.db'}")
    tables.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def h(engine: Engine) -> Harness:
    return Harness(engine)
