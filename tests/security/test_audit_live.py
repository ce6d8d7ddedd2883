"""The audit log on the real services (domain.md §8): every read of case-level data about a child
writes one entry per child (who, role, child pseudonym, endpoint, when) in the service that answered;
aggregates write none; only the `chef` reads the log, by child; nothing changes or deletes it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.stack import Stack, running_stack
from tests.security.support import (
    AT,
    MONTH,
    OTHER_CW,
    OWN_CW,
    OWN_MUNI,
    OWN_TEAM,
    WEEK,
    app_routes,
    audit_count,
    audit_rows,
    bearer,
    import_scenario,
    now_utc,
    token,
)

SERVICES = ("intake", "followup", "ledelsesinfo")
CASEWORKER = ("sagsbehandler", OWN_MUNI, (OWN_TEAM,), OWN_CW)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack("sql", tmp_path_factory.mktemp("audit"), request) as s:
        import_scenario(s)
        yield s


@pytest.fixture(scope="module")
def child_ids(stack: Stack) -> dict[str, str]:
    chef = bearer(token("chef", sub="audit-setup"))
    out = {}
    for case_id in ("S-A", "S-B", "S-N", "S-F"):
        out[case_id] = stack.followup.get(
            f"/cases/{case_id}", params={"municipality": OWN_MUNI}, headers=chef
        ).json()["child_id"]
    return out


def _counts(stack: Stack) -> dict[str, int]:
    return {svc: audit_count(getattr(stack, svc).app) for svc in SERVICES}


def _delta(before: dict[str, int], stack: Stack) -> dict[str, int]:
    return {svc: n - before[svc] for svc, n in _counts(stack).items()}


def test_reading_a_case_writes_exactly_one_entry(stack: Stack, child_ids: dict[str, str]) -> None:
    before = _counts(stack)
    started = now_utc() - timedelta(seconds=1)
    tok = token(*CASEWORKER, sub="ida@657")
    response = stack.followup.get(
        "/cases/S-A", params={"municipality": OWN_MUNI, "at": AT}, headers=bearer(tok)
    )
    assert response.status_code == 200, response.text
    assert _delta(before, stack) == {"intake": 0, "followup": 1, "ledelsesinfo": 0}
    entry = audit_rows(stack.followup.app)[-1]
    assert (
        entry["sub"],
        entry["role"],
        entry["municipality"],
        entry["child_id"],
        entry["endpoint"],
        entry["service"],
    ) == ("ida@657", "sagsbehandler", OWN_MUNI, child_ids["S-A"], "GET /cases/{case_id}", "followup")
    at = entry["at"] if entry["at"].tzinfo else entry["at"].replace(tzinfo=started.tzinfo)
    assert started <= at <= now_utc() + timedelta(seconds=1)
    # the entry carries no token and no case content
    assert all(tok not in str(v) for v in entry.values())


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        (("sagsbehandler", OWN_MUNI, (OWN_TEAM,), OTHER_CW), "/cases/S-A", 403),
        (("teamleder", OWN_MUNI, ("nord",), None), "/cases/S-A", 403),
        (("udvalg", OWN_MUNI, (), None), "/cases/S-A", 403),
        (("system", OWN_MUNI, (), None), "/cases/S-A", 403),
        (("chef", "101", (), None), "/cases/S-A", 403),
        (("chef", OWN_MUNI, (), None), "/cases/NO-SUCH-CASE", 404),
    ],
    ids=["other caseworker", "other team", "udvalg", "system", "other municipality", "unknown case"],
)
def test_a_refused_or_missing_read_writes_nothing(
    stack: Stack, who: tuple[Any, ...], path: str, status: int
) -> None:
    before = _counts(stack)
    response = stack.followup.get(path, params={"municipality": OWN_MUNI}, headers=bearer(token(*who)))
    assert response.status_code == status
    assert _delta(before, stack) == {"intake": 0, "followup": 0, "ledelsesinfo": 0}


@pytest.mark.parametrize(
    ("who", "children"),
    [
        (("chef", OWN_MUNI, (), None), {"S-A", "S-B", "S-N", "S-F"}),
        (("teamleder", OWN_MUNI, (OWN_TEAM,), None), {"S-A", "S-B", "S-F"}),
        (CASEWORKER, {"S-A", "S-F"}),
    ],
    ids=["chef", "teamleder", "sagsbehandler"],
)
def test_the_worklist_writes_one_entry_per_child(
    stack: Stack, child_ids: dict[str, str], who: tuple[Any, ...], children: set[str]
) -> None:
    before = _counts(stack)
    n_before = len(audit_rows(stack.followup.app))
    response = stack.followup.get(
        "/deadlines", params={"municipality": OWN_MUNI, "at": AT}, headers=bearer(token(*who))
    )
    assert response.status_code == 200, response.text
    shown = {d["child_id"] for d in response.json()["deadlines"]}
    assert shown == {child_ids[c] for c in children}
    assert len(response.json()["deadlines"]) > len(shown)  # several deadlines per child, one entry each
    assert _delta(before, stack) == {"intake": 0, "followup": len(children), "ledelsesinfo": 0}
    new = audit_rows(stack.followup.app)[n_before:]
    assert sorted(e["child_id"] for e in new) == sorted(shown)
    assert {(e["role"], e["endpoint"]) for e in new} == {(who[0], "GET /deadlines")}


def test_an_empty_worklist_writes_nothing(stack: Stack) -> None:
    before = _counts(stack)
    response = stack.followup.get(
        "/deadlines",
        params={"municipality": OWN_MUNI, "at": "2026-09-01T12:00:00+02:00"},
        headers=bearer(token("chef")),
    )
    assert response.status_code == 200 and response.json()["deadlines"] == []
    assert _delta(before, stack) == {"intake": 0, "followup": 0, "ledelsesinfo": 0}


AGGREGATES: list[tuple[str, str, str, dict[str, str], tuple[Any, ...]]] = [
    ("weekly, chef", "ledelsesinfo", "/reports/weekly", {"week": WEEK}, ("chef", OWN_MUNI, (), None)),
    (
        "weekly csv, chef",
        "ledelsesinfo",
        "/reports/weekly",
        {"week": WEEK, "format": "csv"},
        ("chef", OWN_MUNI, (), None),
    ),
    (
        "weekly xlsx, chef",
        "ledelsesinfo",
        "/reports/weekly",
        {"week": WEEK, "format": "xlsx"},
        ("chef", OWN_MUNI, (), None),
    ),
    (
        "weekly of a caseworker, teamleder",
        "ledelsesinfo",
        "/reports/weekly",
        {"week": WEEK, "team_id": OWN_TEAM, "caseworker_id": OWN_CW},
        ("teamleder", OWN_MUNI, (OWN_TEAM,), None),
    ),
    ("weekly, own, sagsbehandler", "ledelsesinfo", "/reports/weekly", {"week": WEEK}, CASEWORKER),
    ("monthly, udvalg", "ledelsesinfo", "/reports/monthly", {"month": MONTH}, ("udvalg", OWN_MUNI, (), None)),
    ("monthly, chef", "ledelsesinfo", "/reports/monthly", {"month": MONTH}, ("chef", OWN_MUNI, (), None)),
    ("caseload, teamleder", "followup", "/caseload", {"at": AT}, ("teamleder", OWN_MUNI, (OWN_TEAM,), None)),
    ("caseload, chef", "followup", "/caseload", {"at": AT}, ("chef", OWN_MUNI, (), None)),
]


@pytest.mark.parametrize(
    ("service", "path", "params", "who"), [a[1:] for a in AGGREGATES], ids=[a[0] for a in AGGREGATES]
)
def test_aggregates_write_no_entry(
    stack: Stack, service: str, path: str, params: dict[str, str], who: tuple[Any, ...]
) -> None:
    before = _counts(stack)
    client: TestClient = getattr(stack, service)
    response = client.get(path, params={"municipality": OWN_MUNI, **params}, headers=bearer(token(*who)))
    assert response.status_code == 200, response.text
    assert _delta(before, stack) == {"intake": 0, "followup": 0, "ledelsesinfo": 0}


def test_compare_writes_no_entry(stack: Stack) -> None:
    before = _counts(stack)
    response = stack.ledelsesinfo.get(
        "/reports/compare",
        params={"month": MONTH, "figure": "staircase_moves_up"},
        headers=bearer(token("chef")),
    )
    assert response.status_code == 200, response.text
    assert _delta(before, stack) == {"intake": 0, "followup": 0, "ledelsesinfo": 0}


def test_showing_a_cpr_is_audited_in_intake(stack: Stack, child_ids: dict[str, str]) -> None:
    before = _counts(stack)
    response = stack.intake.get(
        f"/children/{child_ids['S-B']}/cpr",
        params={"municipality": OWN_MUNI},
        headers=bearer(token("teamleder", teams=(OWN_TEAM,), sub="bo@657")),
    )
    assert response.status_code == 200, response.text
    assert _delta(before, stack) == {"intake": 1, "followup": 0, "ledelsesinfo": 0}
    entry = audit_rows(stack.intake.app)[-1]
    assert (entry["sub"], entry["role"], entry["child_id"], entry["endpoint"], entry["service"]) == (
        "bo@657",
        "teamleder",
        child_ids["S-B"],
        "GET /children/{child_id}/cpr",
        "intake",
    )


def test_the_chef_answers_a_citizens_insight_request(stack: Stack, child_ids: dict[str, str]) -> None:
    child = child_ids["S-N"]
    stack.followup.get(
        "/cases/S-N",
        params={"municipality": OWN_MUNI},
        headers=bearer(token("teamleder", teams=("nord",), sub="nora@657")),
    )
    stack.intake.get(
        f"/children/{child}/cpr",
        params={"municipality": OWN_MUNI},
        headers=bearer(token("teamleder", teams=("nord",), sub="nora@657")),
    )
    chef = bearer(token("chef", sub="chef@657"))
    before = _counts(stack)

    followup = stack.followup.get("/audit", params={"child_id": child}, headers=chef)
    assert followup.status_code == 200, followup.text
    entries = followup.json()["entries"]
    assert ("nora@657", "teamleder", "GET /cases/{case_id}", "followup") in {
        (e["sub"], e["role"], e["endpoint"], e["service"]) for e in entries
    }
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)

    intake = stack.intake.get("/audit", params={"child_id": child, "municipality": OWN_MUNI}, headers=chef)
    assert intake.status_code == 200, intake.text
    assert ("nora@657", "teamleder", "GET /children/{child_id}/cpr") in {
        (e["sub"], e["role"], e["endpoint"]) for e in intake.json()["entries"]
    }
    # exactly this child's entries: as many as the log holds for the child
    assert len(entries) == sum(1 for r in audit_rows(stack.followup.app) if r["child_id"] == child)
    other = stack.followup.get("/audit", params={"child_id": child_ids["S-A"]}, headers=chef).json()[
        "entries"
    ]
    assert "nora@657" not in {e["sub"] for e in other}
    # reading the log is no read of case data: nothing new in it
    assert _delta(before, stack) == {"intake": 0, "followup": 0, "ledelsesinfo": 0}


@pytest.mark.parametrize("service", ["intake", "followup"])
@pytest.mark.parametrize(
    ("who", "params", "status"),
    [
        (None, {}, 401),
        (("sagsbehandler", OWN_MUNI, (OWN_TEAM,), OWN_CW), {}, 403),
        (("teamleder", OWN_MUNI, (OWN_TEAM,), None), {}, 403),
        (("udvalg", OWN_MUNI, (), None), {}, 403),
        (("system", OWN_MUNI, (), None), {}, 403),
        (("chef", "101", (), None), {"municipality": OWN_MUNI}, 403),
    ],
    ids=["no token", "sagsbehandler", "teamleder", "udvalg", "system", "chef of another municipality"],
)
def test_only_the_chef_of_the_municipality_reads_the_log(
    stack: Stack,
    child_ids: dict[str, str],
    service: str,
    who: tuple[Any, ...] | None,
    params: dict[str, str],
    status: int,
) -> None:
    headers = {} if who is None else bearer(token(*who))
    client: TestClient = getattr(stack, service)
    response = client.get("/audit", params={"child_id": child_ids["S-A"], **params}, headers=headers)
    assert response.status_code == status
    assert "entries" not in response.text


def test_a_chef_of_another_municipality_sees_only_their_own_log(
    stack: Stack, child_ids: dict[str, str]
) -> None:
    stack.followup.get("/cases/S-A", params={"municipality": OWN_MUNI}, headers=bearer(token("chef")))
    response = stack.followup.get(
        "/audit", params={"child_id": child_ids["S-A"]}, headers=bearer(token("chef", "101"))
    )
    assert response.status_code == 200
    assert response.json() == {"child_id": child_ids["S-A"], "municipality": "101", "entries": []}


def test_no_route_can_change_the_log(stack: Stack) -> None:
    for svc in SERVICES:
        for method, path in app_routes(getattr(stack, svc).app):
            if "audit" in path.lower():
                assert method == "GET", f"{svc}: {method} {path} touches the audit log"


@pytest.mark.parametrize("service", ["intake", "followup"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writing_to_the_log_over_http_is_refused(
    stack: Stack, child_ids: dict[str, str], service: str, method: str
) -> None:
    client: TestClient = getattr(stack, service)
    before = audit_rows(client.app)
    assert before, "the log should hold entries by now"
    for path in ("/audit", f"/audit/{child_ids['S-A']}", "/audit/1"):
        response = client.request(
            method,
            path,
            params={"child_id": child_ids["S-A"]},
            json={"sub": "x"},
            headers=bearer(token("chef")),
        )
        assert response.status_code in (404, 405), (method, path, response.status_code)
    assert audit_rows(client.app) == before
