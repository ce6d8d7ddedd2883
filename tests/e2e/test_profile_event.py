"""A `chef`'s change of the cadence profile and caseload target reaches every service through the
shared log (`CadenceProfileChanged` on `municipality-{m}`), on both transports, and survives a
replay: follow-up's worklist and caseload and ledelsesinfo's weekly report agree."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.followup.__main__ import main as followup_main
from services.followup.app import create_app as followup_app
from services.ledelsesinfo.__main__ import replay as ledelsesinfo_replay
from services.ledelsesinfo.app import create_app as ledelsesinfo_app
from shared.db import make_engine
from shared.eventstore.schema import events
from shared.migrations import migrate_service
from tests.e2e.stack import Stack, running_stack

CPH = ZoneInfo("Europe/Copenhagen")
CPRS = ("0101154123", "0202164124", "0303174125")
TIGHTER = {
    "non_placement_first": {"amount": 1, "unit": "weeks"},
    "non_placement_then": {"amount": 2, "unit": "weeks"},
}


@pytest.fixture(params=["sql", pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.postgres])])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(request.param, tmp_path, request) as s:
        yield s


def rec(rid: str, type_: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "record_id": rid,
        "type": type_,
        "municipality": "657",
        "occurred_at": at.isoformat(),
        "data": data,
    }


def records(t0: datetime) -> list[dict[str, Any]]:
    """Three open cases of sr-a; on the first a family treatment (not a placement) starts and its
    first follow-up is held at once. Everything happens shortly after the profile change (records
    may lie up to 24 hours ahead), so the new profile governs its deadlines."""
    m = timedelta(minutes=1)
    out = [
        rec("p1", "CaseOpened", t0, case_id="S1", child={"cpr": CPRS[0]}, team_id="syd"),
        rec("p2", "CaseworkerAssigned", t0 + m, case_id="S1", caseworker_id="sr-a"),
        rec(
            "p3",
            "MeasureStarted",
            t0 + 5 * m,
            case_id="S1",
            measure_id="M1",
            measure_type="familiebehandling",
        ),
        rec("p4", "FollowUpHeld", t0 + 10 * m, case_id="S1", measure_id="M1"),
    ]
    for i, cpr in enumerate(CPRS[1:], start=2):
        out += [
            rec(f"p{i}a", "CaseOpened", t0 + 20 * m, case_id=f"S{i}", child={"cpr": cpr}, team_id="syd"),
            rec(f"p{i}b", "CaseworkerAssigned", t0 + 21 * m, case_id=f"S{i}", caseworker_id="sr-a"),
        ]
    return out


def end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), CPH)


def week_of(moment: datetime) -> tuple[str, datetime]:
    """The ISO week of `moment` (Copenhagen) and its end (the next Monday 00:00 Copenhagen)."""
    day = moment.astimezone(CPH).date()
    year, week, weekday = day.isocalendar()
    return f"{year}-W{week:02d}", end_of_day(day + timedelta(days=7 - weekday))


class Answers:
    """What a leader asks both services, at the end of a week."""

    def __init__(
        self, stack: Stack, followup: TestClient, ledelsesinfo: TestClient, week: str, end: datetime
    ):
        chef = stack.headers("chef")
        at = end.isoformat()
        params = {"municipality": "657", "at": at}
        self.deadlines = followup.get("/deadlines", params=params, headers=chef).json()["deadlines"]
        overdue = followup.get("/deadlines", params={**params, "state": "overdue"}, headers=chef)
        assert overdue.status_code == 200, overdue.text
        self.overdue = Counter(d["deadline"] for d in overdue.json()["deadlines"])
        self.caseload = followup.get("/caseload", params=params, headers=chef).json()
        self.profile = followup.get("/profiles/657", headers=chef).json()
        weekly = ledelsesinfo.get(
            "/reports/weekly", params={"municipality": "657", "week": week}, headers=chef
        )
        assert weekly.status_code == 200, weekly.text
        self.figures = weekly.json()["figures"]

    def due(self, deadline: str) -> datetime:
        found = [d["due"] for d in self.deadlines if d["deadline"] == deadline and d["measure_id"] == "M1"]
        assert len(found) == 1, (deadline, self.deadlines)
        return datetime.fromisoformat(found[0])

    def report_overdue(self) -> dict[str, Any]:
        return {k: v for k, v in self.figures["overdue_deadlines"].items() if v}

    def comparable(self) -> tuple[Any, ...]:
        return (
            sorted(json.dumps(d, sort_keys=True) for d in self.deadlines),
            self.overdue,
            {k: v for k, v in self.caseload.items() if k != "at"},
            self.profile,
            self.figures["overdue_deadlines"],
            self.figures["caseworkers_behind"],
            self.figures["caseworkers_over_target"],
            self.figures["open_cases"],
        )


def test_a_profile_change_reaches_every_service_and_survives_a_replay(
    stack: Stack, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # the change is not a record: intake refuses it as an unknown type
    sneaked = rec(
        "x1", "CadenceProfileChanged", datetime.now(UTC), profile={}, caseload_target=1, changed_by="x"
    )
    refused = stack.post(sneaked)
    assert refused.status_code == 422, refused.text
    assert "type" in refused.text

    t0 = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
    held = (t0 + timedelta(minutes=10)).astimezone(CPH).date()
    result = stack.bulk(records(t0)).json()
    assert result["accepted"] == len(records(t0)), result
    stack.sync()
    week, end = week_of(t0 + timedelta(days=21))

    # before: Herning's profile (non-placements: first follow-up after 4 weeks, then every 3 months)
    before = Answers(stack, stack.followup, stack.ledelsesinfo, week, end)
    start = t0.astimezone(CPH).date()
    assert before.due("first_follow_up") == end_of_day(start + timedelta(weeks=4))
    assert before.due("follow_up") > end  # three months on
    assert before.overdue == Counter() and before.report_overdue() == {}
    assert before.caseload["target"] == 25 and before.figures["caseworkers_over_target"] == 0

    # the chef tightens the profile and lowers the target
    chef = stack.headers("chef")
    put = stack.followup.put("/profiles/657", json={"profile": TIGHTER, "caseload_target": 2}, headers=chef)
    assert put.status_code == 200, put.text
    assert put.json()["caseload_target"] == 2 and put.json()["changed_by"] == "chef-e2e"
    stack.sync()

    # the event is in the log once, whole, and without a CPR number
    engine = make_engine(stack.intake.app.state.settings.event_store_url)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.type == "CadenceProfileChanged")).all()
        everything = " ".join(r.data for r in conn.execute(select(events.c.data)))
    engine.dispose()
    assert len(rows) == 1
    row = rows[0]
    assert (row.stream_id, row.version, row.municipality) == ("municipality-657", 1, "657")
    data = json.loads(row.data)
    assert data["caseload_target"] == 2 and data["changed_by"] == "chef-e2e"
    assert data["profile"] == put.json()["profile"]
    assert data["profile"]["non_placement_then"] == TIGHTER["non_placement_then"]
    assert data["profile"]["placement_first"] == {"amount": 2, "unit": "weeks"}  # the whole profile
    assert not any(cpr in row.data or cpr in everything for cpr in CPRS)

    after = Answers(stack, stack.followup, stack.ledelsesinfo, week, end)
    assert after.due("first_follow_up") == end_of_day(start + timedelta(weeks=1))
    assert after.due("follow_up") == end_of_day(held + timedelta(weeks=2))
    # overdue at the week's end: the follow-up two weeks after the one held; follow-up and the
    # weekly report agree
    assert after.overdue == Counter({"follow_up": 1})
    assert after.report_overdue() == dict(after.overdue)
    assert after.figures["caseworkers_behind"] == [{"caseworker_id": "sr-a", "overdue": 1}]
    # the target: sr-a's three open cases are over two
    assert after.caseload["target"] == 2
    assert after.caseload["caseworkers"] == [
        {"caseworker_id": "sr-a", "open_cases": 3, "target": 2, "over_target": True}
    ]
    assert after.figures["caseworkers_over_target"] == 1

    # both projections replayed from the log into fresh databases answer the same
    fu_settings = stack.followup.app.state.settings  # type: ignore[attr-defined]
    li_settings = stack.ledelsesinfo.app.state.settings  # type: ignore[attr-defined]
    if stack.transport == "sql":
        fresh = {svc: f"sqlite:///{tmp_path}/{svc}-replay.db" for svc in ("followup", "ledelsesinfo")}
    else:
        server = request.getfixturevalue("postgres_server")
        fresh = {svc: server.create_database() for svc in ("followup", "ledelsesinfo")}
    for svc, url in fresh.items():
        migrate_service(svc, url)
    group = {"kafka_group_id": f"{fu_settings.kafka_topic}-replay"} if stack.transport == "kafka" else {}
    fu_fresh = fu_settings.model_copy(update={"database_url": fresh["followup"], **group})
    li_fresh = li_settings.model_copy(
        update={
            "database_url": fresh["ledelsesinfo"],
            **({"kafka_group_id": f"{group['kafka_group_id']}-li"} if group else {}),
        }
    )
    assert followup_main(["replay"], settings=fu_fresh) == 0
    ledelsesinfo_replay(li_fresh)
    with TestClient(followup_app(fu_fresh)) as fu, TestClient(ledelsesinfo_app(li_fresh)) as li:
        replayed = Answers(stack, fu, li, week, end)
    assert replayed.comparable() == after.comparable()
