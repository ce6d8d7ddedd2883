"""bench.visibility against the real services (uvicorn subprocesses, SQLite, the worker tailing the log)."""

from __future__ import annotations

import math

import pytest

from bench import visibility

KEYS = {"benchmark", "measured", "unit", "raw", "ratio", "target"}


def test_short_run_on_sql_sees_every_record_and_gives_well_formed_rows() -> None:
    seconds, rate = 3.0, 20
    results = visibility.measure("sql", seconds, rate, phases=(1, 4))
    assert len(results) == 2
    for res, every in zip(results, (1, 4), strict=True):
        d = res.details
        n = round(seconds * rate)
        # every posted record was accepted and became visible in GET /cases
        assert d["records"] == n
        assert d["accepted"] == n, d["first_failures"]
        assert d["visible"] == n, d["first_failures"]
        assert d["failures"] == 0
        assert d["timed"] == math.ceil(n / every)
        assert d["get_requests"] >= n  # each record read at least once
        # rows: p50, p95, p99, max of the delay, then the achieved rate
        rows = res.rows
        assert [set(r) for r in rows] == [KEYS] * 5
        delays = rows[:4]
        assert all(r["unit"] == "ms" for r in delays)
        assert [r["target"] for r in delays] == ["", "", "< 500", ""]
        assert "p99 at 20 records/s (embedded SQLite" in delays[2]["benchmark"]
        measured = [r["measured"] for r in delays]
        assert measured == sorted(measured) and measured[0] > 0
        for r in delays:
            assert r["raw"] > 0  # the POST alone
            assert r["measured"] >= r["raw"] * 0.99  # visible only after the POST was answered
            assert r["ratio"] == pytest.approx(r["measured"] / r["raw"], rel=0.02, abs=0.01)
        achieved = rows[4]
        assert achieved["unit"] == "records/s" and achieved["raw"] == rate
        assert achieved["measured"] == pytest.approx(rate, rel=0.2)
    visibility.check(results)  # what run() applies: no failures


def test_check_refuses_a_record_that_never_became_visible() -> None:
    load = visibility.Load(
        samples=[
            visibility.Sample(
                post_start=1.0, post_end=1.01, status=201, accepted=True, reason="not visible in time"
            )
        ],
        t0=1.0,
        get_latencies=[0.01],
        seconds=1.0,
    )
    res = visibility.summarize("sql", 1, 1.0, load, 25.0, "INFO", {}, [0.0, 0.0])
    assert res.details["accepted"] == 1
    assert res.details["failures"] == 1 and res.details["visible"] == 0
    with pytest.raises(RuntimeError, match="1 records failed"):
        visibility.check([res])


def test_shows_is_monotone_in_later_records() -> None:
    doc = {
        "case_id": "S-1",
        "caseworker_history": [{"caseworker_id": "sb-1"}, {"caseworker_id": "sb-2"}],
        "underretninger": [{"underretning_id": "U-1"}],
    }
    assert visibility.shows(doc, ("case", "S-1"))
    assert visibility.shows(doc, ("caseworker", "sb-1"))  # replaced later, still seen in the history
    assert visibility.shows(doc, ("underretning", "U-1"))
    assert not visibility.shows(doc, ("caseworker", "sb-3"))
    assert not visibility.shows(doc, ("underretning", "U-2"))
