"""A municipality's cadence profile and caseload target change (`CadenceProfileChanged`, stream
`municipality-{m}`): the figures that depend on the follow-up cadence and on the caseload target
follow it, whatever order the change arrives in relative to the children's events, and a replay
gives the same tables.

The scenario, worked out by hand (municipality 657, team syd, caseworker anna holds both cases):

child p: case s1 opened Tue 1 Sep 2026 09:00, anna; child plan 10:00; `plejefamilie` placement m1
  started 1 Sep 12:00 (child plan met on time; supervision visit due 1 Mar 2027).
  - first follow-up (Herning: placement +2 weeks): due end of 15 Sep; held Mon 14 Sep 10:00.
  - the follow-up after 14 Sep (profile in force on 14 Sep, Herning in every variant: first year
    +6 weeks): due end of Mon 26 Oct; held 26 Oct 10:00, on time.
  - the follow-up after 26 Oct: with Herning +6 weeks = end of Mon 7 Dec, so NOT overdue at the end
    of 2026-W48 (Mon 30 Nov 00:00). With the change of Thu 1 Oct 2026 08:00 (first year every
    2 weeks, in force on 26 Oct) +2 weeks = end of Mon 9 Nov: overdue at the end of W46 (Mon 16 Nov
    00:00) and of W48, not yet at the end of W45 (Mon 9 Nov 00:00).
child q: case s2 opened Mon 3 Aug 2026, anna; nothing else (every event before the change).

So at the end of W48: open_cases 2, anna's caseload 2; `overdue_deadlines.follow_up` 0 -> 1 and
`caseworkers_behind` [] -> [anna: 1]; with the change's caseload target 1 (2 > 1)
`caseworkers_over_target` 0 -> 1. At the end of W39 (before the change) the target is the settings'
25: 0 over target.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from services.ledelsesinfo import projection as projection_module
from services.ledelsesinfo import tables
from services.ledelsesinfo.api import caseload_target
from services.ledelsesinfo.app import create_app
from services.ledelsesinfo.config import Settings
from services.ledelsesinfo.domain.periods import week_end
from services.ledelsesinfo.projection import LedelsesinfoProjection
from shared.casework.cadence import HERNING, CadenceProfile
from shared.casework.calendar import Period
from shared.db import make_engine
from shared.events.catalogue import CadenceProfileChanged, stream_id_for_municipality
from shared.events.envelope import EventEnvelope
from shared.messaging.runner import ProjectionWorker, replay
from tests.ledelsesinfo.conftest import Harness
from tests.ledelsesinfo.factory import Child, t
from tests.ledelsesinfo.test_api import SECRET, token
from tests.ledelsesinfo.test_rebuild_runner import _append, full_rows

W = "2026-W48"
TIGHT = replace(HERNING, placement_first_year=Period(2, "weeks"))
NO_OVERDUE = dict.fromkeys(
    ("acute_assessment", "receipt", "child_conversation", "investigation", "first_follow_up", "follow_up",
     "supervision_visit", "child_plan"),
    0,
)


def children() -> tuple[Child, Child]:
    p, q = Child("p"), Child("q")
    q.opened("s2", "2026-08-03 09:00", team="syd")
    q.assigned("s2", "anna", "2026-08-03 09:05")
    p.opened("s1", "2026-09-01 09:00", team="syd")
    p.assigned("s1", "anna", "2026-09-01 09:05")
    p.plan("s1", "2026-09-01 10:00")
    p.measure("s1", "m1", "plejefamilie", "2026-09-01 12:00")
    p.follow_up("s1", "m1", "2026-09-14 10:00")
    p.follow_up("s1", "m1", "2026-10-26 10:00")
    return p, q


P, Q = children()  # built once: the same event ids in every test


def child_events() -> list[EventEnvelope]:
    return [*Q.events, *P.events]


def profile_changed(at: str, profile: CadenceProfile = TIGHT, target: int = 1, version: int = 1,
                    municipality: str = "657") -> EventEnvelope:
    return EventEnvelope.new(
        stream_id=stream_id_for_municipality(municipality),
        version=version,
        municipality=municipality,
        record_id=f"profile-{municipality}-{version}",
        occurred_at=t(at),
        recorded_at=t(at),
        payload=CadenceProfileChanged(profile=profile.to_json(), caseload_target=target,
                                      changed_by="chef-user"),
    )


CHANGE = profile_changed("2026-10-01 08:00")


def _engine(tmp_path: Path, name: str) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    tables.metadata.create_all(engine)
    return engine


def _target(h: Harness, week: str) -> int:
    with h.engine.connect() as conn:
        return caseload_target(conn, Settings(), "657", week_end(week))  # type: ignore[call-arg]


def _figures(h: Harness, week: str = W) -> dict[str, Any]:
    return h.weekly(week, target=_target(h, week))


def test_a_tighter_cadence_makes_the_follow_up_overdue(h: Harness) -> None:
    h.feed(child_events())
    before = _figures(h)
    assert before["open_cases"] == 2 and before["caseload_max"] == 2
    assert before["overdue_deadlines"] == NO_OVERDUE  # follow-up due 7 Dec
    assert before["caseworkers_behind"] == []
    assert before["caseworkers_over_target"] == 0  # 2 cases, target 25 (settings)

    h.feed([CHANGE])  # after the children's events: p is re-derived (its 26 Oct follow-up is later)
    after = _figures(h)
    assert after["overdue_deadlines"] == {**NO_OVERDUE, "follow_up": 1}  # due 9 Nov
    assert after["caseworkers_behind"] == [{"caseworker_id": "anna", "overdue": 1}]
    assert after["caseworkers_over_target"] == 1  # 2 > 1
    assert _figures(h, "2026-W46")["overdue_deadlines"]["follow_up"] == 1
    assert _figures(h, "2026-W45")["overdue_deadlines"]["follow_up"] == 0  # end of W45 = 9 Nov 00:00
    # before the change was made the target in force is the settings' one
    assert _target(h, "2026-W39") == 25 and _figures(h, "2026-W39")["caseworkers_over_target"] == 0
    assert _target(h, "2026-W40") == 1  # in force from Thu 1 Oct, so at the end of W40


def test_a_later_change_back_and_a_change_after_the_events_change_nothing_they_do_not_reach(
    h: Harness,
) -> None:
    h.feed(child_events(), [CHANGE])
    # Herning again from 27 Oct: the follow-up held 26 Oct keeps its 9 Nov due date (spec §4: a
    # deadline takes the profile in force at the event that starts it); the target goes back to 25
    h.feed([profile_changed("2026-10-27 08:00", HERNING, 25, version=2)])
    w = _figures(h)
    assert w["overdue_deadlines"]["follow_up"] == 1 and w["caseworkers_over_target"] == 0
    # a change made after every event of both children: nothing is re-derived, nothing changes
    h.feed([profile_changed("2026-12-01 08:00", HERNING, 25, version=3)])
    assert _figures(h) == w


def test_children_whose_events_all_came_before_the_change_are_not_rederived(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.feed(child_events())
    derived: list[str] = []
    original = projection_module.project_child

    def spy(events: Any, *args: Any) -> Any:
        derived.append(next(iter(events)).stream_id)
        return original(events, *args)

    monkeypatch.setattr(projection_module, "project_child", spy)
    h.feed([CHANGE])
    assert derived == ["child-657-p", "child-657-p"]  # old and new contributions of p; q untouched


def test_redelivery_of_the_change_changes_nothing(h: Harness) -> None:
    h.feed(child_events(), [CHANGE])
    reference = full_rows(h.engine)
    h.feed([CHANGE])
    assert full_rows(h.engine) == reference
    h.feed([CHANGE, *child_events()[:3], CHANGE])
    assert full_rows(h.engine) == reference
    with h.engine.connect() as conn:
        assert len(conn.execute(select(tables.profile_changes)).all()) == 1


def _reference(tmp_path: Path) -> dict[str, Any]:
    h = Harness(_engine(tmp_path, "reference.db"))
    h.feed([CHANGE], child_events())  # the change first, then the children, in order
    rows = full_rows(h.engine)
    assert rows["ledelsesinfo_profile_changes"] and rows["ledelsesinfo_packed"]
    assert _figures(h)["overdue_deadlines"]["follow_up"] == 1
    h.engine.dispose()
    return rows


def _orders() -> dict[str, list[list[EventEnvelope]]]:
    p, q = P, Q
    return {
        "change last": [q.events, p.events, [CHANGE]],
        "one batch": [[*p.events, CHANGE, *q.events]],
        "between a child's events": [q.events, p.events[:5], [CHANGE], p.events[5:]],
        "late records after the change": [p.events[:3], [CHANGE], q.events, p.events[3:]],
        "backwards": [[e] for e in reversed([*q.events, *p.events, CHANGE])],
    }


@pytest.mark.parametrize("order", list(_orders()))
def test_the_change_s_arrival_order_does_not_matter(tmp_path: Path, order: str) -> None:
    reference = _reference(tmp_path)
    h = Harness(_engine(tmp_path, "order.db"))
    for batch in _orders()[order]:
        h.feed(batch)
    assert full_rows(h.engine) == reference


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_arrival_order_and_batching_give_the_same_tables(tmp_path: Path, data: st.DataObject) -> None:
    a = Child("a")  # a third child of another team, with a follow-up after both changes
    a.opened("s3", "2026-09-20 09:00", team="nord")
    a.assigned("s3", "bo", "2026-09-20 09:05")
    a.measure("s3", "m3", "familiebehandling", "2026-09-21 09:00")
    a.follow_up("s3", "m3", "2026-10-19 10:00")
    later = profile_changed("2026-10-15 08:00", replace(HERNING, non_placement_then=Period(1, "weeks")), 2,
                            version=2)
    events = [*child_events(), *a.events, CHANGE, later]
    engine = make_engine(f"sqlite:///{tmp_path / 'prop.db'}")
    tables.metadata.create_all(engine)
    h = Harness(engine)
    with engine.begin() as conn:
        h.projection.reset(conn)
    h.feed(events)
    reference = full_rows(engine)
    shuffled = data.draw(st.permutations(events), label="arrival order")
    sizes = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4), label="batch sizes")
    with engine.begin() as conn:
        h.projection.reset(conn)
    i, k = 0, 0
    while i < len(shuffled):
        n = sizes[k % len(sizes)]
        h.feed(shuffled[i:i + n])
        i, k = i + n, k + 1
    assert full_rows(engine) == reference
    engine.dispose()


def test_child_rows_from_before_last_at_are_rederived(tmp_path: Path) -> None:
    """A child row written before the `last_at` column existed (NULL) counts as reached by a change."""
    reference = _reference(tmp_path)
    h = Harness(_engine(tmp_path, "old-rows.db"))
    h.feed(child_events())
    with h.engine.begin() as conn:
        conn.execute(update(tables.children).values(last_at=None))
    h.feed([CHANGE])
    rows = full_rows(h.engine)
    assert {r[2] for r in rows["ledelsesinfo_children"]} == {None}
    with h.engine.begin() as conn:  # the next event of each child sets it again
        for child, events in (("p", P.events), ("q", Q.events)):
            conn.execute(update(tables.children).where(tables.children.c.stream_id == f"child-657-{child}")
                         .values(last_at=projection_module._last_at(events)))
    assert full_rows(h.engine) == reference


# --- the bulk rebuild --------------------------------------------------------------------------


def _pages() -> list[list[list[EventEnvelope]]]:
    return [[P.events], [Q.events]]


def _write(h: Harness, work: Any) -> None:
    """One page's transaction as the runner writes it, then its commit hook."""
    with h.engine.begin() as conn:
        h.projection.rebuild_children(conn, work)
    h.projection.rebuild_committed(work)


