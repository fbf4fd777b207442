"""Rollouts: what shadow traffic costs the live answer, and what it adds to the bill.

Two aliases of one model point at the same version 1 in one store; ``shadowed`` has a shadow at rate 1.0 on
version 2 (a byte-for-byte copy of version 1 under another number, so the candidate costs what the live
version does), ``plain`` has none. Requests alternate between them in short interleaved blocks in one process,
so both see the same machine; the ratio is the median over blocks of each block's p50 against the ``plain``
block just before it.

- Lambda: the API handler stack (Mangum over the fast front, API Gateway HTTP API v2 events) with a stand-in
  of the runtime's client (``tests.lambda_runtime``): handler (timed: what the response waits for), then the
  post, after which the candidate runs (timed apart: Lambda bills it, the response does not wait for it);
- ``maas serve``: the same app under uvicorn on loopback, one keep-alive client sending requests one after
  another; the candidate runs on the shadow thread once each response is sent.

Models: digits-cnn and cancer-mlp (quick builds).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TITLE = "Rollouts: shadow traffic's cost to the live answer"
MODELS = ("digits-cnn", "cancer-mlp")
ALIASES = ("plain", "shadowed")
SETTLE_RUNS = 2


def copy_version(root: Path, model: str, source: str, target: str) -> None:
    """Publish version ``source`` of ``model`` again as ``target`` (same files, its own manifest version)."""
    versions = root / "models" / model / "versions"
    if (versions / target).exists():
        return
    shutil.copytree(versions / source, versions / target)
    manifest = versions / target / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"version": "{source}"', f'"version": "{target}"'))


def add_rollout_aliases(root: Path, model: str) -> None:
    """``plain`` -> 1; ``shadowed`` -> 1 with a shadow at rate 1.0 on 2 (a copy of 1); ``split`` -> 1 with half
    of its traffic on 2."""
    from functions.core import catalog, rollout
    from functions.core.store import LocalStore

    store = LocalStore(root)
    copy_version(root, model, "1", "2")
    for alias in ("plain", "shadowed", "split"):
        catalog.promote(store, model, "1", alias)
    catalog.set_shadow(store, model, "shadowed", rollout.new_shadow("2", 1.0, catalog.now()))
    catalog.set_split(store, model, "split", rollout.new_split("2", 50.0, catalog.now()))


def _build(work: Path) -> Any:
    from bench.serving import trained_recipe
    from functions.core.store import LocalStore
    from model_build.pipeline import build

    store = LocalStore(work / "store")
    for name in MODELS:
        build(trained_recipe(name), store, quick=True)
        add_rollout_aliases(store.root, name)
    return store


def _instances(model: str) -> list[Any]:
    from bench.peers.event import DIGIT_ZERO
    from tests.api.samples import CANCER_ROW

    return [DIGIT_ZERO] if model == "digits-cnn" else [CANCER_ROW]


def _event(model: str, alias: str) -> dict[str, Any]:
    from bench.peers.event import predict_event

    event = predict_event(model, _instances(model))
    event["rawQueryString"] = f"alias={alias}"
    return event


def _lambda(store: Any, blocks: int, runs: int) -> dict[str, Any]:
    """Handler and post times per alias, interleaved blocks (see the module's docstring)."""
    from mangum import Mangum

    from bench.peers.event import LambdaContext
    from functions.api.front import create_front
    from functions.core import shadow
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings
    from tests.lambda_runtime import runtime_client_class

    settings = Settings(store=store.uri, max_batch_rows=1)
    front = create_front(settings, ModelCache(store, settings))
    sink = _CountingSink()
    front.service._shadows = shadow.ShadowRunner(front.cache, settings.shadow_budget_seconds, sink)
    client_class = runtime_client_class()
    assert shadow.start_after_response(front.service.shadows, client_class)
    client, context, handler = client_class(), LambdaContext(), Mangum(front, lifespan="off")
    result: dict[str, Any] = {}
    for model in MODELS:
        events = {alias: _event(model, alias) for alias in ALIASES}
        handled: dict[str, list[float]] = {alias: [] for alias in ALIASES}
        posted: dict[str, list[float]] = {alias: [] for alias in ALIASES}
        block_p50: dict[str, list[float]] = {alias: [] for alias in ALIASES}
        for _ in range(30):
            for alias in ALIASES:
                _invoke(handler, client, events[alias], context)
        before = sink.records
        for _ in range(blocks):
            for alias in ALIASES:
                timings = []
                for run in range(-SETTLE_RUNS, runs):
                    handler_ms, post_ms = _invoke(handler, client, events[alias], context)
                    if run >= 0:
                        timings.append(handler_ms)
                        posted[alias].append(post_ms)
                handled[alias] += timings
                block_p50[alias].append(statistics.median(timings))
        compared = sink.records - before
        assert compared == blocks * (runs + SETTLE_RUNS) and sink.errors == 0, (compared, sink.errors)
        result[model] = _figures(handled, block_p50, posted, compared)
    return result


def _invoke(handler: Any, client: Any, event: dict[str, Any], context: Any) -> tuple[float, float]:
    started = time.perf_counter()
    response = handler(event, context)
    answered = time.perf_counter()
    client.post_invocation_result(context.aws_request_id, json.dumps(response), "application/json")
    assert response["statusCode"] == 200, response
    return (answered - started) * 1000, (time.perf_counter() - answered) * 1000


class _CountingSink:
    """Counts comparison records (and candidate errors) instead of writing them."""

    def __init__(self) -> None:
        self.records = 0
        self.errors = 0

    def write(self, record: dict[str, Any], line: bytes) -> None:
        self.records += 1
        self.errors += record.get("candidate_error") is not None


def _serve(store: Any, blocks: int, runs: int) -> dict[str, Any]:
    """Client-observed latency per alias under uvicorn, interleaved blocks."""
    import httpx
    import uvicorn

    from functions.api.front import create_front
    from functions.core import shadow
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings

    settings = Settings(store=store.uri)
    front = create_front(settings, ModelCache(store, settings))
    sink = _CountingSink()
    front.service._shadows = shadow.ShadowRunner(front.cache, settings.shadow_budget_seconds, sink)
    server = uvicorn.Server(uvicorn.Config(front, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    result: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for model in MODELS:
                body = json.dumps({"instances": _instances(model)}).encode()
                samples: dict[str, list[float]] = {alias: [] for alias in ALIASES}
                block_p50: dict[str, list[float]] = {alias: [] for alias in ALIASES}
                for _ in range(30):
                    for alias in ALIASES:
                        _post(client, model, alias, body)
                for _ in range(blocks):
                    for alias in ALIASES:
                        timings = [_post(client, model, alias, body) for _ in range(runs + SETTLE_RUNS)]
                        samples[alias] += timings[SETTLE_RUNS:]
                        block_p50[alias].append(statistics.median(timings[SETTLE_RUNS:]))
                front.service.shadows.flush()
                result[model] = _figures(samples, block_p50)
    finally:
        server.should_exit = True
        thread.join(10)
    result["compared"] = sink.records
    result["candidate_errors"] = sink.errors
    return result


def _post(client: Any, model: str, alias: str, body: bytes) -> float:
    started = time.perf_counter()
    answer = client.post(f"/v1/models/{model}/predict?alias={alias}", content=body,
                         headers={"content-type": "application/json"})
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text
    return elapsed


def _figures(samples: dict[str, list[float]], block_p50: dict[str, list[float]],
             posted: dict[str, list[float]] | None = None, compared: int | None = None) -> dict[str, Any]:
    p50 = {alias: statistics.median(values) for alias, values in samples.items()}
    figures: dict[str, Any] = {
        "p50_ms": {alias: round(value, 4) for alias, value in p50.items()},
        "ratio": round(statistics.median(on / off for off, on in zip(block_p50["plain"], block_p50["shadowed"],
                                                                     strict=True)), 3),
        "runs": len(samples["plain"]),
    }
    if posted is not None:
        post_p50 = {alias: statistics.median(values) for alias, values in posted.items()}
        figures["after_response_ms"] = round(post_p50["shadowed"] - post_p50["plain"], 4)
        billed = {alias: p50[alias] + post_p50[alias] for alias in ALIASES}
        figures["billed_ratio"] = round(billed["shadowed"] / billed["plain"], 3)
        figures["compared"] = compared
    return figures


def run(quick: bool) -> dict[str, Any]:
    blocks, runs = (10, 20) if quick else (100, 20)
    with tempfile.TemporaryDirectory(prefix="maas-bench-rollouts-") as tmp, \
            open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # noqa: PTH123
        store = _build(Path(tmp))
        lambda_figures = _lambda(store, blocks, runs)
        serve_figures = _serve(store, blocks, runs)
    return {"quick": quick, "lambda": lambda_figures, "serve": serve_figures}


def render(result: dict[str, Any]) -> str:
    lines = ["| Lambda handler, warm p50 | shadow off (ms) | shadow at rate 1.0 (ms) | ratio | candidate after the "
             "response (ms) | billed ratio | compared | runs each |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {model} | {f['p50_ms']['plain']:.3f} | {f['p50_ms']['shadowed']:.3f} | {f['ratio']:.3f}x "
              f"| {f['after_response_ms']:.3f} | {f['billed_ratio']:.3f}x | {f['compared']:,} | {f['runs']:,} |"
              for model, f in result["lambda"].items()]
    serve = result["serve"]
    lines += ["", "| `maas serve` (uvicorn), client-observed p50 | shadow off (ms) | shadow at rate 1.0 (ms) | ratio "
              "| runs each |", "|---|---|---|---|---|"]
    lines += [f"| {model} | {serve[model]['p50_ms']['plain']:.3f} | {serve[model]['p50_ms']['shadowed']:.3f} "
              f"| {serve[model]['ratio']:.3f}x | {serve[model]['runs']:,} |" for model in MODELS]
    lines += ["", f"Comparison records written under `maas serve`: {serve['compared']:,} "
                  f"({serve['candidate_errors']} with a candidate error)."]
    return "\n".join(lines)


if __name__ == "__main__":
    result = run(quick=True)
    print(render(result))
