"""`python -m services.<svc> serve` (shared.serving.serve): one JSON access line per request, the
service's own (route template, status, caller), and none from uvicorn's access log beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.infra.ports import free_port, port_is_open

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("service", ["intake", "followup", "ledelsesinfo"])
def test_a_request_is_logged_once_by_the_service(service: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        "TRANSPORT": "sql",
        "EVENT_STORE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "DATABASE_URL": "" if service == "intake" else f"sqlite:///{tmp_path / service}.db",
        "RUN_WORKER": "false",
        "CPR_PSEUDONYM_KEY": "serve-test-pseudonym-key-0123456789abcdef",
        "CPR_MASTER_KEY": "serve-test-master-key-0123456789abcdef-01",
    }
    for svc in {"intake", service}:
        subprocess.run([sys.executable, "-m", f"services.{svc}", "migrate"], env=env, cwd=ROOT, check=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}", "serve"], env=env, cwd=ROOT, stderr=err
        )
        try:
            deadline = time.monotonic() + 60
            while not port_is_open(port):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.1)
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-path", timeout=10)
            assert answer.value.code == 404
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") in ("http.access", "uvicorn.access")]
    assert [line["logger"] for line in access] == ["http.access"], access
    assert access[0]["status"] == 404
    assert access[0]["client"].startswith("127.0.0.1:")
