"""The leaders' figures use exactly the rules of the caseworkers' worklists (shared/casework): at the
end of every week, `overdue_deadlines`, `caseworkers_behind` and `cases_by_phase` equal what the
shared engine's picture of each child says just before the week's end."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

import pytest

from services.ledelsesinfo.domain.periods import week_end, week_from_index, week_index
from shared.casework.child import project_child
from shared.casework.model import ChildPicture
from shared.events.envelope import EventEnvelope
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child, t
from tests.ledelsesinfo.test_projection import rich_events

EPS = timedelta(microseconds=1)
MEASURES = ("raadgivning", "familiebehandling", "plejefamilie", "opholdssted")


def _random_child(rng: random.Random, n: int) -> Child:
    """A child whose records come in a plausible order at random moments, with the irregularities
    real case work has: late and missing records, follow-ups with a caseworker's `next_due`,
    underretninger naming a case that has already closed, caseworker changes."""
    c = Child(f"r{n}")
    clock = t("2026-01-05 08:00") + timedelta(hours=rng.randrange(0, 24 * 200))

    def step(max_hours: int) -> str:
        nonlocal clock
        clock += timedelta(minutes=rng.randrange(1, 60 * max_hours))
        return clock.strftime("%Y-%m-%d %H:%M")

    team = rng.choice(("syd", "nord"))
    c.received(
        "u1",
        step(5),
        team=team,
        notifier=rng.choice(("2", "8")),
        reasons=rng.choice((("andet",), ("overgreb_andre",))),
    )
    if rng.random() < 0.7:
        c.assessed("u1", step(40))
    if rng.random() < 0.5:
        c.receipt("u1", step(200))
    c.opened("s", step(10), team=team, uid="u1")
    c.assigned("s", rng.choice(("anna", "bo", "carl")), step(5))
    if rng.random() < 0.5:
        c.inv_started("s", step(100))
        if rng.random() < 0.6:
            c.inv_completed("s", step(4000))
    for k in range(rng.randrange(0, 3)):
        mid = f"m{k}"
        c.measure("s", mid, rng.choice(MEASURES), step(300))
        if rng.random() < 0.5:
            c.plan("s", step(48))
        for _ in range(rng.randrange(0, 4)):
            nd = (clock + timedelta(days=rng.randrange(-3, 60))).strftime("%Y-%m-%d")
            c.follow_up("s", mid, step(1500), next_due=nd if rng.random() < 0.4 else None)
            if rng.random() < 0.3:
                c.visit("s", mid, step(500))
            if rng.random() < 0.2:
                c.assigned("s", rng.choice(("anna", "bo", "carl")), step(50))
        if rng.random() < 0.4:
            c.measure_ended("s", mid, step(2000))
    if rng.random() < 0.5:
        c.closed("s", step(3000))
        if rng.random() < 0.5:  # a late underretning naming the closed case
            c.received("u2", step(500), team=team, case_id="s", notifier="2")
    return c


def _events() -> list[EventEnvelope]:
    rng = random.Random(20261116)
    events = list(rich_events())
    for n in range(40):
        events.extend(_random_child(rng, n).events)
    return events


def _pictures(events: list[EventEnvelope]) -> list[ChildPicture]:
    by_stream: dict[str, list[EventEnvelope]] = {}
    for e in events:
        by_stream.setdefault(e.stream_id, []).append(e)
    return [project_child(evs) for evs in by_stream.values()]


def _worklist_at(
    pictures: list[ChildPicture], at: datetime, team: str | None = None
) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Overdue deadlines by id and by caseworker, and open cases by phase, just before `at`."""
    t0 = at - EPS
    overdue: Counter[str] = Counter()
    behind: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    for pic in pictures:
        if pic.municipality != "657":
            continue
        for d in pic.deadlines:
            if d.state_at(t0) == "overdue" and (team is None or d.team_id == team):
                overdue[d.deadline] += 1
                cw = pic.cases[d.case_id].caseworker_at(t0) if d.case_id in pic.cases else None
                if cw is not None:
                    behind[cw] += 1
        for case in pic.cases.values():
            phase = pic.phase_at(case.case_id, t0)
            if phase is not None and (team is None or case.team_id == team):
                phases[phase] += 1
    return overdue, behind, phases


@pytest.mark.parametrize("team", [None, "syd"])
def test_weekly_figures_equal_the_worklists(h: Harness, team: str | None) -> None:
    events = _events()
    h.feed(events)
    pictures = _pictures(events)
    checked = 0
    for index in range(week_index("2026-W02"), week_index("2027-W30"), 3):
        week = week_from_index(index)
        overdue, behind, phases = _worklist_at(pictures, week_end(week), team)
        figures = h.weekly(week, team=team)
        assert {k: v for k, v in figures["overdue_deadlines"].items() if v} == dict(overdue), week
        assert {k: v for k, v in figures["cases_by_phase"].items() if v} == dict(phases), week
        if team is None:
            got = {i["caseworker_id"]: i["overdue"] for i in figures["caseworkers_behind"]}
            assert got == dict(behind), week
        checked += sum(overdue.values())
    assert checked > 100  # the data has plenty of overdue deadlines to compare


def test_an_underretning_naming_a_closed_case_is_overdue_in_the_figures_as_on_the_worklist(
    h: Harness,
) -> None:
    c = Child()
    c.opened("s", "2026-11-02 09:00")
    c.closed("s", "2026-11-09 09:00")
    c.received("u1", "2026-11-16 10:00", case_id="s", notifier="8")  # after the case closed
    h.feed(c)
    (d,) = [d for d in project_child(c.events).deadlines if d.deadline == "acute_assessment"]
    assert d.state_at(week_end("2026-W47")) == "overdue"  # the case's end does not end it
    assert h.weekly("2026-W47")["overdue_deadlines"]["acute_assessment"] == 1


def test_overdue_deadlines_count_for_the_team_the_worklist_shows(h: Harness) -> None:
    c = Child()
    c.opened("s", "2026-11-02 09:00", team="nord")
    c.assigned("s", "anna", "2026-11-02 09:05")
    c.received("u1", "2026-11-16 10:00", team="syd", case_id="s", notifier="8")  # never assessed
    h.feed(c)
    (d,) = [d for d in project_child(c.events).deadlines if d.deadline == "acute_assessment"]
    assert d.team_id == "nord"  # the worklist's responsible team: the case's
    assert h.weekly("2026-W47", team="nord")["overdue_deadlines"]["acute_assessment"] == 1
    assert h.weekly("2026-W47", team="syd")["overdue_deadlines"]["acute_assessment"] == 0
    # the underretning itself and its on-time share stay with its own team (§6.1: "received")
    assert h.weekly("2026-W47", team="syd")["underretninger_received"] == 1
    assert h.weekly("2026-W47", team="syd")["acute_assessment_on_time_share"]["denominator"] == 1


def test_a_next_due_before_the_follow_up_is_overdue_only_from_the_follow_up(h: Harness) -> None:
    c = Child()
    c.opened("s", "2026-10-01 09:00")
    c.measure("s", "m", "raadgivning", "2026-10-05 09:00")
    # held Mon 16 Nov (W47); the caseworker's next_due is already past (Fri 6 Nov, W45)
    c.follow_up("s", "m", "2026-11-16 10:00", next_due="2026-11-06")
    h.feed(c)
    assert h.weekly("2026-W46")["overdue_deadlines"]["follow_up"] == 0  # it did not exist yet
    assert h.weekly("2026-W47")["overdue_deadlines"]["follow_up"] == 1
