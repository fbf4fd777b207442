"""API keys: what the authorizer and the key gate add to a request, cold and warm.

- Authorizer (``functions.consumers.authorizer``): a fresh interpreter imports the handler and answers its first
  event (the DynamoDB client is made then, and the key read from the table), then a second one from its in-memory
  cache; warm, in one process: a cached verdict, and one read from the table each time (cache TTL 0). The table
  is moto's server on loopback (a GetItem in a region also takes milliseconds; not measured here).
  API Gateway caches the authorizer's answer per key, so most requests never invoke it.
- The API function (Lambda handler stack: Mangum over the fast front, HTTP API v2 events with the authorizer's
  context, the stand-in runtime client): no gate vs the gate with a key without limits (scope check, usage
  counted; its write after the post is timed apart) vs a key with a rate limit and a daily quota (two
  conditional counter updates per request, on the loopback table). Interleaved blocks in one process; the
  ratio is the median of each block's p50 over the no-gate block just before it.
- ``maas serve`` (uvicorn, loopback client): the same three, the gate looking keys up in a SQLite file.

Model: diabetes-mlp (quick build).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TITLE = "API keys: the authorizer's and the key gate's cost per request"
MODEL = "diabetes-mlp"
VARIANTS = ("none", "key", "limits")
SETTLE_RUNS = 2
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
_COLD = """
import json, sys, time
started = time.perf_counter()
from functions.consumers import authorizer
imported = time.perf_counter()
event = json.loads(sys.argv[1])
first = authorizer.handler(event, None)
answered = time.perf_counter()
second = authorizer.handler(event, None)
again = time.perf_counter()
assert first["context"]["consumer"] == second["context"]["consumer"] == "bench", first
print(json.dumps({"import_ms": (imported - started) * 1000, "first_ms": (answered - imported) * 1000,
                  "cached_ms": (again - answered) * 1000}))
