"""Soak: memory retained per request kind, through the Lambda handler and under `maas serve`.

Each configuration runs in a process of its own (``python -m bench.soak --config NAME ...``), so that nothing
else allocates there: per request kind, a warm-up, then rounds of the same request; after each round the
garbage collector runs and the round's change in Python-level allocations (tracemalloc) and the process RSS
are recorded. A server that keeps something per request shows it in every round; one-off growth (a cache
filling, a dict resizing) shows in one round only, so the figure per kind is the smallest round.

Configurations:

- ``lambda``: the API handler module (``functions.api.handler.handler``, Mangum over the fast front) invoked
  with API Gateway HTTP API events, one after another (each followed by the post of a stand-in of the runtime's
  client, after which shadow candidates run), over a local store holding diabetes-mlp (with aliases
  ``shadowed``, a shadow at rate 1.0 on a copy of version 1, and ``split``, half of it on that copy) and a
  cancer-mlp version 2 whose model file has a flipped bit (the broken version), and ``iris``, a scikit-learn
  pipeline converted with skl2onnx (ZipMap output) and brought in with ``maas import``. The alias TTL is 0, so
  every alias request finds its target expired (answered at once, refreshed in the background);
- ``lambda-capture``: the same with capture on (every request, Lambda's stdout sink, written inline);
- ``lambda-stalled``: the same handler's app (fast front + Mangum) over an S3 store behind a loopback proxy
  that accepts connections and never answers, with a 0.1 s store budget (below the 1 s floor of
  ``MAAS_REQUEST_BUDGET_SECONDS``, so that a round takes seconds): every request waits for the store, then
  answers 503;
- ``serve``: `maas serve`'s app under uvicorn on loopback with dynamic batching on (``MAX_BATCH_ROWS`` 64),
  16 concurrent keep-alive clients in this process.

The memory soak test (tests/reliability/test_memory_soak.py) runs the same configurations with fewer requests
and asserts a bound per kind; ``make bench`` records the figures in bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TITLE = "Soak: memory retained per request kind (Lambda handler and `maas serve`)"
ROOT = Path(__file__).resolve().parents[1]
BROKEN_MODEL, BROKEN_VERSION = "cancer-mlp", "2"
DIABETES_ROW = {"age": 50.0, "sex": 1.0, "bmi": 27.5, "bp": 95.0, "s1": 190.0, "s2": 115.0, "s3": 45.0,
                "s4": 4.0, "s5": 4.6, "s6": 92.0}
CANCER_ROW = [1.0] * 30
IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
CONFIGS = ("lambda", "lambda-capture", "lambda-stalled", "serve")
SERVE_CLIENTS = 16
STALLED_BUDGET_SECONDS = 0.1


@dataclass(frozen=True)
class Kind:
    """One kind of request and the status it must get."""

    name: str
    method: str
    path: str
    body: Any
    status: int
    cost: float = 1.0
    """Share of the round's request count this kind runs (explanations and store waits are slower)."""