def test_rebuild_after_the_change_was_applied(tmp_path: Path) -> None:
    """The runner's order: the change through `apply`, then the children's pages."""
    reference = _reference(tmp_path)
    h = Harness(_engine(tmp_path, "rebuild.db"))
    h.feed([CHANGE])
    h.projection.start_rebuild()
    for page in _pages():
        _write(h, h.projection.prepare_children(h.engine, page))
    _write(h, h.projection.finish_rebuild())
    assert full_rows(h.engine) == reference


def test_a_change_applied_between_preparing_a_page_and_writing_it(tmp_path: Path) -> None:
    """A page derived before a change was stored, written after it: corrected when written."""
    reference = _reference(tmp_path)
    h = Harness(_engine(tmp_path, "race.db"))
    h.projection.start_rebuild()
    p_page, q_page = _pages()
    _write(h, h.projection.prepare_children(h.engine, q_page))  # q (its sums held: not yet written)
    work = h.projection.prepare_children(h.engine, p_page)  # p, derived with Herning
    h.feed([CHANGE])  # finds no child of 657 it reaches: p is not stored yet
    _write(h, work)
    _write(h, h.projection.finish_rebuild())
    assert full_rows(h.engine) == reference


def test_a_change_handed_over_with_the_children(tmp_path: Path) -> None:
    """A page that holds the municipality's stream too (a runner without the others-first order)."""
    reference = _reference(tmp_path)
    h = Harness(_engine(tmp_path, "mixed.db"))
    with h.engine.begin() as conn:
        h.projection.rebuild_children(conn, [P.events, Q.events, [CHANGE]])
    assert full_rows(h.engine) == reference


