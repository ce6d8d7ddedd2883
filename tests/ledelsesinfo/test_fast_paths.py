"""The domain's fast paths equal the plain computations they replace: period numbers memoised per
hour, Fenwick node sums from a dense prefix, and contributions that skip state changes cancelling
inside one period (and add a caseworker-split interval once at municipality and team level)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledelsesinfo.domain import contributions as contrib
from services.ledelsesinfo.domain.contributions import (
    STATE,
    Assignments,
    Bucket,
    Stay,
    _Acc,
    _union,
    add_contributions,
    caseworker_segments,
)
from services.ledelsesinfo.domain.fenwick import node_sums, update_nodes
from services.ledelsesinfo.domain.periods import (
    MONTH,
    WEEK,
    PeriodKind,
    period_index,
    period_indexes,
)
from shared.casework.child import project_child
from shared.events.codes import DEFAULT_MEASURE_TYPES, NOTIFIERS
from tests.ledelsesinfo.factory import Child
from tests.ledelsesinfo.test_bulk_rebuild import _closing_children
from tests.ledelsesinfo.test_projection import rich_events

CPH = ZoneInfo("Europe/Copenhagen")

# --- period numbers -------------------------------------------------------------------------------


def _plain(at: datetime) -> tuple[int, int]:
    return period_index(WEEK, at), period_index(MONTH, at)


def test_period_indexes_equal_period_index_in_any_zone() -> None:
    rnd = random.Random(20261123)
    zones = [UTC, CPH, timezone(timedelta(hours=-5, minutes=-30)), ZoneInfo("America/St_Johns")]
    start = datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(20_000):
        at = (start + timedelta(seconds=rnd.randrange(130 * 365 * 86400))).astimezone(rnd.choice(zones))
        assert period_indexes(at) == _plain(at), at


def test_period_indexes_around_midnights_and_clock_changes() -> None:
    for year in (1996, 2024, 2026, 2037):
        for month, day in ((3, 24), (10, 24), (12, 28)):
            first = datetime(year, month, day, tzinfo=UTC)
            for minutes in range(0, 10 * 24 * 60, 7):
                at = first + timedelta(minutes=minutes)
                assert period_indexes(at) == _plain(at), at
                assert period_indexes(at.astimezone(CPH)) == _plain(at), at


def test_an_hour_holding_a_local_midnight_is_computed_per_instant() -> None:
    """Before 1894 Copenhagen kept local mean time (+00:50:20): midnight fell inside a UTC hour."""
    midnight = datetime(1890, 6, 2, tzinfo=CPH).astimezone(UTC)  # 23:09:40 UTC on 1 June
    assert midnight.minute == 9
    before, after = midnight - timedelta(seconds=1), midnight + timedelta(seconds=1)
    assert period_indexes(after) == _plain(after)  # memoising the hour would give the other day's
    assert period_indexes(before) == _plain(before)
    assert period_indexes(before) != period_indexes(after) or _plain(before) == _plain(after)


def test_period_indexes_refuse_a_naive_instant() -> None:
    with pytest.raises(ValueError):
        period_indexes(datetime(2026, 11, 2, 9, 0))


# --- Fenwick node sums ----------------------------------------------------------------------------


def _naive_nodes(kind: PeriodKind, changes: dict[int, int]) -> dict[int, int]:
    naive: dict[int, int] = defaultdict(int)
    for period, d in changes.items():
        for node in update_nodes(kind, period):
            naive[node] += d
    return {n: v for n, v in naive.items() if v}


@given(kind=st.sampled_from(["W", "M"]), first=st.integers(-50, 16_500),
       offsets=st.dictionaries(st.integers(0, 300), st.integers(-3, 3), max_size=80))
def test_clustered_node_sums_equal_the_update_paths(
    kind: PeriodKind, first: int, offsets: dict[int, int]
) -> None:
    """Changes in a narrow range (a year or five of weeks: the dense prefix path)."""
    changes = {first + o: d for o, d in offsets.items()}
    assert node_sums(kind, changes) == _naive_nodes(kind, changes)


def test_node_sums_of_far_apart_changes_equal_the_update_paths() -> None:
    rnd = random.Random(7)
    for _ in range(500):
        kind: PeriodKind = rnd.choice(["W", "M"])
        changes = {rnd.randrange(-10, 17_000): rnd.randrange(-3, 4) for _ in range(rnd.randrange(1, 6))}
        assert node_sums(kind, changes) == _naive_nodes(kind, changes)


# --- contributions --------------------------------------------------------------------------------


def _naive_interval(self: _Acc, kinds: tuple[PeriodKind, ...], start: datetime, end: datetime | None,
                    team: str | None, assignments: Assignments, bucket: str, key: str = "",
                    value: int = 1, *, key_is_caseworker: bool = False) -> None:
    """Every piece's change for every kind and scope, nothing skipped (the plain definition)."""
    if end is not None and end <= start:
        return
    for s, e, cw in caseworker_segments(assignments, start, end):
        if key_is_caseworker and cw is None:
            continue
        k = cw if key_is_caseworker and cw is not None else key
        for kind in kinds:
            self.add(STATE, kind, period_index(kind, s), team, cw, bucket, k, value)
            if e is not None:
                self.add(STATE, kind, period_index(kind, e), team, cw, bucket, k, -value)


