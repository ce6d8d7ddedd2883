"""Loopback ports: pick a free one, probe, wait."""

from __future__ import annotations

import socket
import time

_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now, never the same one twice in this process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("could not find a free port on 127.0.0.1")


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, open_: bool = True, timeout: float = 30.0, host: str = "127.0.0.1") -> bool:
    """Wait until the port accepts connections (or, with open_=False, until it refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(port, host) == open_:
            return True
        time.sleep(0.1)
    return port_is_open(port, host) == open_
