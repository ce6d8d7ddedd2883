"""No CPR number anywhere but the audited CPR endpoint (domain.md §2, §8), over Kafka + PostgreSQL.

A full import with known CPR numbers (plain and hyphenated input, unborn children's mothers, and bad
numbers that are rejected: impossible dates, future births, wrong lengths, numbers as JSON numbers,
broken JSON, a conflicting re-send), then every read the roles can make. Scanned for every test CPR,
with and without the hyphen: every payload (key, value, headers) on the events topic and on its
dead-letter topic, every column of every table of the three services' databases (intake's vault
holds the identities encrypted only), every HTTP response body, and every log record at DEBUG
(collected raw on the root logger by `conftest.py`; SQLAlchemy's statements, parameters and rows
included). Zero hits; the one place a CPR is shown is
`GET /children/{child_id}/cpr` to a role that may see the child, and the scan does find it there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import Response
from kafka import KafkaConsumer
from sqlalchemy import MetaData, select

from shared.db import make_engine
from tests.e2e.stack import Stack, running_stack
from tests.security.conftest import Collector
from tests.security.support import (
    AT,
    CPR,
    CPRS_USED,
    MONTH,
    OTHER_MUNI,
    OWN_MUNI,
    OWN_TEAM,
    WEEK,
    bearer,
    rec,
    scenario_records,
    test_cprs,
    token,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

HYPHENATED = "030617-4331"  # child H, given with the hyphen
MOTHER, MOTHER_HYPHENATED = "1509904326", "210588-4338"  # unborn children's mothers
# given as bad CPR numbers: each record carrying one is rejected
BAD = {
    "impossible date": "3102154327",
    "impossible date, hyphenated": "310215-4347",
    "birth in the future": "0101304328",
    "eleven digits": "06121543390",
    "nine digits": "061215433",
    "a blank instead of the hyphen": "070915 4334",
    "month 13": "3013904329",
}
BAD_NUMBER = 2811154330  # a CPR as a JSON number
CPRS_USED.update({HYPHENATED, MOTHER, MOTHER_HYPHENATED, str(BAD_NUMBER), *BAD.values()})


def needles() -> list[str]:
    """Every form a test CPR could take in text."""
    out = set(BAD.values()) | {str(BAD_NUMBER)}
    for cpr in test_cprs():
        out |= {cpr, f"{cpr[:6]}-{cpr[6:]}"}
    return sorted(out)


def hits(text: str) -> list[str]:
    return [n for n in needles() if n in text]


def ur(
    rid: str, uid: str, child: dict[str, Any], team: str = OWN_TEAM, muni: str = OWN_MUNI
) -> dict[str, Any]:
    return rec(
        rid,
        "UnderretningReceived",
        muni,
        "2026-10-06T09:00:00+02:00",
        underretning_id=uid,
        child=child,
        notifier="4",
        reasons=["foraeldre_misbrug"],
        severity="alvorlig",
        team_id=team,
    )


def valid_records() -> list[dict[str, Any]]:
    return [
        ur("scan-h1", "U-H", {"cpr": HYPHENATED}),
        rec(
            "scan-h2",
            "CaseOpened",
            OWN_MUNI,
            "2026-10-06T10:00:00+02:00",
            case_id="S-H",
            child={"cpr": HYPHENATED},
            team_id=OWN_TEAM,
            underretning_id="U-H",
        ),
        rec(
            "scan-h3",
            "CaseworkerAssigned",
            OWN_MUNI,
            "2026-10-06T10:05:00+02:00",
            case_id="S-H",
            caseworker_id="sr-a",
        ),
        # child A again, now with the hyphen: the same child
        ur("scan-a2", "U-A2", {"cpr": f"{CPR['A'][:6]}-{CPR['A'][6:]}"}),
        ur("scan-u1", "U-U1", {"unborn": True, "expected_birth": "2027-02-01", "mother_cpr": MOTHER}),
        ur(
            "scan-u2",
            "U-U2",
            {"unborn": True, "expected_birth": "2027-03-01", "mother_cpr": MOTHER_HYPHENATED},
        ),
        rec(
            "scan-m1",
            "MeasureStarted",
            OWN_MUNI,
            "2026-10-07T09:00:00+02:00",
            case_id="S-A",
            measure_id="I-A1",
            measure_type="familiebehandling",
            provider="Familiehuset Syd",
            monthly_cost_dkk=18500,
        ),
    ]


def bad_records() -> list[tuple[str, dict[str, Any]]]:
    out = [
        (name, ur(f"scan-bad-{i}", f"U-bad-{i}", {"cpr": value}))
        for i, (name, value) in enumerate(BAD.items())
    ]
    out.append(
        (
            "mother with month 13",
            ur(
                "scan-bad-m",
                "U-bad-m",
                {"unborn": True, "expected_birth": "2027-02-01", "mother_cpr": BAD["month 13"]},
            ),
        )
    )
    out.append(("a JSON number", ur("scan-bad-n", "U-bad-n", {"cpr": BAD_NUMBER})))
    out.append(
        ("a CPR under an unknown key", ur("scan-bad-k", "U-bad-k", {"cpr": CPR["A"], "cpr2": CPR["B"]}))
    )
    out.append(
        (
            "an unknown record type",
            rec("scan-bad-t", "ChildMoved", OWN_MUNI, "2026-10-06T09:00:00+02:00", child={"cpr": CPR["N"]}),
        )
    )
    out.append(
        ("another municipality's record", ur("scan-bad-o", "U-bad-o", {"cpr": CPR["X"]}, muni=OTHER_MUNI))
    )
    return out


@pytest.fixture
def sql_echo() -> Iterator[None]:
    """SQLAlchemy keeps its loggers at WARNING by default; here every statement, its parameters and
    the rows it returns are logged too, so that the log scan also covers what the SQL carries."""
    logger = logging.getLogger("sqlalchemy")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.fixture
def stack(sql_echo: None, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running_stack("kafka", tmp_path, request) as s:
        yield s


def _kafka_messages(stack: Stack) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    assert stack.topic is not None
    consumer = KafkaConsumer(
        stack.topic,
        stack.topic + ".dlq",
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=4000,
    )
    try:
        return [(m.topic, m.key, m.value, list(m.headers or [])) for m in consumer]
    finally:
        consumer.close()


def _as_text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _database_text(url: str) -> dict[str, str]:
    """Every column of every table, as text, per table."""
    engine = make_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        out: dict[str, str] = {}
        with engine.connect() as conn:
            for name, table in metadata.tables.items():
                rows = conn.execute(select(table)).all()
                out[name] = "\n".join(" | ".join(_as_text(v) for v in row) for row in rows)
        return out
    finally:
        engine.dispose()


def test_no_cpr_anywhere_but_the_cpr_endpoint(stack: Stack, log_collector: Collector) -> None:
    logged_before = log_collector.total
    bodies: list[tuple[str, str]] = []

    def keep(what: str, response: Response, status: int | tuple[int, ...]) -> Response:
        wanted = status if isinstance(status, tuple) else (status,)
        assert response.status_code in wanted, (what, response.status_code, response.text)
        bodies.append((what, response.text))
        return response

    system = {**bearer(token("system", sub="scan-dubu")), "Content-Type": "application/x-ndjson"}

    # --- import: the scenario and more, in bulk (twice: the second time all duplicates) and one by one
    good = scenario_records(OWN_MUNI) + valid_records()
    ndjson = "\n".join(json.dumps(r) for r in good) + "\n"
    first = keep(
        "bulk", stack.intake.post("/records/bulk", content=ndjson.encode(), headers=system), 200
    ).json()
    assert (first["accepted"], first["rejected"]) == (len(good), 0), first
    again = keep(
        "bulk again", stack.intake.post("/records/bulk", content=ndjson.encode(), headers=system), 200
    )
    assert again.json()["duplicate"] == len(good)
    other = scenario_records(OTHER_MUNI)
    other_body = "\n".join(json.dumps(r) for r in other) + "\n"
    other_headers = {**bearer(token("system", OTHER_MUNI)), "Content-Type": "application/x-ndjson"}
    keep(
        "bulk 101",
        stack.intake.post("/records/bulk", content=other_body.encode(), headers=other_headers),
        200,
    )

    # --- rejections: one by one (422 each) and in one bulk body (a rejected line each)
    bad = bad_records()
    for name, record in bad:
        keep(
            f"POST {name}",
            stack.intake.post("/records", json=record, headers=bearer(token("system"))),
            (403, 422),
        )
    mixed = (
        "\n".join(json.dumps(r) for _, r in bad)
        + "\n"
        + '{"record_id": "broken", "data": {"child": '
        + json.dumps({"cpr": CPR["B"]})
        + "\n"
    )
    result = keep(
        "bulk of bad lines", stack.intake.post("/records/bulk", content=mixed.encode(), headers=system), 200
    ).json()
    assert (result["accepted"], result["rejected"]) == (0, len(bad) + 1), result
    broken = f'{{"record_id": "x", "type": "UnderretningReceived", "data": {{"child": {{"cpr": "{CPR["F"]}"}}'
    keep(
        "POST broken JSON",
        stack.intake.post(
            "/records",
            content=broken.encode(),
            headers={**bearer(token("system")), "Content-Type": "application/json"},
        ),
        422,
    )
    conflict = {**good[0], "data": {**good[0]["data"], "child": {"cpr": CPR["B"]}}}
    keep("POST conflict", stack.intake.post("/records", json=conflict, headers=bearer(token("system"))), 409)

    stack.sync()

    # --- every read the roles make
    chef = bearer(token("chef", sub="scan-chef"))
    leader = bearer(token("teamleder", teams=(OWN_TEAM,), sub="scan-leader"))
    committee = bearer(token("udvalg", sub="scan-udvalg"))
    child_ids = {}
    for case_id in ("S-A", "S-B", "S-N", "S-F", "S-H"):
        case = keep(
            f"case {case_id}",
            stack.followup.get(f"/cases/{case_id}", params={"municipality": OWN_MUNI}, headers=chef),
            200,
        ).json()
        child_ids[case_id] = case["child_id"]
    m = {"municipality": OWN_MUNI}
    keep("deadlines", stack.followup.get("/deadlines", params={**m, "at": AT}, headers=chef), 200)
    keep("deadlines now", stack.followup.get("/deadlines", params=m, headers=leader), 200)
    keep("caseload", stack.followup.get("/caseload", params=m, headers=leader), 200)
    for who, headers in (("chef", chef), ("leader", leader), ("udvalg", committee)):
        for fmt in ("json", "csv"):
            keep(
                f"weekly {who} {fmt}",
                stack.ledelsesinfo.get(
                    "/reports/weekly", params={**m, "week": WEEK, "format": fmt}, headers=headers
                ),
                200,
            )
            keep(
                f"monthly {who} {fmt}",
                stack.ledelsesinfo.get(
                    "/reports/monthly", params={**m, "month": MONTH, "format": fmt}, headers=headers
                ),
                200,
            )
    keep(
        "compare",
        stack.ledelsesinfo.get(
            "/reports/compare",
            params={"month": MONTH, "figure": "underretninger_by_severity_12m"},
            headers=chef,
        ),
        200,
    )
    for svc in ("intake", "followup"):
        keep(
            f"audit {svc}",
            getattr(stack, svc).get("/audit", params={"child_id": child_ids["S-A"]}, headers=chef),
            200,
        )
    keep("openapi", stack.intake.get("/openapi.json"), 200)

    # --- the one place a CPR is shown, by design (and the scan finds it there)
    shown = stack.intake.get(f"/children/{child_ids['S-H']}/cpr", params=m, headers=leader)
    assert shown.status_code == 200 and shown.json()["cpr"] == HYPHENATED.replace("-", "")
    assert hits(shown.text), "the scan must find a CPR where one is shown"
    refused = keep(
        "cpr refused to udvalg",
        stack.intake.get(f"/children/{child_ids['S-H']}/cpr", params=m, headers=committee),
        403,
    )
    assert "cpr" not in refused.json()

    # --- scan
    found: list[str] = []
    for what, text in bodies:
        found += [f"HTTP body of {what}: {n}" for n in hits(text)]

    messages = _kafka_messages(stack)
    events_on_topic = [msg for msg in messages if msg[0] == stack.topic]
    assert len(events_on_topic) >= len(good) + len(other)
    for topic, key, value, kafka_headers in messages:
        text = " ".join(
            [_as_text(key or b""), _as_text(value or b"")] + [f"{k}={_as_text(v)}" for k, v in kafka_headers]
        )
        found += [f"Kafka {topic}: {n}" for n in hits(text)]

    apps: dict[str, Any] = {svc: getattr(stack, svc).app for svc in ("intake", "followup", "ledelsesinfo")}
    urls = {
        "intake": apps["intake"].state.settings.event_store_url,
        "followup": apps["followup"].state.settings.own_database_url,
        "ledelsesinfo": apps["ledelsesinfo"].state.settings.own_database_url,
    }
    assert len(set(urls.values())) == 3
    for svc, url in urls.items():
        tables = _database_text(url)
        assert tables, f"no tables read from {svc}"
        for table, text in tables.items():
            found += [f"database {svc}.{table}: {n}" for n in hits(text)]
    intake_tables = _database_text(urls["intake"])
    assert "events" in intake_tables and intake_tables["events"], "the event log should have been read"

    lines = list(log_collector.lines)
    assert log_collector.total > logged_before, "the DEBUG log collector saw nothing"
    assert any("bulk import" in line for line in lines), "intake's own log lines should have been collected"
    assert any(line.startswith("sqlalchemy.engine") for line in lines), "the SQL should have been logged"
    for line in lines:
        found += [f"log: {n}: {line[:120]}" for n in hits(line)]

    assert not found, "CPR numbers found:\n" + "\n".join(found[:40])