def _naive_distinct_intervals(self: _Acc, kind: PeriodKind, items: list[Stay], emit: object) -> None:
    groups: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for s, e, team in items:
        groups[("", "")].append((s, e))
        if team:
            groups[(team, "")].append((s, e))
    for (t, c), intervals in groups.items():
        for s, e in _union(intervals):
            for bucket, key, value in emit(s):  # type: ignore[operator]
                self.data[(STATE, kind, period_index(kind, s), t, c, bucket, key)] += value
                if e is not None:
                    self.data[(STATE, kind, period_index(kind, e), t, c, bucket, key)] -= value


def _sums(child: Child) -> dict[Bucket, int]:
    data: defaultdict[Bucket, int] = defaultdict(int)
    add_contributions(project_child(child.events), data)
    return {k: v for k, v in data.items() if v}


def _plain_sums(child: Child) -> dict[Bucket, int]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(contrib._Acc, "interval", _naive_interval)
        mp.setattr(contrib._Acc, "distinct_intervals", _naive_distinct_intervals)
        return _sums(child)


def _children_of(events: list) -> list[Child]:  # type: ignore[type-arg]
    by_stream: dict[str, Child] = {}
    for e in events:
        c = by_stream.setdefault(e.stream_id, Child(e.child_id, e.municipality))
        c.events.append(e)
    return list(by_stream.values())


def _month_end_child() -> Child:
    """A case open across a month's end inside one ISO week (Monday 30 March to Thursday 2 April):
    nothing for the week, but open at the end of March; a caseworker change inside the week."""
    c = Child("month-end")
    c.received("u1", "2026-03-30 09:00", team="syd")
    c.assessed("u1", "2026-03-30 12:00")
    c.opened("s1", "2026-03-30 13:00", team="syd", uid="u1")
    c.assigned("s1", "anna", "2026-03-30 13:05")
    c.assigned("s1", "bo", "2026-04-01 10:00")
    c.closed("s1", "2026-04-02 15:00")
    return c


def test_contributions_equal_the_plain_definition_for_the_hand_made_children() -> None:
    for child in [*_children_of([*rich_events(), *_closing_children()]), _month_end_child()]:
        assert _sums(child) == _plain_sums(child)


def test_a_case_open_across_a_month_end_within_a_week() -> None:
    sums = _sums(_month_end_child())
    march, april = (period_index(MONTH, datetime(2026, m, 15, tzinfo=UTC)) for m in (3, 4))
    assert sums[(STATE, MONTH, march, "", "", "open_cases", "")] == 1
    assert sums[(STATE, MONTH, april, "", "", "open_cases", "")] == -1
    assert not [k for k in sums if k[0] == STATE and k[1] == WEEK and k[5] == "open_cases"]


@st.composite
def random_child(draw: st.DrawFn) -> Child:
    """A child with random records at random instants over five months (weeks, months, a clock
    change), some of them out of order, several caseworkers and teams."""
    child = Child(f"r{draw(st.integers(0, 10**6))}", draw(st.sampled_from(["657", "101"])))
    base = datetime(2026, 2, 20, 7, 0)

    def at() -> str:
        return (base + timedelta(minutes=draw(st.integers(0, 150 * 24 * 60)))).strftime("%Y-%m-%d %H:%M")

    teams, workers = ["syd", "nord"], ["anna", "bo", "carl"]
    for k in range(draw(st.integers(1, 3))):
        child.received(f"u{k}", at(), team=draw(st.sampled_from(teams)),
                       notifier=draw(st.sampled_from(sorted(NOTIFIERS))))
        if draw(st.booleans()):
            child.assessed(f"u{k}", at(), acute=draw(st.booleans()))
        if draw(st.booleans()):
            child.receipt(f"u{k}", at())
    if draw(st.booleans()):
        child.opened("s1", at(), team=draw(st.sampled_from(teams)), uid="u0")
        for _ in range(draw(st.integers(0, 4))):
            child.assigned("s1", draw(st.sampled_from(workers)), at())
        if draw(st.booleans()):
            child.inv_started("s1", at())
            if draw(st.booleans()):
                child.inv_completed("s1", at())
        for m in range(draw(st.integers(0, 2))):
            child.measure("s1", f"m{m}", draw(st.sampled_from(sorted(DEFAULT_MEASURE_TYPES))), at(),
                          cost=draw(st.sampled_from([None, 12_000.0, 41_500.5])))
            if draw(st.booleans()):
                child.measure_ended("s1", f"m{m}", at())
        if draw(st.booleans()):
            child.wait_in("s1", "familiebehandling", at())
            if draw(st.booleans()):
                child.wait_out("s1", "familiebehandling", at())
        if draw(st.booleans()):
            child.closed("s1", at())
    return child


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(child=random_child())
def test_contributions_equal_the_plain_definition(child: Child) -> None:
    assert _sums(child) == _plain_sums(child)
