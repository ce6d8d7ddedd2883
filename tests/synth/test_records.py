"""Every generated record is valid by the spec on its own, and the stream is consistent: references
resolve, things happen in a sensible order, nothing lies after the period."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.intake.domain.records import Rejection, parse_record
from synth.clock import TZ, start_of
from synth.generator import PLACEMENT_TYPES, Config, MunicipalityResult, merged_lines

CFG = Config(
    seed=21, start=date(2025, 1, 1), years=2, municipalities=("657", "167"), scale=0.4, late_share=0.1
)


@pytest.fixture(scope="module")
def generated() -> Iterator[tuple[list[dict[str, Any]], list[MunicipalityResult]]]:
    lines, results = merged_lines(CFG)
    records = [json.loads(line) for line in lines]
    yield records, results


@pytest.fixture(scope="module")
def records(generated: tuple[list[dict[str, Any]], list[MunicipalityResult]]) -> list[dict[str, Any]]:
    return generated[0]


def at(rec: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(rec["occurred_at"])


def test_every_record_parses_under_the_spec(records: list[dict[str, Any]]) -> None:
    end = datetime.fromtimestamp(start_of(CFG.end), UTC)
    assert len(records) > 10_000
    for rec in records:
        parsed = parse_record(rec, now=end)
        assert not isinstance(parsed, Rejection), (rec["record_id"], parsed)


def test_timestamps_carry_copenhagen_offsets_and_lie_within_the_history(
    records: list[dict[str, Any]],
) -> None:
    end = datetime.fromtimestamp(start_of(CFG.end), UTC)
    offsets = set()
    for rec in records:
        moment = at(rec)
        assert moment.utcoffset() == moment.astimezone(TZ).utcoffset(), rec["occurred_at"]
        assert moment < end
        offsets.add(rec["occurred_at"][-6:])
    assert offsets == {"+01:00", "+02:00"}


def test_ids_are_unique_per_municipality(records: list[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    firsts = {
        "UnderretningReceived": "underretning_id",
        "CaseOpened": "case_id",
        "MeasureStarted": "measure_id",
    }
    for rec in records:
        field = firsts.get(rec["type"])
        if field:
            key = (rec["municipality"], field)
            assert rec["data"][field] not in seen[key], rec
            seen[key].add(rec["data"][field])
        rid_key = (rec["municipality"], "record_id")
        assert rec["record_id"] not in seen[rid_key]
        seen[rid_key].add(rec["record_id"])


def test_children_include_the_unborn_and_cprs_follow_the_rules(records: list[dict[str, Any]]) -> None:
    unborn = born = 0
    for rec in records:
        child = rec["data"].get("child")
        if child is None:
            continue
        if child.get("unborn"):
            unborn += 1
            assert date.fromisoformat(child["expected_birth"]) > at(rec).date()
            assert len(child["mother_cpr"]) == 10
        else:
            born += 1
            cpr = child["cpr"]
            birth = datetime.strptime(cpr[:6], "%d%m%y").date()
            assert cpr[6] in "456789" if birth.year >= 2000 or birth.year < 1937 else cpr[6] in "0123"
    assert 0.005 < unborn / (born + unborn) < 0.06


def test_references_and_order(records: list[dict[str, Any]]) -> None:
    """CaseOpened before anything on its case, at most one open case per child, a measure ends
    once and after it started, follow-ups and visits while it runs, a case closes after its
    measures end; receipts and assessments after their underretning."""
    by_m: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_m[rec["municipality"]].append(rec)
    for recs in by_m.values():
        recs = sorted(recs, key=at)
        received: dict[str, datetime] = {}
        opened: dict[str, datetime] = {}
        closed: dict[str, datetime] = {}
        case_child: dict[str, str] = {}
        started: dict[str, tuple[str, datetime, str]] = {}
        ended: dict[str, datetime] = {}
        open_case_of: dict[str, str] = {}
        for rec in recs:
            d, t, kind = rec["data"], at(rec), rec["type"]
            if kind == "UnderretningReceived":
                received[d["underretning_id"]] = t
                if "case_id" in d:
                    assert d["case_id"] in opened and d["case_id"] not in closed
            elif kind in ("ReceiptSent", "UnderretningAssessed"):
                assert received[d["underretning_id"]] <= t
            elif kind == "CaseOpened":
                child = json.dumps(d["child"], sort_keys=True)
                assert child not in open_case_of, "a child with two open cases"
                open_case_of[child] = d["case_id"]
                case_child[d["case_id"]] = child
                opened[d["case_id"]] = t
                assert received[d["underretning_id"]] <= t
            elif kind == "CaseClosed":
                case = d["case_id"]
                assert case in opened and case not in closed
                assert all(ended.get(m) is not None for m, (c, _, _) in started.items() if c == case)
                closed[case] = t
                del open_case_of[case_child[case]]
            elif kind == "ChildConversationHeld":
                assert d.get("underretning_id") in received or d.get("case_id") in opened
            else:
                case = d["case_id"]
                assert case in opened and case not in closed, (kind, case)
                if kind == "MeasureStarted":
                    started[d["measure_id"]] = (case, t, d["measure_type"])
                elif "measure_id" in d:
                    owner, start, mtype = started[d["measure_id"]]
                    assert owner == case and start <= t
                    assert d["measure_id"] not in ended, (kind, "after the measure ended")
                    if kind == "MeasureEnded":
                        ended[d["measure_id"]] = t
                    if kind == "SupervisionVisitHeld":
                        assert mtype in PLACEMENT_TYPES
        assert closed and ended and open_case_of  # the history closes cases; some stay open


def test_caseworkers_belong_to_their_case_team(
    generated: tuple[list[dict[str, Any]], list[MunicipalityResult]],
) -> None:
    records, results = generated
    team_of = {(r.code, w): team for r in results for team, workers in r.teams.items() for w in workers}
    case_team = {
        (r["municipality"], r["data"]["case_id"]): r["data"]["team_id"]
        for r in records
        if r["type"] == "CaseOpened"
    }
    changes = 0
    for rec in records:
        if rec["type"] == "CaseworkerAssigned":
            m, d = rec["municipality"], rec["data"]
            assert team_of[(m, d["caseworker_id"])] == case_team[(m, d["case_id"])]
            changes += 1
    assert changes > len(case_team)  # caseworker changes happen


def test_follow_ups_are_mostly_on_herning_cadence(records: list[dict[str, Any]]) -> None:
    """The first follow-up of a measure: 2 weeks after start for placements, 4 weeks otherwise."""
    starts: dict[tuple[str, str], tuple[date, str]] = {}
    first: dict[tuple[str, str], date] = {}
    for rec in sorted(records, key=at):
        d = rec["data"]
        key = (rec["municipality"], d.get("measure_id", ""))
        if rec["type"] == "MeasureStarted":
            starts[key] = (at(rec).astimezone(TZ).date(), d["measure_type"])
        elif rec["type"] == "FollowUpHeld" and key in starts and key not in first:
            first[key] = at(rec).astimezone(TZ).date()
    on_time = late = 0
    for key, held in first.items():
        start, mtype = starts[key]
        due_days = 14 if mtype in PLACEMENT_TYPES else 28
        if (held - start).days <= due_days:
            on_time += 1
        else:
            late += 1
    assert late > 0
    assert 0.75 < on_time / (on_time + late) < 0.95