@pytest.mark.parametrize("workers", [1, 2])
def test_replay_gives_the_same_tables_and_report(tmp_path: Path, workers: int) -> None:
    reference = _reference(tmp_path)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    _append(store_url, [*child_events(), CHANGE])
    s = Settings(event_store_url=store_url, database_url=f"sqlite:///{tmp_path / 'replay.db'}",  # type: ignore[call-arg]
                 run_worker=False)
    projection = LedelsesinfoProjection(s.rules())
    worker = ProjectionWorker(projection, s)
    worker.ensure_schema()
    assert replay(projection, s, workers=workers) == len(child_events()) + 1
    rows = full_rows(worker.engine)
    # the stored events carry their log positions here (none when fed straight to `apply`)
    stored, expected = rows.pop("ledelsesinfo_events"), reference.pop("ledelsesinfo_events")
    assert [r[0] for r in stored] == [r[0] for r in expected]
    assert rows == reference
    h = Harness(worker.engine)
    w = _figures(h)
    assert w["overdue_deadlines"]["follow_up"] == 1
    assert w["caseworkers_behind"] == [{"caseworker_id": "anna", "overdue": 1}]
    assert w["caseworkers_over_target"] == 1
    worker.stop()
    worker.engine.dispose()


# --- the HTTP report ---------------------------------------------------------------------------


