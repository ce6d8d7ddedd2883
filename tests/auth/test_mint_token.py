"""The token-minting command: its output decodes to the requested claims."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from shared.auth import AuthError, Principal, decode_token
from shared.config import DEV_JWT_SECRET
from shared.mint_token import main, mint_token

from .conftest import SECRET, hs_settings

REPO = Path(__file__).resolve().parents[2]


def test_cli_output_decodes_to_the_requested_claims(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_JWT_SECRET", SECRET)
    assert (
        main(
            [
                "--role",
                "sagsbehandler",
                "--municipality",
                "657",
                "--teams",
                "a, b",
                "--caseworker-id",
                "cw1",
                "--sub",
                "ida",
                "--ttl-minutes",
                "30",
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert decode_token(token, hs_settings()) == Principal(
        sub="ida", role="sagsbehandler", municipality="657", teams=frozenset({"a", "b"}), caseworker_id="cw1"
    )
    raw = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert raw["exp"] - raw["iat"] == 30 * 60
    assert abs(raw["iat"] - datetime.now(UTC).timestamp()) < 60
    with pytest.raises(AuthError):
        decode_token(token, hs_settings("a-different-secret-of-enough-length!!"))


def test_default_secret_is_the_dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    token = mint_token(role="chef", municipality="657")
    principal = decode_token(token, hs_settings(DEV_JWT_SECRET))
    assert principal == Principal(
        sub="chef-657", role="chef", municipality="657", teams=frozenset(), caseworker_id=None
    )
    raw = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])
    assert raw["exp"] - raw["iat"] == 480 * 60


def test_runs_as_a_module() -> None:
    env = {**os.environ, "AUTH_JWT_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.mint_token",
            "--role",
            "teamleder",
            "--municipality",
            "101",
            "--teams",
            "t1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    principal = decode_token(done.stdout.strip(), hs_settings())
    assert (principal.role, principal.municipality, principal.teams) == (
        "teamleder",
        "101",
        frozenset({"t1"}),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--role", "sagsbehandler", "--municipality", "657", "--teams", "a"],  # no caseworker_id
        ["--role", "teamleder", "--municipality", "657"],  # no teams
        ["--role", "admin", "--municipality", "657"],
        ["--role", "chef", "--municipality", "6570"],
        ["--role", "chef", "--municipality", "657", "--ttl-minutes", "0"],
    ],
)
def test_refuses_claims_the_services_would_refuse(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_expired_token_is_refused() -> None:
    token = mint_token(
        role="chef",
        municipality="657",
        secret=SECRET,
        now=datetime.now(UTC) - timedelta(hours=2),
        ttl_minutes=60,
    )
    with pytest.raises(AuthError, match="expired"):
        decode_token(token, hs_settings())