"""


@contextlib.contextmanager
def _table() -> Any:
    """A key table on moto's server, in a process of its own (as the table is remote to a function: its work
    never competes with the timed code for this interpreter); yields (endpoint, DynamoStore). AWS_ENV and the
    endpoint go to the environment (children inherit them)."""
    import socket

    import httpx

    from functions.consumers.dynamo_store import DynamoStore
    from tests.consumers.dynamo import make_table

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in (*AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB", "MAAS_KEYS")}
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)
        os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": endpoint})
        table = DynamoStore(make_table(endpoint))
        os.environ["MAAS_KEYS"] = table.uri
        yield endpoint, table
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.terminate()
        server.wait(10)


def _key(store: Any, **limits: Any) -> tuple[str, Any]:
    from functions.consumers.keys import KeyRecord, key_hash, new_key

    key, key_id = new_key()
    record = KeyRecord(key_hash(key), key_id, "bench", created_at=time.time(), **limits)
    store.put_key(record)
    return key, record


def _authorizer_event(key: str) -> dict[str, Any]:
    from tests.consumers.test_deployed import authorizer_event

    return authorizer_event({"x-api-key": key})


def _authorizer(table: Any, runs: int, colds: int) -> dict[str, Any]:
    from functions.consumers.admission import Keyring
    from functions.consumers.authorizer import verdict

    key, _ = _key(table)
    event = _authorizer_event(key)
    root = Path(__file__).resolve().parents[1]
    cold = []
    for _ in range(colds):
        out = subprocess.run([sys.executable, "-c", _COLD, json.dumps(event)], capture_output=True, text=True,
                             check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        cold.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cached_ring, reading_ring = Keyring(table, ttl=3600), Keyring(table, ttl=0)
    cached = _timed(lambda: verdict(event, cached_ring), runs)
    read = _timed(lambda: verdict(event, reading_ring), runs)
    return {"cold_import_ms": round(statistics.median(c["import_ms"] for c in cold), 2),
            "cold_first_ms": round(statistics.median(c["first_ms"] for c in cold), 2),
            "cold_second_ms": round(statistics.median(c["cached_ms"] for c in cold), 3),
            "warm_cached_us": round(statistics.median(cached) * 1000, 1),
            "warm_table_read_ms": round(statistics.median(read), 3), "colds": colds, "runs": runs}


def _timed(work: Callable[[], Any], runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _contexts(table: Any) -> dict[str, dict[str, Any] | None]:
    from functions.consumers.admission import Grant

    _, plain = _key(table)
    _, limited = _key(table, rate_limit=1e6, daily_quota=10**9)
    return {"none": None, "key": Grant.of(plain).to_context(), "limits": Grant.of(limited).to_context()}


def _lambda(store: Any, table: Any, blocks: int, runs: int) -> dict[str, Any]:
    from mangum import Mangum

    from bench.peers.event import LambdaContext, predict_event
    from functions.api.front import create_front
    from functions.consumers.admission import Limits
    from functions.consumers.gate import KeyGate
    from functions.consumers.meter import Meter
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings
    from tests.api.samples import DIABETES_ROW
    from tests.lambda_runtime import runtime_client_class

    settings = Settings(store=store.uri, max_batch_rows=1)
    front = create_front(settings, ModelCache(store, settings))
    # The handler's own cost: usage goes to a store that keeps nothing (its write, after the post, is timed apart
    # below); a write in the loop would leave the next request on cold caches, which the no-keys runs never see.
    meter = Meter(_NoStore())  # type: ignore[arg-type]
    client_class = runtime_client_class()
    assert meter.install_after_post(client_class)
    handlers = {"none": Mangum(front, lifespan="off"),
                "key": Mangum(KeyGate(front, Limits(table), meter), lifespan="off")}
    handlers["limits"] = handlers["key"]
    events = {}
    for variant, context in _contexts(table).items():
        event = predict_event(MODEL, [DIABETES_ROW])
        if context is not None:
            event["requestContext"]["authorizer"] = {"lambda": context}
        events[variant] = event
    client, lambda_context = client_class(), LambdaContext()

    def once(variant: str) -> tuple[float, float]:
        started = time.perf_counter()
        response = handlers[variant](events[variant], lambda_context)
        answered = time.perf_counter()
        client.post_invocation_result(lambda_context.aws_request_id, json.dumps(response), "application/json")
        assert response["statusCode"] == 200, response
        return (answered - started) * 1000, (time.perf_counter() - answered) * 1000

    samples, block_p50, _ = _blocks(once, blocks, runs, with_post=True)
    figures = _figures(samples, block_p50)
    figures["usage_write_ms"] = round(statistics.median(_usage_writes(table, runs * 5)), 3)
    return figures


class _NoStore:
    def add_usage(self, rows: Any) -> None:
        pass


def _usage_writes(table: Any, runs: int) -> list[float]:
    """One request's usage written to the table, as the meter does after each post in Lambda."""
    from functions.consumers.meter import Meter
    from functions.consumers.usage import Usage

    meter = Meter(table)
    meter.after_post = True
    timings = []
    for _ in range(runs):
        meter.add(Usage.answered("bench", MODEL, "1", 200, 1, 0.2))
        started = time.perf_counter()
        assert meter.flush() == 1
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _blocks(once: Callable[[str], Any], blocks: int, runs: int, with_post: bool = False) -> tuple[Any, Any, Any]:
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    posted: dict[str, list[float]] = {v: [] for v in VARIANTS}
    block_p50: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(20):
        for variant in VARIANTS:
            once(variant)
    for _ in range(blocks):
        for variant in VARIANTS:
            timings = []
            for run in range(-SETTLE_RUNS, runs):
                result = once(variant)
                handled, post = result if with_post else (result, 0.0)
                if run >= 0:
                    timings.append(handled)
                    posted[variant].append(post)
            samples[variant] += timings
            block_p50[variant].append(statistics.median(timings))
    return samples, block_p50, posted


def _figures(samples: dict[str, list[float]], block_p50: dict[str, list[float]]) -> dict[str, Any]:
    return {"p50_ms": {v: round(statistics.median(samples[v]), 4) for v in VARIANTS},
            "ratio": {v: round(statistics.median(on / off for off, on in zip(block_p50["none"], block_p50[v],
                                                                            strict=True)), 3) for v in VARIANTS[1:]},
            "runs": len(samples["none"])}


