"""One settings model per service (pydantic-settings): documented in docs/settings.md (generated, and
checked here to be current), every field described; placeholders refused in production."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.followup.config import Settings as FollowupSettings
from services.intake.config import Settings as IntakeSettings
from services.ledelsesinfo.config import Settings as LedelsesinfoSettings
from shared.settings_doc import SERVICES, render, undocumented

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"
SETTINGS = (IntakeSettings, FollowupSettings, LedelsesinfoSettings)
KEYS = {
    "cpr_pseudonym_key": "ops-pseudonym-key-0123456789abcdef-0123",
    "cpr_master_key": "ops-master-key-0123456789abcdef-012345",
}


def test_the_committed_settings_doc_is_current() -> None:
    assert DOC.read_text() == render(), "run: python -m shared.settings_doc > docs/settings.md"


def test_the_doc_command_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shared.settings_doc"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout == render()


def test_every_setting_is_described_and_in_the_doc() -> None:
    assert undocumented() == []
    text = DOC.read_text()
    for (service, _), settings in zip(SERVICES, SETTINGS, strict=True):
        section = text.split(f"## {service}\n", 1)[1].split("\n## ", 1)[0]
        for name in settings.model_fields:
            assert f"| `{name.upper()}` |" in section, (service, name)


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("secret", ["", "change-me", "dev-secret-change-me-not-for-production-use"])
def test_production_refuses_a_placeholder_jwt_secret(settings: Any, secret: str) -> None:
    extra = KEYS if settings is IntakeSettings else {}
    with pytest.raises(ValidationError, match="AUTH_JWT_SECRET is missing or a placeholder"):
        settings(environment="production", auth_jwt_secret=secret, **extra)
    settings(environment="production", auth_jwt_secret="a-real-secret-of-some-length-0123456789", **extra)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READY_MAX_LAG", "17")
    monkeypatch.setenv("READY_CACHE_SECONDS", "0.5")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    s = FollowupSettings()  # type: ignore[call-arg]
    assert (s.ready_max_lag, s.ready_cache_seconds, s.log_level) == (17, 0.5, "DEBUG")
    monkeypatch.setenv("READY_MAX_LAG", "-1")
    with pytest.raises(ValidationError):
        LedelsesinfoSettings()  # type: ignore[call-arg]


def test_the_readme_carries_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    body = render().split("\n", 1)[1].strip().replace("\n## ", "\n### ")
    start = readme.index("<!-- settings:begin")
    end = readme.index("<!-- settings:end -->")
    section = readme[readme.index("\n", start) + 1 : end].strip()
    assert section == body, "update README.md's settings section from `python -m shared.settings_doc`"
