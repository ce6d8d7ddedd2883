"""`python -m services.intake import|migrate` on a DUBU-like export file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select

from services.intake import __main__ as cli
from services.intake.config import Settings
from shared.eventstore.schema import events
from tests.intake.conftest import examples, make_settings, ndjson, token

REPO = Path(__file__).resolve().parents[2]


def env_of(settings: Settings) -> dict[str, str]:
    return {
        key.upper(): json.dumps(value) if isinstance(value, dict) else str(value)
        for key, value in settings.model_dump().items()
    }


@pytest.fixture
def cli_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = make_settings(tmp_path, auto_create_tables=False)
    for key, value in env_of(settings).items():
        monkeypatch.setenv(key, value)
    return settings


def count(settings: Settings) -> int:
    engine = create_engine(settings.event_store_url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(events)).scalar_one())
    engine.dispose()
    return n


def test_migrate_creates_the_tables(cli_settings: Settings) -> None:
    assert cli.main(["migrate"]) == 0
    engine = create_engine(cli_settings.event_store_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "events",
        "outbox",
        "intake_cases",
        "intake_measures",
        "intake_underretninger",
        "intake_children",
        "intake_child_keys",
        "audit_reads",
        "audit_child_sets",
        "audit_child_set_members",
    } <= names


def test_import_then_reimport_is_all_duplicates(
    cli_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["migrate"]) == 0
    export = tmp_path / "dubu.ndjson"
    export.write_text(ndjson(examples()[::-1]))  # out of order on purpose
    capsys.readouterr()

    assert cli.main(["import", str(export), "--municipality", "751", "--chunk-lines", "7"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["lines"], summary["accepted"], summary["duplicate"], summary["rejected"]) == (
        26,
        26,
        0,
        0,
    )
    assert "\rimport: 26 lines" in err and "(100%)" in err
    assert "26 accepted, 0 duplicate, 0 rejected" in err
    assert count(cli_settings) == 26

    assert cli.main(["import", str(export), "--municipality", "751"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["accepted"], summary["duplicate"], summary["rejected"]) == (0, 26, 0)
    assert count(cli_settings) == 26


def test_rejected_lines_are_listed_and_written_to_the_results_file(
    cli_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["migrate"])
    export = tmp_path / "dubu.ndjson"
    export.write_text(ndjson(examples()[:3]) + "not json\n\n" + ndjson(examples()[3:5]))
    results = tmp_path / "out.ndjson"
    assert cli.main(["import", str(export), "--municipality", "751", "--results", str(results)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["rejected"] == 1
    assert "line 4: line: not valid JSON" in err
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert [(r["line"], r["status"]) for r in lines] == [
        (1, "accepted"),
        (2, "accepted"),
        (3, "accepted"),
        (4, "rejected"),
        (6, "accepted"),
        (7, "accepted"),
    ]


def test_a_file_for_another_municipality_is_rejected_line_by_line(
    cli_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["migrate"])
    export = tmp_path / "dubu.ndjson"
    export.write_text(ndjson(examples()[:2]))
    assert cli.main(["import", str(export), "--municipality", "657", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["rejected"] == 2 and "\r" not in err
    assert count(cli_settings) == 0


def test_a_token_must_fit_the_municipality(cli_settings: Settings, tmp_path: Path) -> None:
    cli.main(["migrate"])
    export = tmp_path / "dubu.ndjson"
    export.write_text(ndjson(examples()[:1]))
    with pytest.raises(SystemExit, match="another municipality"):
        cli.main(["import", str(export), "--municipality", "751", "--token", token(municipality="657")])
    with pytest.raises(SystemExit, match="may not write"):
        cli.main(["import", str(export), "--municipality", "751", "--token", token(role="udvalg")])
    assert cli.main(["import", str(export), "--municipality", "751", "--token", token(role="system")]) == 0


def test_bad_municipality_argument(cli_settings: Settings) -> None:
    assert cli.main(["import", "x.ndjson", "--municipality", "75"]) == 2


def test_runs_as_a_module(cli_settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "dubu.ndjson"
    export.write_text(ndjson(examples()))
    env = {**os.environ, **env_of(cli_settings), "AUTO_CREATE_TABLES": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "services.intake", "import", str(export), "--municipality", "751"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accepted"] == 26
