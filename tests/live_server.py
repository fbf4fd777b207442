"""Waiting for a ``maas serve`` started as a process: a free loopback port, and its liveness (a bound wait)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

WAIT_SECONDS = 60.0


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_live(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``url``'s ``/v2/health/live`` answers; RuntimeError if ``process`` exits first or nothing
    answers within ``WAIT_SECONDS`` (a bound on the wait, not a figure any test asserts)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/live", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer /v2/health/live")
