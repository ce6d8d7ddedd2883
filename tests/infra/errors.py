"""The one error the infrastructure helpers raise: the message carries the script output and log tail."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class InfraError(RuntimeError):
    """A real server could not be started, stopped or reached."""


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    tail = text.splitlines()[-lines:]
    return f"----- last {len(tail)} lines of {path} -----\n" + "\n".join(tail)


def run_script(args: list[str], *, timeout: float, log: Path | None = None) -> str:
    """Run one of the deploy scripts; its stdout on success, InfraError with everything useful otherwise."""
    try:
        proc = subprocess.run(
            args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        tail = log_tail(log) if log else ""
        raise InfraError(f"{' '.join(args)} did not finish within {timeout:.0f}s\n{tail}") from exc
    if proc.returncode != 0:
        tail = log_tail(log) if log else ""
        raise InfraError(
            f"{' '.join(args)} failed with exit code {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}\n{tail}"
        )
    return proc.stdout
