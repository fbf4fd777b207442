"""README's front-page examples and the ones `make serve` prints work as printed against a live `maas serve`
(a real process on loopback) on the quick-built demo store. Only host and port are substituted."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.core.store import LocalStore
from tests.live_server import free_port, wait_live

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = "127.0.0.1:8000"


def readme_commands() -> list[str]:
    """Shell commands (curl, maas predict) from README's bash blocks, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command.startswith(".venv/bin/maas predict ") or (command.startswith("curl ") and DEFAULT in command):
                commands.append(command)
    return commands


def makefile_commands() -> list[str]:
    """What `make serve` prints under "Try these", with make's variables and echo quoting undone."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = text[text.index("\nserve:"):]
    target = target[:target.index("\n\n")]
    commands = []
    for line in re.findall(r'@echo "  (.*)"$', target, flags=re.MULTILINE):
        line = line.replace('\\"', '"').replace("$(HOST)", "127.0.0.1").replace("$(PORT)", "8000")
        line = line.replace("$(VENV)", ".venv")
        if line.startswith(("curl ", ".venv/bin/maas ")):
            commands.append(line)
    return commands


@pytest.fixture(scope="module")
def live_url(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "maas", "serve", "--store", built_store.uri, "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_live(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _front_page(command: str) -> bool:
    return "minilm" not in command  # minilm-embed's example lives in its own section: build it first


def test_examples_are_found() -> None:
    readme = [c for c in readme_commands() if _front_page(c)]
    assert len(readme) >= 3 and any(c.startswith(".venv/bin/maas predict") for c in readme)
    assert len(makefile_commands()) >= 4
    assert any("minilm-embed" in c for c in readme_commands())


@pytest.mark.parametrize("command", [*(c for c in readme_commands() if _front_page(c)), *makefile_commands()])
def test_printed_example_answers(live_url: str, command: str) -> None:
    if command.startswith("curl ") and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    env = {**os.environ, "MAAS_URL": live_url, "PATH": os.environ.get("PATH", "")}
    command = command.replace(f"http://{DEFAULT}", live_url)
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert "error" not in body, body
