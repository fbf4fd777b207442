"""``maas serve --keys`` stopped as service managers stop it (SIGTERM) writes the usage it had not written yet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from functions.consumers.sqlite_store import SqliteStore
from functions.core.store import LocalStore
from tests.api.samples import DIABETES_ROW
from tests.consumers.conftest import add_key
from tests.live_server import free_port, wait_live

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_writes_pending_usage_before_the_server_exits(built_store: LocalStore, tmp_path: Path) -> None:
    keys = SqliteStore(tmp_path / "keys.db")
    key, _ = add_key(keys, "stopped")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    server = subprocess.Popen([sys.executable, "-m", "maas", "serve", "--store", built_store.uri, "--port", str(port),
                               "--keys", str(keys.path)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_live(f"http://127.0.0.1:{port}", server)
        body = json.dumps({"instances": [DIABETES_ROW]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/diabetes-mlp/predict", body,
                                         headers={"content-type": "application/json", "x-api-key": key})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        server.send_signal(signal.SIGTERM)  # at once: before the meter's next periodic write
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        if server.stderr:
            server.stderr.close()
    [row] = keys.usage(consumer="stopped")
    assert (row.requests, row.rows) == (1, 1)


def test_serve_names_a_missing_key_store_and_exits_3(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = subprocess.run([sys.executable, "-m", "maas", "serve", "--keys", str(missing), "--port", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and f"no key store at {missing}" in result.stderr and not missing.exists()