def _serve(store: Any, work: Path, blocks: int, runs: int) -> dict[str, Any]:
    import httpx

    from functions.api.front import create_front
    from functions.consumers.gate import local_gate
    from functions.consumers.sqlite_store import SqliteStore
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings
    from tests.api.conftest import LiveServer
    from tests.api.samples import DIABETES_ROW

    keys = SqliteStore(work / "keys.db")
    plain, _ = _key(keys)
    limited, _ = _key(keys, rate_limit=1e6, daily_quota=10**9)
    settings = Settings(store=store.uri)
    front = create_front(settings, ModelCache(store, settings))
    gate = local_gate(front, str(keys.path), ttl=30)
    body = json.dumps({"instances": [DIABETES_ROW]}).encode()
    with LiveServer(front) as plain_url, LiveServer(gate) as gate_url, httpx.Client(timeout=30) as client:
        targets = {"none": (plain_url, {}), "key": (gate_url, {"x-api-key": plain}),
                   "limits": (gate_url, {"x-api-key": limited})}

        def once(variant: str) -> float:
            url, headers = targets[variant]
            started = time.perf_counter()
            answer = client.post(f"{url}/v1/models/{MODEL}/predict", content=body,
                                 headers={"content-type": "application/json", **headers})
            elapsed = (time.perf_counter() - started) * 1000
            assert answer.status_code == 200, answer.text
            return elapsed

        samples, block_p50, _ = _blocks(once, blocks, runs)
    gate.meter.flush()
    figures = _figures(samples, block_p50)
    figures["metered_requests"] = sum(row.requests for row in keys.usage())
    return figures


def run(quick: bool) -> dict[str, Any]:
    from bench.serving import trained_recipe
    from functions.core.store import LocalStore
    from model_build.pipeline import build

    blocks, runs, colds = (6, 20, 3) if quick else (40, 20, 7)
    with tempfile.TemporaryDirectory(prefix="maas-bench-consumers-") as tmp, _table() as (_, table):
        work = Path(tmp)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # noqa: PTH123
            store = LocalStore(work / "store")
            build(trained_recipe(MODEL), store, quick=True)
            authorizer = _authorizer(table, runs * 10, colds)
            lambda_figures = _lambda(store, table, blocks, runs)
            serve_figures = _serve(store, work, blocks, runs)
    return {"quick": quick, "authorizer": authorizer, "lambda": lambda_figures, "serve": serve_figures}


def render(result: dict[str, Any]) -> str:
    a = result["authorizer"]
    lines = ["| authorizer (key table: moto on loopback) | median |", "|---|---|",
             f"| cold: import the handler | {a['cold_import_ms']:.1f} ms |",
             f"| cold: first answer (client made, key read) | {a['cold_first_ms']:.1f} ms |",
             f"| cold: second answer (in-memory cache) | {a['cold_second_ms']:.3f} ms |",
             f"| warm: answer from the in-memory cache | {a['warm_cached_us']:.1f} µs |",
             f"| warm: answer reading the table (cache TTL 0) | {a['warm_table_read_ms']:.3f} ms |", ""]
    for where, title in (("lambda", "Lambda handler, warm p50"), ("serve", "`maas serve`, client-observed p50")):
        f = result[where]
        lines += [f"| {title} | no keys (ms) | key, no limits (ms) | key with rate limit and quota (ms) "
                  "| ratios | runs each |", "|---|---|---|---|---|---|",
                  f"| {MODEL} | {f['p50_ms']['none']:.3f} | {f['p50_ms']['key']:.3f} | {f['p50_ms']['limits']:.3f} "
                  f"| {f['ratio']['key']:.3f}x, {f['ratio']['limits']:.3f}x | {f['runs']:,} |", ""]
    lines += [f"In Lambda, usage is written once the response is posted: one DynamoDB UpdateItem per request, "
              f"{result['lambda']['usage_write_ms']:.3f} ms to the loopback table (billed, not waited for). The "
              "rate limit and the quota are one conditional UpdateItem each, in the request: the 'with limits' "
              "column is two loopback round trips."]
    return "\n".join(lines)


if __name__ == "__main__":
    outcome = run(quick=True)
    print(render(outcome))
