"""Small-count suppression for the committee (domain.md §6.4) through the real stack: the `udvalg`
role is refused team and caseworker scopes, and sees counts of 1-4 as null + suppressed where the
`chef` sees the exact value; 0 and 5 or more stay exact."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.stack import Stack, running_stack
from tests.security.support import (
    CPRS_USED,
    MONTH,
    OWN_CW,
    OWN_MUNI,
    OWN_TEAM,
    WEEK,
    bearer,
    import_scenario,
    rec,
    token,
)

EXTRA = [f"{d:02d}0418{4200 + d:04d}" for d in range(1, 6)]  # five more children, notifier 3
CPRS_USED.update(EXTRA)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack("sql", tmp_path_factory.mktemp("suppression"), request) as s:
        import_scenario(s)  # four underretninger from a school (notifier 2) in week 40
        extra = [
            rec(
                f"sup-{i}",
                "UnderretningReceived",
                OWN_MUNI,
                "2026-10-02T09:00:00+02:00",
                underretning_id=f"U-sup-{i}",
                child={"cpr": cpr},
                notifier="3",
                reasons=["barn_adfaerd"],
                severity="bekymring",
                team_id=OWN_TEAM,
            )
            for i, cpr in enumerate(EXTRA)
        ]
        assert s.bulk(extra).json()["accepted"] == len(extra)
        s.sync()
        yield s


def _get(stack: Stack, path: str, role: str, **params: str) -> Any:
    teams = (OWN_TEAM,) if role == "teamleder" else ()
    return stack.ledelsesinfo.get(
        path, params={"municipality": OWN_MUNI, **params}, headers=bearer(token(role, teams=teams))
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/reports/monthly", {"month": MONTH, "team_id": OWN_TEAM}),
        ("/reports/weekly", {"week": WEEK, "team_id": OWN_TEAM}),
        ("/reports/weekly", {"week": WEEK, "caseworker_id": OWN_CW}),
        ("/reports/weekly", {"week": WEEK, "team_id": OWN_TEAM, "caseworker_id": OWN_CW}),
    ],
    ids=["monthly team", "weekly team", "weekly caseworker", "weekly team+caseworker"],
)
def test_udvalg_is_refused_team_and_caseworker_scopes(
    stack: Stack, path: str, params: dict[str, str]
) -> None:
    assert _get(stack, path, "udvalg", **params).status_code == 403
    assert _get(stack, path, "chef", **params).status_code == 200  # the scope itself is fine


def test_monthly_small_counts_are_suppressed_for_udvalg_only(stack: Stack) -> None:
    chef = _get(stack, "/reports/monthly", "chef", month=MONTH)
    committee = _get(stack, "/reports/monthly", "udvalg", month=MONTH)
    assert chef.status_code == committee.status_code == 200
    exact = chef.json()["figures"]["underretninger_by_notifier_12m"]
    shown = committee.json()["figures"]["underretninger_by_notifier_12m"]
    assert (exact["2"], exact["3"]) == (4, 5)
    assert shown["2"] == {"value": None, "suppressed": True}  # 4: suppressed
    assert shown["3"] == 5  # 5: exact
    zeros = [code for code, v in exact.items() if v == 0]
    assert zeros and all(shown[code] == 0 for code in zeros)  # 0 reveals no child
    assert committee.json()["suppressed_small_counts"] is True
    assert chef.json()["suppressed_small_counts"] is False


def test_weekly_small_counts_and_caseworkers_for_udvalg(stack: Stack) -> None:
    chef = _get(stack, "/reports/weekly", "chef", week=WEEK).json()["figures"]
    leader = _get(stack, "/reports/weekly", "teamleder", week=WEEK).json()["figures"]
    committee = _get(stack, "/reports/weekly", "udvalg", week=WEEK).json()["figures"]
    assert chef["underretninger_received"] == leader["underretninger_received"] == 9
    assert committee["underretninger_received"] == 9
    assert chef["open_cases"] == 4
    assert committee["open_cases"] == {"value": None, "suppressed": True}
    assert "caseworkers_behind" in chef
    assert "caseworkers_behind" not in committee
    assert OWN_CW in _get(stack, "/reports/weekly", "chef", week=WEEK, format="csv").text
    csv = _get(stack, "/reports/weekly", "udvalg", week=WEEK, format="csv")
    assert csv.status_code == 200
    assert OWN_CW not in csv.text and "sr-b" not in csv.text  # no caseworker named to the committee
