"""The projection on a real database: same tables whatever the arrival order and batching; replay."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.followup.config import Settings
from services.followup.projection import FollowupProjection, record_profile_change
from services.followup.tables import fu_assignments, fu_cases, fu_deadlines, fu_events
from shared.casework.cadence import CadenceProfile, ProfileChange
from shared.casework.calendar import Period
from shared.casework.views import case_view
from shared.db import make_engine
from shared.events.envelope import EventEnvelope
from tests.followup.followup_factory import Stream, local
from tests.followup.scenarios import all_streams, anna_child


def new_engine(tmp_path: Path, name: str = "fu.db") -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    FollowupProjection.metadata.create_all(engine)
    return engine


def apply_in_batches(
    engine: Engine, projection: FollowupProjection, batches: list[list[EventEnvelope]]
) -> None:
    for batch in batches:
        with engine.begin() as conn:
            projection.apply(conn, batch)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Table contents without surrogate ids, in a canonical order."""

    def rows(table: Any, drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            out = [
                tuple(v for k, v in row._mapping.items() if k not in drop)
                for row in conn.execute(select(table))
            ]
        return sorted(out, key=repr)

    return {
        "events": rows(fu_events),
        "cases": rows(fu_cases),
        "deadlines": rows(fu_deadlines, ("id",)),
        "assignments": rows(fu_assignments, ("id",)),
    }


def every_event() -> list[EventEnvelope]:
    return [env for s in all_streams() for env in s.events]


def test_ordered_apply_fills_the_tables(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    apply_in_batches(engine, FollowupProjection(), [every_event()])
    with engine.connect() as conn:
        case = conn.execute(
            select(fu_cases).where(fu_cases.c.municipality == "657", fu_cases.c.case_id == "S-2001")
        ).one()
        assert (case.team_id, case.caseworker_id, case.status, case.phase) == (
            "syd",
            "sr-bo",
            "open",
            "indsats",
        )
        assert case.caseworker_changes == 1
        assert "detail" not in case._fields  # GET /cases recomputes the case from its events
        history = conn.execute(
            select(fu_assignments.c.caseworker_id)
            .where(fu_assignments.c.stream_id == case.stream_id, fu_assignments.c.case_id == "S-2001")
            .order_by(fu_assignments.c.valid_from)
        ).scalars()
        assert list(history) == ["sr-anna", "sr-bo"]
        picture = FollowupProjection().picture(conn, case.stream_id)
        assert picture is not None
        view = case_view(picture, "S-2001")
        assert view["running_measures"][0]["measure_id"] == "I-3001"
        assert [h["caseworker_id"] for h in view["caseworker_history"]] == ["sr-anna", "sr-bo"]
        other = conn.execute(select(fu_cases).where(fu_cases.c.municipality == "167")).one()
        assert other.case_id == "S-3001" and other.child_id == "c-hvid"
        kinds = sorted(
            conn.execute(select(fu_deadlines.c.deadline).where(fu_deadlines.c.case_id == "S-1990")).scalars()
        )
        assert kinds == sorted(
            [
                "acute_assessment",
                "receipt",
                "child_conversation",
                "first_follow_up",
                "follow_up",
                "follow_up",
                "supervision_visit",
                "supervision_visit",
                "child_plan",
            ]
        )
        due = conn.execute(
            select(fu_deadlines.c.due).where(
                fu_deadlines.c.case_id == "S-2001", fu_deadlines.c.deadline == "follow_up"
            )
        ).scalar_one()
        # stored in UTC: the end of 14 December 2026 in Copenhagen
        assert due.replace(tzinfo=UTC) == datetime(2026, 12, 14, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(6))
def test_shuffled_batches_give_identical_tables(tmp_path: Path, seed: int) -> None:
    events = every_event()
    ordered = new_engine(tmp_path, "ordered.db")
    apply_in_batches(ordered, FollowupProjection(), [events])

    rng = random.Random(seed)
    shuffled = events[:]
    rng.shuffle(shuffled)
    batches: list[list[EventEnvelope]] = []
    i = 0
    while i < len(shuffled):
        size = rng.randint(1, 7)
        batches.append(shuffled[i : i + size])
        i += size
    # a redelivered event (at-least-once transport) changes nothing either
    batches.append([shuffled[0], shuffled[-1]])
    other = new_engine(tmp_path, "shuffled.db")
    apply_in_batches(other, FollowupProjection(), batches)
    assert snapshot(other) == snapshot(ordered)


def test_reset_and_replay_give_the_same_tables(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    projection = FollowupProjection()
    events = every_event()
    apply_in_batches(engine, projection, [events])
    before = snapshot(engine)
    with engine.begin() as conn:
        projection.reset(conn)
    assert snapshot(engine) == {"events": [], "cases": [], "deadlines": [], "assignments": []}
    apply_in_batches(engine, projection, [events[i : i + 5] for i in range(0, len(events), 5)])
    assert snapshot(engine) == before


def test_late_event_changes_the_earlier_picture(tmp_path: Path) -> None:
    """A backfilled assessment that happened before later events still meets the deadline."""
    engine = new_engine(tmp_path)
    s = Stream(child_id="c-late")
    s.received("2026-11-02 09:00", "U1")
    late = s.assessed("2026-11-02 15:00", "U1")
    s.opened("2026-11-02 16:00", uid="U1")
    projection = FollowupProjection()
    apply_in_batches(engine, projection, [[e for e in s.events if e is not late]])
    with engine.connect() as conn:
        phase = conn.execute(select(fu_cases.c.phase)).scalar_one()
        assert phase == "modtaget"
    apply_in_batches(engine, projection, [[late]])
    with engine.connect() as conn:
        assert conn.execute(select(fu_cases.c.phase)).scalar_one() == "afventer"
        met = conn.execute(
            select(fu_deadlines.c.met_at).where(fu_deadlines.c.deadline == "acute_assessment")
        ).scalar_one()
        assert met.replace(tzinfo=UTC) == local("2026-11-02 15:00").astimezone(UTC)


def test_assignment_intervals_for_caseload(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    apply_in_batches(engine, FollowupProjection(), [anna_child().events])
    with engine.connect() as conn:
        rows = conn.execute(select(fu_assignments).order_by(fu_assignments.c.valid_from)).all()
    assert [(r.caseworker_id, r.change) for r in rows] == [("sr-anna", False), ("sr-bo", True)]
    assert rows[0].valid_to == rows[1].valid_from
    assert rows[1].valid_to is None


def test_profile_change_reprojects_children_with_later_events(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    projection = FollowupProjection(Settings(child_conversation_days=7))
    s = Stream(child_id="c-prof")
    s.opened("2026-11-01 10:00")
    s.received("2026-11-02 10:00", "U1", reasons=("overgreb_andre",))
    apply_in_batches(engine, projection, [s.events])
    change = ProfileChange(
        municipality="657",
        changed_at=local("2026-11-02 09:00"),  # made before the underretning arrived
        changed_by="chef-657",
        profile=CadenceProfile(child_conversation_days=2, non_placement_first=Period(1, "weeks")),
        caseload_target=20,
    )
    with engine.begin() as conn:
        record_profile_change(conn, change)
        assert projection.reproject_since(conn, "657", change.changed_at) == 1
    with engine.connect() as conn:
        due = conn.execute(
            select(fu_deadlines.c.due).where(fu_deadlines.c.deadline == "child_conversation")
        ).scalar_one()
    assert due.replace(tzinfo=UTC) == local("2026-11-05 00:00").astimezone(UTC)


def test_postgres_gives_the_same_tables(tmp_path: Path, fresh_pg_url: str) -> None:
    events = every_event()
    lite = new_engine(tmp_path)
    apply_in_batches(lite, FollowupProjection(), [events])
    pg = make_engine(fresh_pg_url)
    FollowupProjection.metadata.create_all(pg)
    rng = random.Random(7)
    shuffled = events[:]
    rng.shuffle(shuffled)
    apply_in_batches(pg, FollowupProjection(), [shuffled[i : i + 4] for i in range(0, len(shuffled), 4)])

    def normal(snap: dict[str, Any]) -> dict[str, Any]:
        def fix(v: Any) -> Any:
            return v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) and v.tzinfo else v

        return {k: sorted((tuple(fix(v) for v in row) for row in rows), key=repr) for k, rows in snap.items()}

    assert normal(snapshot(pg)) == normal(snapshot(lite))
    pg.dispose()


def test_deferred_apply_then_flush_gives_the_same_tables(tmp_path: Path) -> None:
    events = every_event()
    normal = new_engine(tmp_path, "normal.db")
    apply_in_batches(normal, FollowupProjection(), [events[i : i + 3] for i in range(0, len(events), 3)])

    deferred_engine = new_engine(tmp_path, "deferred.db")
    deferred = FollowupProjection(deferred=True)
    apply_in_batches(deferred_engine, deferred, [events[i : i + 3] for i in range(0, len(events), 3)])
    with deferred_engine.connect() as conn:
        assert conn.execute(select(fu_cases)).all() == []  # nothing derived yet
    assert deferred.flush(deferred_engine, chunk=2) == len(all_streams())
    assert snapshot(deferred_engine) == snapshot(normal)
    assert deferred.flush(deferred_engine) == 0


def test_an_interrupted_deferred_replay_is_finished_by_the_next_apply(tmp_path: Path) -> None:
    events = every_event()
    normal = new_engine(tmp_path, "normal.db")
    apply_in_batches(normal, FollowupProjection(), [events])

    engine = new_engine(tmp_path, "interrupted.db")
    apply_in_batches(engine, FollowupProjection(deferred=True), [events[:-1]])
    # the replay stops here; the live worker takes over with the last event
    apply_in_batches(engine, FollowupProjection(), [events[-1:]])
    assert snapshot(engine) == snapshot(normal)


def test_worklist_and_caseload_queries_agree_on_postgres(tmp_path: Path, fresh_pg_url: str) -> None:
    from services.followup.queries import caseload, find_case, worklist

    events = every_event()
    lite = new_engine(tmp_path)
    apply_in_batches(lite, FollowupProjection(), [events])
    pg = make_engine(fresh_pg_url)
    FollowupProjection.metadata.create_all(pg)
    apply_in_batches(pg, FollowupProjection(), [events])
    moments = [
        local(x) for x in ("2026-10-06 12:00", "2026-11-18 12:00", "2026-12-11 12:00", "2027-06-01 00:00")
    ]
    for engine in (lite, pg):
        with engine.connect() as conn:
            assert find_case(conn, "657", "S-2001").child_id == "c-anna"
    for t in moments:
        answers = []
        for engine in (lite, pg):
            with engine.connect() as conn:
                answers.append(
                    (
                        [(r.deadline.key, r.state, r.caseworker_id) for r in worklist(conn, "657", t)],
                        [
                            r.deadline.key
                            for r in worklist(conn, "657", t, caseworker_id="sr-anna", states=["overdue"])
                        ],
                        [r.deadline.key for r in worklist(conn, "657", t, teams={"syd"})],
                        caseload(conn, "657", t),
                        caseload(conn, "657", t, teams={"nord"}),
                    )
                )
        assert answers[0] == answers[1], t
        assert answers[0][0], t
    pg.dispose()
