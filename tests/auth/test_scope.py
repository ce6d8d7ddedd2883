"""authorize_scope: role x purpose x own/other municipality x own/other team (and caseworker)."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from shared.auth import Principal, Purpose, Role, authorize_scope, can_see_case, require_role, visible_teams

PRINCIPALS: dict[str, Principal] = {
    "chef": Principal("c", "chef", "657", frozenset(), None),
    "teamleder": Principal("t", "teamleder", "657", frozenset({"t1", "t2"}), None),
    "sagsbehandler": Principal("s", "sagsbehandler", "657", frozenset({"t1"}), "cw1"),
    "udvalg": Principal("u", "udvalg", "657", frozenset(), None),
    "system": Principal("x", "system", "657", frozenset(), None),
}

# scope id -> (municipality, team_id, caseworker_id)
SCOPES: dict[str, tuple[str, str | None, str | None]] = {
    "muni": ("657", None, None),
    "own_team": ("657", "t1", None),
    "other_team": ("657", "t9", None),
    "own_team_own_cw": ("657", "t1", "cw1"),
    "own_team_other_cw": ("657", "t1", "cw2"),
    "no_team_own_cw": ("657", None, "cw1"),
    "no_team_other_cw": ("657", None, "cw2"),
    "other_team_own_cw": ("657", "t9", "cw1"),
    "other_muni": ("101", None, None),
    "other_muni_own_team": ("101", "t1", None),
    "other_muni_own_team_own_cw": ("101", "t1", "cw1"),
}
OWN_MUNI = frozenset(s for s, (m, _, _) in SCOPES.items() if m == "657")

ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("chef", "write"): OWN_MUNI,
    ("teamleder", "write"): OWN_MUNI,
    ("sagsbehandler", "write"): OWN_MUNI,
    ("system", "write"): OWN_MUNI,
    ("udvalg", "write"): frozenset(),
    ("chef", "cases"): OWN_MUNI,
    ("teamleder", "cases"): frozenset(
        {"muni", "own_team", "own_team_own_cw", "own_team_other_cw", "no_team_own_cw", "no_team_other_cw"}
    ),
    ("sagsbehandler", "cases"): frozenset({"own_team_own_cw", "no_team_own_cw"}),
    ("udvalg", "cases"): frozenset(),
    ("system", "cases"): frozenset(),
    ("chef", "reports"): OWN_MUNI,
    ("teamleder", "reports"): frozenset({"muni", "own_team", "own_team_own_cw", "own_team_other_cw"}),
    ("sagsbehandler", "reports"): frozenset({"own_team_own_cw", "no_team_own_cw"}),
    ("udvalg", "reports"): frozenset({"muni"}),
    ("system", "reports"): frozenset(),
}

MATRIX = [
    (role, purpose, scope, scope in ALLOWED[(role, purpose)])
    for role in PRINCIPALS
    for purpose in ("write", "cases", "reports")
    for scope in SCOPES
]


@pytest.mark.parametrize(
    ("role", "purpose", "scope", "allowed"), MATRIX, ids=[f"{r}-{p}-{s}" for r, p, s, _ in MATRIX]
)
def test_authorize_scope_matrix(role: str, purpose: Purpose, scope: str, allowed: bool) -> None:
    municipality, team_id, caseworker_id = SCOPES[scope]
    principal = PRINCIPALS[role]
    if allowed:
        authorize_scope(principal, municipality, team_id, caseworker_id, purpose=purpose)
    else:
        with pytest.raises(HTTPException) as err:
            authorize_scope(principal, municipality, team_id, caseworker_id, purpose=purpose)
        assert err.value.status_code == 403


def test_matrix_covers_every_role_and_purpose() -> None:
    assert {(r, p) for r, p, _, _ in MATRIX} == set(ALLOWED)


def test_sagsbehandler_without_caseworker_id_in_token_sees_no_case() -> None:
    odd = Principal("s", "sagsbehandler", "657", frozenset({"t1"}), None)
    with pytest.raises(HTTPException):
        authorize_scope(odd, "657", "t1", None, purpose="cases")
    assert not can_see_case(odd, "657", "t1", None)


CASES = [
    # role, (municipality, team_id, caseworker_id) of a concrete case, visible
    ("chef", ("657", "t9", "cw9"), True),
    ("chef", ("657", None, None), True),
    ("chef", ("101", "t1", "cw1"), False),
    ("teamleder", ("657", "t2", "cw7"), True),
    ("teamleder", ("657", "t9", "cw7"), False),
    ("teamleder", ("657", None, "cw7"), False),  # a case without a team is not in theirs
    ("teamleder", ("101", "t1", "cw7"), False),
    ("sagsbehandler", ("657", "t1", "cw1"), True),
    ("sagsbehandler", ("657", None, "cw1"), True),
    ("sagsbehandler", ("657", "t1", "cw2"), False),
    ("sagsbehandler", ("657", "t9", "cw1"), False),
    ("sagsbehandler", ("657", "t1", None), False),
    ("sagsbehandler", ("101", "t1", "cw1"), False),
    ("udvalg", ("657", "t1", "cw1"), False),
    ("system", ("657", "t1", "cw1"), False),
]


@pytest.mark.parametrize(("role", "case", "visible"), CASES)
def test_can_see_case(role: str, case: tuple[str, str | None, str | None], visible: bool) -> None:
    assert can_see_case(PRINCIPALS[role], *case) is visible


@pytest.mark.parametrize(
    ("role", "teams"),
    [
        ("chef", None),
        ("teamleder", frozenset({"t1", "t2"})),
        ("sagsbehandler", frozenset({"t1"})),
        ("udvalg", frozenset()),
        ("system", frozenset()),
    ],
)
def test_visible_teams(role: str, teams: frozenset[str] | None) -> None:
    assert visible_teams(PRINCIPALS[role]) == teams


@pytest.mark.parametrize("role", list(PRINCIPALS))
def test_require_role(role: Role) -> None:
    principal = PRINCIPALS[role]
    require_role(principal, role)
    require_role(principal, "chef", role)
    others = [r for r in PRINCIPALS if r != role]
    with pytest.raises(HTTPException) as err:
        require_role(principal, *others)  # type: ignore[arg-type]
    assert err.value.status_code == 403