V1 = "/v1/models/diabetes-mlp/versions/1/predict"
KINDS: dict[str, list[Kind]] = {
    "lambda": [
        Kind("v1 predict", "POST", V1, {"instances": [DIABETES_ROW]}, 200),
        Kind("v2 infer", "POST", "/v2/models/diabetes-mlp/versions/1/infer",
             {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32",
                          "data": list(DIABETES_ROW.values())}]}, 200),
        Kind("alias predict", "POST", "/v1/models/diabetes-mlp/predict", {"instances": [DIABETES_ROW]}, 200),
        Kind("explain", "POST", "/v1/models/diabetes-mlp/versions/1/explain", {"instances": [DIABETES_ROW]}, 200,
             cost=0.1),
        Kind("invalid body", "POST", V1, {"instances": "not a list"}, 422),
        Kind("unknown model", "POST", "/v1/models/no-such-model/predict", {"instances": [[1.0]]}, 404),
        Kind("broken version", "POST", f"/v1/models/{BROKEN_MODEL}/versions/{BROKEN_VERSION}/predict",
             {"instances": [CANCER_ROW]}, 503),
        Kind("imported model (skl2onnx, ZipMap) predict", "POST", "/v1/models/iris/versions/1/predict",
             {"instances": [IRIS_ROW]}, 200),
        Kind("imported model v2 infer", "POST", "/v2/models/iris/versions/1/infer",
             {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": list(IRIS_ROW.values())}]}, 200),
        Kind("shadowed alias predict (candidate after the post)", "POST",
             "/v1/models/diabetes-mlp/predict?alias=shadowed", {"instances": [DIABETES_ROW]}, 200),
        Kind("split alias predict (no key: drawn per request)", "POST", "/v1/models/diabetes-mlp/predict?alias=split",
             {"instances": [DIABETES_ROW]}, 200),
    ],
    "lambda-capture": [Kind("v1 predict, capture on", "POST", V1, {"instances": [DIABETES_ROW]}, 200)],
    "lambda-stalled": [Kind("store timeout (stalled store)", "POST", "/v1/models/diabetes-mlp/versions/1/predict",
                            {"instances": [DIABETES_ROW]}, 503, cost=0.05)],
    "serve": [
        Kind("v1 predict, batching on", "POST", V1, {"instances": [DIABETES_ROW]}, 200),
        Kind("unknown model", "POST", "/v1/models/no-such-model/predict", {"instances": [[1.0]]}, 404),
        Kind("broken version", "POST", f"/v1/models/{BROKEN_MODEL}/versions/{BROKEN_VERSION}/predict",
             {"instances": [CANCER_ROW]}, 503),
        Kind("shadowed alias predict (candidate on the shadow thread)", "POST",
             "/v1/models/diabetes-mlp/predict?alias=shadowed", {"instances": [DIABETES_ROW]}, 200),
    ],
}


def make_store(root: Path, quick: bool = True) -> Path:
    """diabetes-mlp and cancer-mlp (quick builds) in a local store, plus the broken cancer-mlp version 2."""
    from functions.core.store import LocalStore
    from model_build.pipeline import build
    from model_build.recipes import load_recipe

    store = LocalStore(root)
    for recipe in ("diabetes-mlp", BROKEN_MODEL):
        build(load_recipe(recipe), store, quick=quick)
    add_broken_version(root)
    add_imported_model(root)
    add_rollouts(root)
    return root


def add_rollouts(root: Path) -> None:
    """diabetes-mlp's aliases ``shadowed`` (a shadow on version 2, a copy of 1) and ``split`` (half on 2)."""
    from bench.rollouts import add_rollout_aliases

    add_rollout_aliases(root, "diabetes-mlp")


