"""CPR protection: pseudonyms in events, the encrypted vault, who may see a CPR, forget, and no CPR
in the event log, the outbox, the database file or the logs of a full import."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from services.intake import __main__ as cli
from services.intake.adapters.tables import child_keys, children
from services.intake.app import create_app
from services.intake.config import Settings
from services.intake.domain.cpr import ChildIdentity
from services.intake.service import IntakeService
from shared.eventstore.schema import events, outbox
from tests.intake.conftest import auth, clock, example, examples, make_settings, ndjson

CPR_A = "2404194012"  # S-2001, team syd, caseworker sr-anna then sr-bo
CPR_B = "0112104015"  # S-1990, team nord, caseworker sr-carl
MOTHER = "1208994321"  # the unborn child's mother


def child_id(settings: Settings, cpr: str) -> str:
    return (
        IntakeService.__new__(IntakeService)
        .__class__(_no_engine(), settings)
        .child_id_for(ChildIdentity(cpr=cpr))
    )


def _no_engine() -> Any:
    return create_engine("sqlite://")


def load(client: TestClient) -> None:
    doc = client.post(
        "/records/bulk",
        content=ndjson(examples()),
        headers={**auth(role="system"), "Content-Type": "application/x-ndjson"},
    ).json()
    assert doc["accepted"] == 26


def cpr_of(client: TestClient, settings: Settings, cpr: str, **who: Any) -> Any:
    return client.get(
        f"/children/{child_id(settings, cpr)}/cpr", params={"municipality": "751"}, headers=auth(**who)
    )


def generated_records(n: int) -> list[dict[str, Any]]:
    """n children, each with an underretning and a case; CPRs 0101YY4SSS."""
    out = []
    for i in range(n):
        cpr = f"{1 + i % 28:02d}{1 + i % 12:02d}{5 + i % 18:02d}4{i:03d}"
        out.append(
            {
                "record_id": f"gen-u-{i}",
                "type": "UnderretningReceived",
                "municipality": "751",
                "occurred_at": "2026-10-01T09:00:00+02:00",
                "data": {
                    "underretning_id": f"GU-{i}",
                    "child": {"cpr": cpr[:6] + "-" + cpr[6:] if i % 2 else cpr},
                    "notifier": "2",
                    "reasons": ["barn_skole"],
                    "severity": "bekymring",
                    "team_id": "syd",
                },
            }
        )
        out.append(
            {
                "record_id": f"gen-c-{i}",
                "type": "CaseOpened",
                "municipality": "751",
                "occurred_at": "2026-10-02T09:00:00+02:00",
                "data": {
                    "case_id": f"GS-{i}",
                    "child": {"cpr": cpr},
                    "team_id": "syd",
                    "underretning_id": f"GU-{i}",
                },
            }
        )
    return out


def all_cprs(records: list[dict[str, Any]]) -> set[str]:
    found = set()
    for r in records:
        child = r["data"].get("child") or {}
        for key in ("cpr", "mother_cpr"):
            if key in child:
                found.add(child[key].replace("-", ""))
    return found


# --- no CPR anywhere -------------------------------------------------------------------------------


def test_a_full_import_leaves_no_cpr_in_events_outbox_database_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path, transport="kafka", run_relay=False)
    records = examples() + generated_records(300)
    bad = {
        **example("ex-01"),
        "record_id": "bad",
        "data": {**example("ex-01")["data"], "child": {"cpr": "3102194012"}},
    }
    cprs = all_cprs(records) | {"3102194012"}
    assert len(cprs) == 304  # 3 in the examples (one a mother), 300 generated, 1 invalid
    with TestClient(create_app(settings, clock=clock)) as client:
        resp = client.post(
            "/records/bulk",
            content=ndjson(records + [bad]),
            headers={**auth(role="system"), "Content-Type": "application/x-ndjson"},
        )
        assert resp.status_code == 200
        doc = resp.json()
        assert (doc["accepted"], doc["rejected"]) == (626, 1)
        for r in records[:5]:  # and single records (duplicates now), and a conflict
            client.post("/records", json=r, headers=auth(role="system"))
        client.post(
            "/records",
            json={**records[0], "data": {**records[0]["data"], "severity": "akut"}},
            headers=auth(role="system"),
        )

    engine = create_engine(settings.event_store_url)
    with engine.connect() as conn:
        event_rows = conn.execute(select(events)).all()
        outbox_rows = conn.execute(select(outbox)).all()
        vault_rows = conn.execute(select(children)).all()
    engine.dispose()
    assert len(event_rows) == 626 and len(outbox_rows) == 626 and len(vault_rows) == 303
    event_text = "\n".join(json.dumps([str(v) for v in row]) for row in event_rows)
    outbox_bytes = b"\n".join(bytes(r.payload) for r in outbox_rows)
    vault_bytes = b"".join(bytes(r.ciphertext) for r in vault_rows)
    log_text = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("intake.db*"))
    assert "child_id" in event_text and len(caplog.records) > 0
    for cpr in cprs:
        for form in (cpr, cpr[:6] + "-" + cpr[6:]):
            assert form not in event_text
            assert form.encode() not in outbox_bytes
            assert form.encode() not in vault_bytes
            assert form not in log_text
            assert form.encode() not in db_bytes
            assert form not in resp.text


def test_the_command_line_import_logs_no_cpr(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path)
    for key, value in settings.model_dump().items():
        monkeypatch.setenv(key.upper(), json.dumps(value) if isinstance(value, dict) else str(value))
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    records = examples() + generated_records(50)
    path = tmp_path / "export.ndjson"
    path.write_text(ndjson(records) + '{"record_id": "x", "type": "CaseOpened"}\n')
    results = tmp_path / "results.ndjson"
    assert cli.main(["import", str(path), "--municipality", "751", "--results", str(results)]) == 1
    out, err = capsys.readouterr()
    text = out + err + caplog.text + results.read_text()
    for cpr in all_cprs(records):
        assert cpr not in text and cpr[:6] + "-" + cpr[6:] not in text


# --- showing a CPR ---------------------------------------------------------------------------------


def test_who_may_see_a_cpr(client: TestClient, settings: Settings) -> None:
    load(client)
    resp = cpr_of(client, settings, CPR_A, role="chef")
    assert resp.status_code == 200
    assert resp.json() == {"child_id": child_id(settings, CPR_A), "municipality": "751", "cpr": CPR_A}
    assert resp.headers["cache-control"] == "no-store"
    assert cpr_of(client, settings, CPR_A, role="teamleder", teams=["syd"]).status_code == 200
    assert cpr_of(client, settings, CPR_A, role="teamleder", teams=["nord"]).status_code == 403
    assert (
        cpr_of(
            client, settings, CPR_A, role="sagsbehandler", teams=["syd"], caseworker_id="sr-bo"
        ).status_code
        == 200
    )
    # sr-anna no longer holds the case (ex-13 gave it to sr-bo)
    assert (
        cpr_of(
            client, settings, CPR_A, role="sagsbehandler", teams=["syd"], caseworker_id="sr-anna"
        ).status_code
        == 403
    )
    assert (
        cpr_of(
            client, settings, CPR_B, role="sagsbehandler", teams=["nord"], caseworker_id="sr-carl"
        ).status_code
        == 200
    )
    assert cpr_of(client, settings, CPR_A, role="udvalg").status_code == 403
    assert cpr_of(client, settings, CPR_A, role="system").status_code == 403
    assert cpr_of(client, settings, CPR_A, role="chef", municipality="657").status_code == 403
    assert (
        client.get(f"/children/{child_id(settings, CPR_A)}/cpr", params={"municipality": "751"}).status_code
        == 401
    )
    assert cpr_of(client, settings, "0101104999", role="chef").status_code == 404


def test_reading_a_cpr_is_audited(client: TestClient, settings: Settings) -> None:
    load(client)
    cid = child_id(settings, CPR_A)
    assert cpr_of(client, settings, CPR_A, role="chef", sub="ane").status_code == 200
    assert cpr_of(client, settings, CPR_A, role="teamleder", teams=["nord"], sub="nils").status_code == 403
    audit = client.get("/audit", params={"child_id": cid}, headers=auth(role="chef")).json()
    entries = audit["entries"]
    assert [(e["sub"], e["role"], e["endpoint"], e["service"]) for e in entries] == [
        ("ane", "chef", "GET /children/{child_id}/cpr", "intake")
    ]


def test_the_unborn_childs_identity(client: TestClient, settings: Settings) -> None:
    load(client)
    service = IntakeService(_no_engine(), settings)
    from datetime import date

    cid = service.child_id_for(ChildIdentity(mother_cpr=MOTHER, expected_birth=date(2027, 2, 1)))
    resp = client.get(f"/children/{cid}/cpr", params={"municipality": "751"}, headers=auth(role="chef"))
    assert resp.status_code == 200
    assert resp.json() == {
        "child_id": cid,
        "municipality": "751",
        "unborn": True,
        "mother_cpr": MOTHER,
        "expected_birth": "2027-02-01",
    }


# --- forget ----------------------------------------------------------------------------------------


def _events(settings: Settings) -> list[Any]:
    engine = create_engine(settings.event_store_url)
    with engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.position)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_forget_destroys_the_identity_and_keeps_the_events(client: TestClient, settings: Settings) -> None:
    load(client)
    cid = child_id(settings, CPR_A)
    before = _events(settings)
    assert cpr_of(client, settings, CPR_A, role="chef").status_code == 200

    url = f"/children/{cid}/forget"
    assert (
        client.post(
            url, params={"municipality": "751"}, headers=auth(role="teamleder", teams=["syd"])
        ).status_code
        == 403
    )
    assert (
        client.post(
            url, params={"municipality": "657"}, headers=auth(role="chef", municipality="657")
        ).status_code
        == 404
    )
    resp = client.post(url, params={"municipality": "751"}, headers=auth(role="chef", sub="ane"))
    assert resp.status_code == 200
    assert resp.json()["status"] == "forgotten"

    gone = cpr_of(client, settings, CPR_A, role="chef")
    assert gone.status_code == 410
    assert CPR_A not in gone.text
    assert _events(settings) == before  # the pseudonymous events are untouched
    assert sum(1 for e in before if cid in e[2]) == 13  # ex-01..ex-13 still name the child by pseudonym
    assert cpr_of(client, settings, CPR_B, role="chef").status_code == 200  # other children unaffected

    engine = create_engine(settings.event_store_url)
    with engine.connect() as conn:
        assert conn.execute(select(child_keys).where(child_keys.c.child_id == cid)).first() is None
        row = conn.execute(select(children).where(children.c.child_id == cid)).one()
        assert row.forgotten and row.forgotten_by == "ane"
    engine.dispose()

    again = client.post(url, params={"municipality": "751"}, headers=auth(role="chef"))
    assert again.status_code == 200 and again.json()["status"] == "already_forgotten"
    unknown = client.post(
        "/children/nobody/forget", params={"municipality": "751"}, headers=auth(role="chef")
    )
    assert unknown.status_code == 404

    # a later record about the same child is accepted, but the identity is not stored again
    later = {**example("ex-01"), "record_id": "after-forget"}
    later["data"] = {**later["data"], "underretning_id": "UR-2000"}
    assert client.post("/records", json=later, headers=auth(role="system")).status_code == 201
    assert cpr_of(client, settings, CPR_A, role="chef").status_code == 410


def test_forget_from_the_command_line(
    client: TestClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load(client)
    for key, value in settings.model_dump().items():
        monkeypatch.setenv(key.upper(), json.dumps(value) if isinstance(value, dict) else str(value))
    assert cli.main(["forget", child_id(settings, CPR_B), "--municipality", "751", "--by", "dpo"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "forgotten"
    assert cpr_of(client, settings, CPR_B, role="chef").status_code == 410

    monkeypatch.setattr("sys.stdin", io.StringIO(CPR_A + "\n"))
    assert cli.main(["forget", "--cpr-stdin", "--municipality", "751"]) == 0
    out = capsys.readouterr().out
    assert CPR_A not in out and json.loads(out)["child_id"] == child_id(settings, CPR_A)
    assert cpr_of(client, settings, CPR_A, role="chef").status_code == 410
    assert cli.main(["forget", "nobody", "--municipality", "751"]) == 1
