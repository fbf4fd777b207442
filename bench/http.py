"""Loopback HTTP: throughput and latency of each server under wrk at concurrency 1, 8 and 32, and server
start -> first 200.

Servers (one process each, onnxruntime or torch with 1 intra-op thread, access logs off, same digits-cnn
model, same request body of one 8x8 image and the same response body): maas (`maas serve`: uvicorn with the
Lambda's ASGI app, concurrent requests joining session runs), a hand-written FastAPI + onnxruntime app under
uvicorn, FastAPI + PyTorch eager under uvicorn (every uvicorn here parses HTTP with httptools, from the
project's ``local`` extra), and BentoML serving the same ONNX file (installed in bench/.venv, not in the
project). The load
tool for all is wrk (1 thread, keep-alive, fixed duration); servers are measured one at a time, in turn,
on this 2-core machine, so the load generator shares the CPU with the server equally for every peer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.peers.event import DIGIT_ZERO

TITLE = "HTTP on loopback: req/s and latency under wrk, server start to first answer"
ROOT = Path(__file__).resolve().parents[1]
PEERS_VENV = ROOT / "bench" / ".venv"
PATH = "/v1/models/digits-cnn/predict"
BODY = json.dumps({"instances": [DIGIT_ZERO]})
CONCURRENCY = (1, 8, 32)
# The heavy model: one sentence to minilm-classifier (maas ships int8; PyTorch eager runs the fp32 network).
TEXT_MODEL = "minilm-classifier"
TEXT_PATH = f"/v1/models/{TEXT_MODEL}/predict"
TEXT_BODY = json.dumps({"instances": ["The goalkeeper saved a penalty in the last minute of the derby."]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _commands(port: int, prepared: dict[str, Any]) -> dict[str, list[str]]:
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level",
               "warning", "--no-access-log", "--factory"]
    return {
        "maas": [sys.executable, "-m", "maas", "serve", "--store", prepared["store"].uri,
                 "--host", "127.0.0.1", "--port", str(port)],
        "minimal FastAPI+onnxruntime": [*uvicorn, "bench.peers.handlers:minimal_app"],
        "FastAPI+PyTorch eager": [*uvicorn, "bench.peers.handlers:torch_app"],
        "BentoML": [str(PEERS_VENV / "bin" / "bentoml"), "serve", "bench.peers.bento_service:Digits",
                    "--host", "127.0.0.1", "--port", str(port)],
    }


def _text_commands(port: int, prepared: dict[str, Any]) -> dict[str, list[str]]:
    commands = _commands(port, prepared)
    torch_text = [*commands["FastAPI+PyTorch eager"][:-1], "bench.peers.handlers:torch_text_app"]
    return {"maas": commands["maas"], "FastAPI+PyTorch eager": torch_text}


def _post(url: str, body: str = BODY) -> int:
    request = urllib.request.Request(url, data=body.encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def _start(command: list[str], env: dict[str, str], url: str,
           body: str = BODY) -> tuple[subprocess.Popen[bytes], float]:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while time.perf_counter() - started < 120:
        if process.poll() is not None:
            error = process.stderr.read().decode()[-2000:] if process.stderr else ""
            raise RuntimeError(f"{command[:4]} exited: {error}")
        try:
            if _post(url, body) == 200:
                return process, (time.perf_counter() - started) * 1000
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"{command[:4]} did not answer within 120 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def _wrk(url: str, concurrency: int, seconds: int, script: Path) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))  # wrk pads "1.38s "
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"wrk reported no latency distribution for {url} at c={concurrency}:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"concurrency": concurrency, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"]),
            "errors": (int(non_2xx.group(1)) if non_2xx else 0)
            + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0)}


def run(quick: bool) -> dict[str, Any]:
    from bench.serving import _prepare, trained_recipe
    from model_build.pipeline import build

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk); `make bench` installs it")
    if not (PEERS_VENV / "bin" / "bentoml").exists():
        raise RuntimeError("bench/.venv with BentoML is missing; `make bench` creates it")
    seconds, rounds = (3, 1) if quick else (10, 3)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = _prepare(work)
        text_manifest = build(trained_recipe(TEXT_MODEL), prepared["store"], quick=True)
        env = {**os.environ, "BENCH_ONNX": str(prepared["onnx"]), "BENCH_TORCH_STATE": str(prepared["state"]),
               "BENTOML_CONFIG_OPTIONS": "api_server.logging.access.enabled=false", "BENTOML_DO_NOT_TRACK": "True",
               "PYTHONPATH": str(ROOT)}
        results = _measure(lambda port: _commands(port, prepared), PATH, BODY, env, work, seconds, rounds)
        text = _measure(lambda port: _text_commands(port, prepared), TEXT_PATH, TEXT_BODY, env, work, seconds,
                        rounds)
    return {"quick": quick, "seconds": seconds, "rounds": rounds, "servers": results,
            "text": {"model": TEXT_MODEL, "variant": text_manifest.selected["cpu"], "servers": text},
            "bentoml": _bentoml_version()}


def _measure(commands: Any, path: str, body: str, env: dict[str, str], work: Path, seconds: int,
             rounds: int) -> dict[str, Any]:
    """Each server in turn, ``rounds`` times: start -> first 200, a warm-up, then wrk at each concurrency."""
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    names = list(commands(0))
    startup: dict[str, list[float]] = {n: [] for n in names}
    load: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in CONCURRENCY} for n in names}
    for _ in range(rounds):
        for name in names:
            port = _free_port()
            url = f"http://127.0.0.1:{port}{path}"
            process, first_ms = _start(commands(port)[name], env, url, body)
            try:
                startup[name].append(first_ms)
                _wrk(url, 8, 1, script)  # warm-up, untimed
                for concurrency in CONCURRENCY:
                    load[name][concurrency].append(_wrk(url, concurrency, seconds, script))
            finally:
                _stop(process)
    return {name: {"startup_ms": round(statistics.median(startup[name])), "load": [
        {"concurrency": c, "rps": round(statistics.median(r["rps"] for r in runs), 1),
         "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
         "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
         "errors": sum(r["errors"] for r in runs), "runs": runs} for c, runs in load[name].items()]}
        for name in names}


def _bentoml_version() -> str:
    out = subprocess.run([str(PEERS_VENV / "bin" / "python"), "-c", "import bentoml; print(bentoml.__version__)"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _table(servers: dict[str, Any]) -> list[str]:
    lines = ["| server | start -> first 200 (ms) | c=1 req/s | c=1 p50 / p99 (ms) | c=8 req/s | c=8 p50 / p99 (ms) "
             "| c=32 req/s | c=32 p50 / p99 (ms) | errors |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in servers.items():
        cells = " | ".join(f"{p['rps']:,.0f} | {p['p50_ms']:.2f} / {p['p99_ms']:.2f}" for p in s["load"])
        lines.append(f"| {name} | {s['startup_ms']} | {cells} | {sum(p['errors'] for p in s['load'])} |")
    return lines


def _ratios(servers: dict[str, Any], targets: tuple[tuple[str, str], ...]) -> list[str]:
    maas32 = servers["maas"]["load"][-1]
    lines = ["| ratio at concurrency 32 | req/s | p99 | target |", "|---|---|---|---|"]
    for peer, target in targets:
        p = servers[peer]["load"][-1]
        lines.append(f"| maas / {peer} | {maas32['rps'] / p['rps']:.2f}x | {maas32['p99_ms'] / p['p99_ms']:.2f}x "
                     f"| {target} |")
    return lines


def render(result: dict[str, Any]) -> str:
    lines = [f"wrk, {result['seconds']} s per point, median of {result['rounds']} round(s); BentoML "
             f"{result['bentoml']}.", "", "digits-cnn, one 8x8 image per request:", "", *_table(result["servers"]),
             "", *_ratios(result["servers"], (
                 ("BentoML", ">= 1.5x req/s, p99 no worse"), ("FastAPI+PyTorch eager", ">= 2x req/s, p99 no worse"),
                 ("minimal FastAPI+onnxruntime", "-")))]
    if "text" in result:
        text = result["text"]
        lines += ["", f"{text['model']}, one sentence per request (maas serves its shipped {text['variant']} "
                  "variant with the tokenizers library; PyTorch eager runs the fp32 network with transformers' "
                  "fast tokenizer):", "", *_table(text["servers"]), "",
                  *_ratios(text["servers"], (("FastAPI+PyTorch eager", ">= 2x req/s, p99 no worse"),))]
    return "\n".join(lines)