def test_weekly_report_takes_the_target_in_force_at_the_end_of_the_week(tmp_path: Path) -> None:
    s = Settings(event_store_url=f"sqlite:///{tmp_path / 'api.db'}", auth_jwt_secret=SECRET,  # type: ignore[call-arg]
                 run_worker=False, environment="test", caseload_targets={"657": 30})
    app = create_app(s)
    tables.metadata.create_all(app.state.engine)
    app.state.clock = lambda: datetime(2027, 3, 1, tzinfo=UTC)
    projection = LedelsesinfoProjection(s.rules())
    chef = token("chef")

    def over_target(week: str) -> Any:
        r = client.get("/reports/weekly", params={"municipality": "657", "week": week}, headers=chef)
        assert r.status_code == 200, r.text
        return r.json()["figures"]["caseworkers_over_target"]

    with TestClient(app) as client:
        with app.state.engine.begin() as conn:
            projection.apply(conn, child_events())
        assert over_target(W) == 0  # no change stored: the settings' 30 for 657
        with app.state.engine.begin() as conn:
            projection.apply(conn, [CHANGE])
        assert over_target(W) == 1  # target 1 from 1 Oct
        assert over_target("2026-W39") == 0  # the week ended before the change: 30


@pytest.mark.postgres
def test_postgres_gives_the_same_tables(fresh_pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL (upserts of `last_at`, the writer lock taken for a change and for the check of a
    page): a change after the children, and one between preparing a page and writing it."""
    reference = _reference(tmp_path)
    pg = make_engine(fresh_pg_url)
    tables.metadata.create_all(pg)
    h = Harness(pg)
    h.feed(Q.events, P.events, [CHANGE])
    assert full_rows(pg) == reference
    with pg.begin() as conn:
        h.projection.reset(conn)
    work = h.projection.prepare_children(pg, [P.events, Q.events])
    h.feed([CHANGE])
    with pg.begin() as conn:
        h.projection.rebuild_children(conn, work)
    assert full_rows(pg) == reference
    assert _figures(h)["caseworkers_behind"] == [{"caseworker_id": "anna", "overdue": 1}]
    pg.dispose()


def test_changes_at_the_same_instant_are_in_force_in_event_id_order_as_in_follow_up(tmp_path: Path) -> None:
    """Two changes made at the same instant: the one with the greater event id is in force, in
    ledelsesinfo as in follow-up, even when it was recorded first (its recording time decides
    nothing)."""
    from dataclasses import replace as with_fields

    from services.followup import tables as fu_tables
    from services.followup.projection import load_profile_changes, record_profile_change
    from services.ledelsesinfo.profiles import change_of, insert_changes, load_changes, target_before
    from shared.casework.cadence import ProfileTimeline, profile_change_of

    three, seven = profile_changed("2026-10-01 08:00", target=3, version=1), profile_changed(
        "2026-10-01 08:00", target=7, version=2
    )
    low, high = sorted([three.event_id, seven.event_id])
    # the target-3 change has the greater id but was recorded an hour before the other
    three = with_fields(three, event_id=high, recorded_at=t("2026-10-01 08:00"))
    seven = with_fields(seven, event_id=low, recorded_at=t("2026-10-01 09:00"))
    after = t("2026-10-02 00:00")

    engine = _engine(tmp_path, "li.db")
    with engine.begin() as conn:
        insert_changes(conn, [change_of(seven), change_of(three)])
    with engine.connect() as conn:
        assert target_before(conn, "657", after) == 3
        assert [c.event_id for c in load_changes(conn, ["657"])] == [low, high]

    fu = make_engine(f"sqlite:///{tmp_path / 'fu.db'}")
    fu_tables.metadata.create_all(fu)
    with fu.begin() as conn:
        for env in (seven, three):
            record_profile_change(conn, profile_change_of(env), env.event_id)
    with fu.connect() as conn:
        assert ProfileTimeline(load_profile_changes(conn, ["657"])).target("657", after) == 3
