"""Load: 32 concurrent users for six rounds of 40 s against `maas serve` on loopback, mixing good and bad requests.

The mix per request (drawn at random, fixed seed): 70% good predictions on a version route, 10% on the alias
route, 10% invalid input (expects 422), 5% an unknown model (404) and 5% a version whose model file is
corrupt (503). The generator is a small asyncio + httpx client in this process (one connection per user,
keep-alive); the server is one `maas serve` process. "failures" counts answers whose status differs from
the expected one, and transport errors; "5xx" counts 5xx answers other than the expected 503s. The model is
a two-feature classifier built with the onnx helper API (the point is the server, not the model). The server's
RSS is read after the warm-up and after each round: a server that keeps something per request grows every round,
a healthy one reaches a plateau.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.http import _free_port, _stop

TITLE = "Load: 32 users, mixed good and bad requests against `maas serve`"
ROOT = Path(__file__).resolve().parents[1]
USERS = 32
ROUND_SECONDS = 40
ROUNDS = 6
MIX = (("good", 0.70, 200), ("alias", 0.10, 200), ("invalid", 0.10, 422), ("unknown", 0.05, 404),
       ("broken", 0.05, 503))
ROW = {"instances": [[1.0, 2.0]]}


def _model() -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [weights])
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
                 .SerializeToString())


def _publish(store: Path, name: str, data: bytes, stored: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    folder = store / "models" / name / "versions" / "1"
    folder.mkdir(parents=True)
    (folder / "model.fp32.onnx").write_bytes(stored)
    manifest = {
        "schema_version": 1, "name": name, "version": "1", "created_at": "2026-01-01T00:00:00+00:00",
        "task": "classification", "description": "load bench",
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 2]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 2]}],
        "preprocessing": {"kind": "tabular", "features": ["a", "b"], "mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "labels": ["left", "right"], "metric_name": "accuracy", "latency_batch": 256, "baselines": {},
        "variants": [{"name": "fp32", "file": "model.fp32.onnx", "precision": "fp32", "target": "cpu",
                      "sha256": digest, "bytes": len(data), "metrics": None, "passed": True, "reason": "-"}],
        "selected": {"cpu": "fp32"}, "selection_reason": "-", "gates": [], "reference_stats": {},
        "files": [{"path": "model.fp32.onnx", "sha256": digest, "bytes": len(data)}],
        "provenance": {"recipe": name, "git_commit": None, "libraries": {}, "data_sha256": digest, "seed": 0,
                       "quick": True, "build_seconds": 0.0}}
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _user(client: Any, base: str, rng: random.Random, deadline: float, out: list[tuple[str, int, float]]) -> None:
    kinds, weights = [k for k, _, _ in MIX], [w for _, w, _ in MIX]
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        url, body = {
            "good": (f"{base}/v1/models/load/versions/1/predict", ROW),
            "alias": (f"{base}/v1/models/load/predict", ROW),
            "invalid": (f"{base}/v1/models/load/versions/1/predict", {"instances": [["a", None]]}),
            "unknown": (f"{base}/v1/models/no-such-model/predict", ROW),
            "broken": (f"{base}/v1/models/broken/versions/1/predict", ROW),
        }[kind]
        started = time.perf_counter()
        try:
            status = (await client.post(url, json=body)).status_code
        except Exception:  # transport error: counted as a failure
            status = 0
        out.append((kind, status, (time.perf_counter() - started) * 1000))


async def _drive(base: str, seconds: float) -> list[tuple[str, int, float]]:
    import httpx

    out: list[tuple[str, int, float]] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=USERS, max_keepalive_connections=USERS)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(_user(client, base, random.Random(i), deadline, out) for i in range(USERS)))
    return out


def run(quick: bool) -> dict[str, Any]:
    round_seconds, rounds = (5, 2) if quick else (ROUND_SECONDS, ROUNDS)
    with tempfile.TemporaryDirectory(prefix="maas-load-") as tmp:
        store = Path(tmp) / "store"
        good = _model()
        _publish(store, "load", good, good)
        corrupt = bytearray(good)
        corrupt[len(corrupt) // 2] ^= 0x10
        _publish(store, "broken", good, bytes(corrupt))
        port = _free_port()
        env = {**os.environ, "MAAS_CACHE_DIR": str(Path(tmp) / "cache")}
        process = subprocess.Popen([sys.executable, "-m", "maas", "serve", "--store", f"file://{store}",
                                    "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_wait(base))
            asyncio.run(_drive(base, 2))  # warm-up: models loaded, failures remembered
            rss = [_rss_mb(process.pid)]
            started = time.perf_counter()
            answers = []
            for _ in range(rounds):
                answers += asyncio.run(_drive(base, round_seconds))
                rss.append(_rss_mb(process.pid))
            elapsed = time.perf_counter() - started
        finally:
            _stop(process)
    expected = {kind: status for kind, _, status in MIX}
    latencies = sorted(ms for _, _, ms in answers)
    return {
        "quick": quick, "users": USERS, "seconds": round_seconds * rounds, "rounds": rounds,
        "round_seconds": round_seconds, "requests": len(answers),
        "req_per_s": round(len(answers) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "failures": sum(status != expected[kind] for kind, status, _ in answers),
        "unexpected_5xx": sum(status >= 500 and status != expected[kind] for kind, status, _ in answers),
        "by_kind": {kind: {"count": sum(k == kind for k, _, _ in answers),
                           "statuses": sorted({s for k, s, _ in answers if k == kind})} for kind, _, _ in MIX},
        "rss_mb_start": rss[0], "rss_mb_end": rss[-1], "rss_mb_rounds": rss,
    }


async def _wait(base: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(600):
            try:
                if (await client.get(f"{base}/v2/health/live")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("maas serve did not start within 60 s")


def render(result: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v['count']} ({'/'.join(map(str, v['statuses']))})" for k, v in result["by_kind"].items())
    r = result
    return "\n".join([
        "| users | seconds | requests | req/s | p50 (ms) | p99 (ms) | failures | unexpected 5xx "
        "| server RSS start -> end (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['users']} | {r['seconds']} | {r['requests']} | {r['req_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
        f"| {r['failures']} | {r['unexpected_5xx']} | {r['rss_mb_start']} -> {r['rss_mb_end']} |", "",
        f"Requests by kind (statuses seen): {kinds}.", "",
        "Server RSS (MB) after the warm-up and after each round of "
        f"{r.get('round_seconds', r['seconds'])} s: {' -> '.join(map(str, r.get('rss_mb_rounds', [])))}."])