def add_imported_model(root: Path) -> None:
    """``iris``: scikit-learn's scaler + logistic regression, converted with skl2onnx (ZipMap output), imported."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from functions.core.store import LocalStore
    from model_build.importers.pipeline import import_model
    from model_build.importers.source import ImportOptions

    if (root / "models" / "iris").exists():
        return
    iris = load_iris()
    x = iris.data.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, iris.target)
    with tempfile.TemporaryDirectory(prefix="maas-soak-iris-") as tmp:
        source = Path(tmp) / "iris.onnx"
        source.write_bytes(to_onnx(model, x[:1], target_opset=17).SerializeToString())
        sample = Path(tmp) / "iris.csv"
        sample.write_text("\n".join([",".join(IRIS_ROW), *(",".join(map(str, row)) for row in x)]) + "\n")
        options = ImportOptions(name="iris", labels=("setosa", "versicolor", "virginica"), sample=sample, quick=True)
        import_model(source, options, LocalStore(root))


def add_broken_version(root: Path) -> None:
    """Copy cancer-mlp version 1 to version 2 with one bit of the shipped model file flipped; prod stays on 1."""
    from functions.core import catalog
    from functions.core.store import LocalStore

    versions = root / "models" / BROKEN_MODEL / "versions"
    if (versions / BROKEN_VERSION).exists():
        return
    shutil.copytree(versions / "1", versions / BROKEN_VERSION)
    manifest = versions / BROKEN_VERSION / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": "1"', f'"version": "{BROKEN_VERSION}"'))
    store = LocalStore(root)
    shipped = catalog.read_manifest(store, BROKEN_MODEL, BROKEN_VERSION)
    model_file = versions / BROKEN_VERSION / str(shipped.variant(shipped.selected["cpu"]).file)
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    model_file.write_bytes(bytes(data))
    catalog.promote(store, BROKEN_MODEL, "1", "prod")


# ---- inside the measuring process ------------------------------------------------------------------------


def _rss_mb() -> float:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _rounds(send: Callable[[Kind, int], Counter[int]], kind: Kind, requests: int, rounds: int,
            warmup: int) -> dict[str, Any]:
    """Warm up, then ``rounds`` rounds of ``requests`` (scaled by the kind's cost): statuses, bytes retained
    (tracemalloc, after a collection) and RSS per round."""
    count = max(10, int(requests * kind.cost))
    statuses = send(kind, max(5, int(warmup * kind.cost)))
    gc.collect()
    retained, rss = [], [round(_rss_mb(), 1)]
    for _ in range(rounds):
        before = tracemalloc.get_traced_memory()[0]
        statuses += send(kind, count)
        gc.collect()
        retained.append(tracemalloc.get_traced_memory()[0] - before)
        rss.append(round(_rss_mb(), 1))
    return {"kind": kind.name, "expected_status": kind.status, "statuses": {str(k): v for k, v in statuses.items()},
            "requests_per_round": count, "retained_bytes": retained, "rss_mb": rss,
            "bytes_per_request": round(min(retained) / count, 2),
            "kb_per_1000_requests": round(min(retained) / count * 1000 / 1024, 2)}


def _lambda_sender(handler: Callable[[dict[str, Any], Any], dict[str, Any]],
                   client: Any = None) -> Callable[[Kind, int], Counter[int]]:
    """Invocations one after another; with a runtime ``client``, each in the runtime's order (handler, then the
    post, after which shadow candidates run)."""
    from tests.events import LambdaContext, http_api_event
    from tests.lambda_runtime import invoke

    def send(kind: Kind, count: int) -> Counter[int]:
        path, _, query = kind.path.partition("?")
        event = http_api_event(kind.method, path, json.dumps(kind.body).encode(),
                               query=dict(p.split("=", 1) for p in query.split("&")) if query else None)
        statuses: Counter[int] = Counter()
        for _ in range(count):
            answer = invoke(client, handler, event, LambdaContext()) if client else handler(event, LambdaContext())
            statuses[answer["statusCode"] if answer else 500] += 1
            if client:
                client.posted.clear()  # the stand-in notes every post: not the server's memory
        return statuses

    return send


def _lambda_handler(config: str, store: Path) -> tuple[Callable[[dict[str, Any], Any], dict[str, Any]], Any]:
    """The API handler module's handler, and a stand-in of the runtime's client whose posts run what waits for
    them (shadow comparisons; their records go to stdout, dropped)."""
    os.environ.update({"MAAS_STORE": f"file://{store}", "MAAS_ALIAS_TTL_SECONDS": "0"})
    if config == "lambda-capture":
        os.environ.update({"MAAS_CAPTURE_RATE": "1", "AWS_LAMBDA_FUNCTION_NAME": "maas-soak"})
    import functions.api.handler
    from functions.core import capture, shadow
    from tests.lambda_runtime import runtime_client_class

    client_class = runtime_client_class()
    runner = functions.api.handler.app.service.shadows
    runner.sink = capture.StdoutSink()
    shadow.start_after_response(runner, client_class)
    return functions.api.handler.handler, client_class()


def _stalled_handler() -> tuple[Callable[[dict[str, Any], Any], dict[str, Any]], Callable[[], None]]:
    """The handler's app over an S3 store behind a proxy that never answers (see the module docstring)."""
    from mangum import Mangum

    from functions.api.front import create_front
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings
    from functions.core.store import S3Store
    from tests.reliability.proxy import FaultProxy

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "soak")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "soak")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    proxy = FaultProxy(("127.0.0.1", 9))
    proxy.set_mode("hung")
    settings = Settings(store="s3://soak/store", s3_endpoint_url=proxy.endpoint, max_batch_rows=1,
                        cache_dir=tempfile.mkdtemp(prefix="maas-soak-"))
    store = S3Store("soak", "store", endpoint_url=proxy.endpoint, budget_seconds=STALLED_BUDGET_SECONDS)
    return Mangum(create_front(settings, ModelCache(store, settings)), lifespan="off"), proxy.close


