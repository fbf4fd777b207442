"""The runtime CLI (``python -m maas``): no torch or model_build at run time, distinct exit codes, no half-made
output folders, full-width tables in pipes. Real processes, a real local store, a real busy socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from functions.core.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]
DIGIT = [[0, 0, 5, 13, 9, 1, 0, 0]] * 8

RUN_COMMANDS = r"""
import json, sys
import uvicorn
from click.testing import CliRunner
from maas.cli import main

uvicorn.Server.run = lambda self, sockets=None: None  # everything up to the serving loop runs
store, batch_input, batch_output = sys.argv[1:4]
commands = [
    ["--help"], ["build", "--help"],
    ["models", "--json", "--store", store], ["models", "--store", store],
    ["promote", "digits-cnn", "1", "--alias", "staging", "--store", store],
    ["rollback", "digits-cnn", "--alias", "staging", "--store", store],
    ["predict", "digits-cnn", "--data", "[1]", "--url", "http://127.0.0.1:9"],
    ["batch", "digits-cnn", "--input", batch_input, "--output", batch_output, "--store", store],
    ["serve", "--store", store, "--port", "0"],
]
codes = [CliRunner().invoke(main, args).exit_code for args in commands]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "model_build"))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def maas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maas", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


def _copy(store: LocalStore, tmp_path: Path) -> str:
    shutil.copytree(store.root, tmp_path / "store")
    return f"file://{tmp_path / 'store'}"


def test_runtime_commands_never_import_torch_or_model_build(built_store: LocalStore, tmp_path: Path) -> None:
    batch_input = tmp_path / "digits.jsonl"
    batch_input.write_text(json.dumps(DIGIT) + "\n")
    result = subprocess.run([sys.executable, "-c", RUN_COMMANDS, _copy(built_store, tmp_path), str(batch_input),
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # rollback: staging has no previous version (3); predict: nothing listens on port 9 (5)
    assert outcome["codes"] == [0, 0, 0, 0, 0, 3, 5, 0, 0]
    assert outcome["heavy"] == []
    assert (tmp_path / "out" / "report.json").is_file()


def test_serve_on_a_busy_port_exits_11_before_announcing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = maas("serve", "--store", f"file://{tmp_path}", "--port", str(port))
    assert result.returncode == 11, result.stderr
    assert "serving" not in result.stderr
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_batch_missing_or_unreadable_input_exits_10_and_leaves_no_output(built_store: LocalStore,
                                                                        tmp_path: Path) -> None:
    output = tmp_path / "new" / "out"
    missing = maas("batch", "digits-cnn", "--input", str(tmp_path / "nope.jsonl"), "--output", str(output),
                   "--store", built_store.uri)
    assert missing.returncode == 10, missing.stderr
    assert "does not exist" in missing.stderr

    garbage = tmp_path / "rows.npy"
    garbage.write_bytes(b"not a numpy file at all")
    unreadable = maas("batch", "digits-cnn", "--input", str(garbage), "--output", str(output),
                      "--store", built_store.uri)
    assert unreadable.returncode == 10, unreadable.stderr
    assert not (tmp_path / "new").exists()


def test_models_table_is_full_width_when_piped(built_store: LocalStore) -> None:
    result = maas("models", "--store", built_store.uri, env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert {"digits-cnn", "cancer-mlp", "diabetes-mlp", "text-lstm"} <= set(rows)
    assert "accuracy 0." in rows["digits-cnn"] and "rmse " in rows["diabetes-mlp"]
    assert built_store.uri in result.stdout  # the title is not cut either


def test_serve_socket_gets_nagle_off_on_every_connection() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket says IPPROTO_TCP; without
    it each response body waits for the client's delayed ACK of its headers."""
    import asyncio

    from maas.serve import bind

    listener = bind("127.0.0.1", 0)
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def serve_one() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(serve_one())
    assert seen == [1]