def _serve_rounds(store: Path, requests: int, rounds: int, warmup: int) -> list[dict[str, Any]]:
    import threading
    import time

    import httpx
    import uvicorn

    from functions.api.front import create_front
    from functions.core import capture
    from functions.core.settings import Settings

    settings = Settings(store=f"file://{store}", max_batch_rows=64)
    front = create_front(settings)
    front.service.shadows.sink = capture.StdoutSink()  # comparison records: stdout, dropped
    server = uvicorn.Server(uvicorn.Config(front, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    loop = asyncio.new_event_loop()
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(SERVE_CLIENTS)]

    async def user(client: httpx.AsyncClient, kind: Kind, count: int) -> Counter[int]:
        body = json.dumps(kind.body).encode()
        statuses: Counter[int] = Counter()
        for _ in range(count):
            response = await client.request(kind.method, kind.path, content=body,
                                            headers={"content-type": "application/json"})
            statuses[response.status_code] += 1
        return statuses

    async def together(kind: Kind, count: int) -> Counter[int]:
        share = -(-count // SERVE_CLIENTS)
        parts = await asyncio.gather(*(user(c, kind, share) for c in clients))
        front.service.shadows.flush()  # comparisons still queued are not memory kept
        return sum(parts, Counter())

    try:
        return [_rounds(lambda kind, count: loop.run_until_complete(together(kind, count)), kind, requests, rounds,
                        warmup) for kind in KINDS["serve"]]
    finally:
        for client in clients:
            loop.run_until_complete(client.aclose())
        loop.close()
        server.should_exit = True
        thread.join(timeout=10)


def measure(config: str, store: Path, requests: int, rounds: int, warmup: int) -> list[dict[str, Any]]:
    """Run one configuration's kinds in this process (tracemalloc is started here)."""
    tracemalloc.start(1)
    if config == "serve":
        return _serve_rounds(store, requests, rounds, warmup)
    close, client = None, None
    if config == "lambda-stalled":
        handler, close = _stalled_handler()
    else:
        handler, client = _lambda_handler(config, store)
    try:
        send = _lambda_sender(handler, client)
        return [_rounds(send, kind, requests, rounds, warmup) for kind in KINDS[config]]
    finally:
        if close:
            close()


# ---- the driver ------------------------------------------------------------------------------------------


def soak(config: str, store: Path, requests: int, rounds: int, warmup: int,
         timeout: float = 900) -> list[dict[str, Any]]:
    """Run ``measure`` for one configuration in a fresh process (its stdout, the handler's log lines, dropped)."""
    with tempfile.TemporaryDirectory(prefix="maas-soak-") as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for name in ("MAAS_CAPTURE_RATE", "MAAS_CAPTURE_DIR", "AWS_LAMBDA_FUNCTION_NAME", "MAAS_STORE"):
            env.pop(name, None)
        subprocess.run([sys.executable, "-m", "bench.soak", "--config", config, "--store", str(store),
                        "--requests", str(requests), "--rounds", str(rounds), "--warmup", str(warmup),
                        "--out", str(out)], cwd=ROOT, env=env, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result: list[dict[str, Any]] = json.loads(out.read_text())
        return [{"config": config, **row} for row in result]


def run(quick: bool) -> dict[str, Any]:
    requests, rounds = (500, 2) if quick else (2000, 4)
    with tempfile.TemporaryDirectory(prefix="maas-soak-store-") as tmp:
        store = make_store(Path(tmp) / "store", quick=True)
        rows = [row for config in CONFIGS for row in soak(config, store, requests, rounds, warmup=300)]
    return {"quick": quick, "rounds": rounds, "rows": rows}


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['rounds']} rounds per kind after a warm-up; retained = growth of Python allocations "
             "(tracemalloc) over a round, the smallest round per kind.", "",
             "| where | kind | status | requests per round | retained KB per 1,000 requests | RSS MB, start -> end |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        statuses = ", ".join(f"{k}x{v}" for k, v in sorted(r["statuses"].items()))
        lines.append(f"| {r['config']} | {r['kind']} | {statuses} | {r['requests_per_round']} | "
                     f"{r['kb_per_1000_requests']:.2f} | {r['rss_mb'][0]:.1f} -> {r['rss_mb'][-1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=CONFIGS, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = measure(args.config, args.store, args.requests, args.rounds, args.warmup)
    args.out.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
