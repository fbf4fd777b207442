"""Cold start and warm per-request latency of the Lambda handler, side by side with peers.

Cold start: a fresh process from `python` start to the first prediction answered through a Lambda handler
(API Gateway HTTP API v2 event, digits-cnn), timed by the parent until the child prints the status.
maas is measured with the model in a local store and in S3 (moto server over loopback HTTP, empty /tmp
cache each run). Peers: a minimal hand-written FastAPI + Mangum + onnxruntime handler on the same ONNX file,
and FastAPI + Mangum serving the same network with PyTorch eager; the floor is numpy + onnxruntime, one session
and one run, no web stack (bench/peers/floor.py). Runs are interleaved; medians reported.

Cold start through Lambda's runtime client: the same handlers started as Lambda starts them, `python -m
awslambdaric MODULE.handler` (the PyPI client Lambda's Python runtime is built from) against a loopback Runtime
API (tests/runtime_api.py) holding the predict event; timed from process start to the runtime's first
`invocation/next` (init done) and to the response post reaching the Runtime API.

Warm: in one process, repeated invocations of each handler with the same event (stdout to /dev/null),
plus raw `session.run` on the preprocessed input as the floor; p50 and p99.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.moto_store import STORE_URI, s3_store_with
from bench.peers.event import DIGIT_ZERO, LambdaContext, predict_event

if TYPE_CHECKING:
    from model_build.recipes.base import Recipe

TITLE = "Serving: cold start and warm latency through the Lambda handler"
ROOT = Path(__file__).resolve().parents[1]
DEMO = ("digits-cnn", "cancer-mlp", "diabetes-mlp", "text-lstm")


def _prepare(work: Path) -> dict[str, Any]:
    import torch

    from functions.core.store import LocalStore
    from model_build.pipeline import build
    from model_build.recipes.base import Fitted

    store = LocalStore(work / "store")
    demo = {name: build(trained_recipe(name), store, quick=True) for name in DEMO}
    manifest = demo["digits-cnn"]
    version_dir = store.root / "models/digits-cnn/versions" / manifest.version
    recipe = trained_recipe("digits-cnn")
    torch.save(recipe.build_model(Fitted(recipe.fit_preprocessing(None))).state_dict(), work / "state.pt")  # type: ignore[arg-type]
    return {"store": store, "version_dir": version_dir,
            "onnx": version_dir / str(manifest.variant(manifest.selected["cpu"]).file),
            "variant": manifest.selected["cpu"], "state": work / "state.pt", "demo": demo}


def trained_recipe(name: str) -> Recipe:
    """A built-in recipe that trains (not a pretrained encoder)."""
    from model_build.recipes import load_recipe
    from model_build.recipes.base import Recipe

    recipe = load_recipe(name)
    if not isinstance(recipe, Recipe):
        raise TypeError(f"{name} is not a trained recipe")
    return recipe


def _cold_once(kind: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "bench.peers.cold", kind], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    line = ""
    for line in child.stdout:  # the handler's own log lines come first
        if line.startswith("STATUS "):
            break
    elapsed = (time.perf_counter() - started) * 1000
    child.communicate(timeout=60)
    if line.strip() != "STATUS 200":
        raise RuntimeError(f"{kind}: cold invocation answered {line!r}")
    return elapsed


def _warm(handler: Any, runs: int, model: str = "digits-cnn", instances: list[Any] | None = None) -> list[float]:
    event, context = predict_event(model, instances), LambdaContext()
    samples = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # noqa: PTH123
        for _ in range(20):
            handler(event, context)
        for _ in range(runs):
            started = time.perf_counter()
            response = handler(event, context)
            samples.append((time.perf_counter() - started) * 1000)
    assert response["statusCode"] == 200
    return samples


def _summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 4), "p50_ms": round(statistics.median(ordered), 4),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4), "runs": len(ordered),
            "samples_ms": [round(s, 4) for s in samples]}


def run(quick: bool) -> dict[str, Any]:
    cold_runs, warm_runs = (3, 300) if quick else (7, 3000)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = _prepare(work)
        with s3_store_with("digits-cnn", prepared["version_dir"]) as endpoint:
            base = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
            envs = {
                "maas (local store)": ("maas", {**base, "MAAS_STORE": prepared["store"].uri}),
                "maas (S3 store)": ("maas", {**base, "MAAS_STORE": STORE_URI, "MAAS_S3_ENDPOINT_URL": endpoint}),
                "minimal FastAPI+Mangum+onnxruntime": ("minimal", {**base, "BENCH_ONNX": str(prepared["onnx"])}),
                "FastAPI+Mangum+PyTorch eager": ("torch", {**base, "BENCH_TORCH_STATE": str(prepared["state"])}),
                FLOOR: ("floor", {**base, "BENCH_ONNX": str(prepared["onnx"])}),
            }
            cold: dict[str, list[float]] = {name: [] for name in envs}
            for kind, env in envs.values():  # warm the OS file cache once, untimed
                _cold_once(kind, env)
            for attempt in range(cold_runs):
                for name, (kind, env) in envs.items():
                    if "S3" in name:
                        env = {**env, "MAAS_CACHE_DIR": str(work / f"tmp-cache-{attempt}")}
                    cold[name].append(_cold_once(kind, env))

        runtime_cold = _runtime_cold_all(prepared, work, cold_runs)
        warm = _warm_all(prepared, warm_runs)
        per_model = _per_model(prepared, cold_runs, warm_runs)
    imports = _import_costs(cold_runs)
    cold_summary = {name: _summary(samples) for name, samples in cold.items()}
    minimal_cold = cold_summary["minimal FastAPI+Mangum+onnxruntime"]["median_ms"]
    torch_cold = cold_summary["FastAPI+Mangum+PyTorch eager"]["median_ms"]
    local_cold = cold_summary["maas (local store)"]["median_ms"]
    runtime = {name: {phase: _without_samples(_summary(samples)) for phase, samples in phases.items()}
               for name, phases in runtime_cold.items()}
    runtime_maas = runtime["maas (local store)"]["first_response"]["median_ms"]
    return {
        "quick": quick, "model": "digits-cnn", "variant": prepared["variant"], "cold": cold_summary, "warm": warm,
        "runtime_cold": runtime, "per_model": per_model, "imports": imports,
        "load_average": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
        "ratios": {
            "cold_vs_minimal": round(local_cold / minimal_cold, 3),
            "cold_vs_floor": round(local_cold / cold_summary[FLOOR]["median_ms"], 3),
            "runtime_cold_vs_minimal": round(
                runtime_maas / runtime[MINIMAL]["first_response"]["median_ms"], 3),
            "runtime_cold_vs_floor": round(runtime_maas / runtime[FLOOR]["first_response"]["median_ms"], 3),
            "cold_vs_torch": round(local_cold / torch_cold, 3),
            "cold_s3_vs_minimal": round(cold_summary["maas (S3 store)"]["median_ms"] / minimal_cold, 3),
            "warm_p50_vs_minimal": round(warm["maas handler"]["p50_ms"]
                                         / warm["minimal FastAPI+Mangum+onnxruntime"]["p50_ms"], 3),
        },
    }


MINIMAL = "minimal FastAPI+Mangum+onnxruntime"
FLOOR = "floor: numpy+onnxruntime, session, one run"
RUNTIME_HANDLERS = {"maas (local store)": "functions.api.handler.handler",
                    MINIMAL: "bench.peers.minimal_lambda.handler", FLOOR: "bench.peers.floor.handler"}


def _runtime_cold_once(handler: str, env: dict[str, str], folder: Path) -> tuple[float, float]:
    """One cold start under Lambda's runtime client: ms from process start to the runtime's first
    ``invocation/next`` (init done) and to its response post for the waiting predict event."""
    from tests.runtime_api import LambdaProcess, RuntimeApi

    with RuntimeApi() as api:
        request_id = api.invoke(predict_event())
        process = LambdaProcess(api, handler, folder, env)
        started = time.monotonic()
        process.start()
        try:
            answer = api.outcome(request_id, timeout=60)
            init = api.first("next", timeout=1)
        finally:
            process.stop()
    status = json.loads(answer.body).get("statusCode") if answer.route == "response" else None
    if status != 200:
        raise RuntimeError(f"{handler}: cold invocation answered {answer.route} {answer.body[:300]!r}")
    return (init.at - started) * 1000, (answer.at - started) * 1000


def _runtime_cold_all(prepared: dict[str, Any], work: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    """maas, the minimal handler and the floor under the runtime client, interleaved (one untimed pass first)."""
    envs = {name: {"MAAS_STORE": prepared["store"].uri, "BENCH_ONNX": str(prepared["onnx"])}
            for name in RUNTIME_HANDLERS}
    folder = work / "runtime"
    folder.mkdir(exist_ok=True)
    samples: dict[str, dict[str, list[float]]] = {name: {"init": [], "first_response": []}
                                                   for name in RUNTIME_HANDLERS}
    for name, handler in RUNTIME_HANDLERS.items():  # warm the OS file cache once, untimed
        _runtime_cold_once(handler, envs[name], folder)
    for _ in range(runs):
        for name, handler in RUNTIME_HANDLERS.items():
            init, first = _runtime_cold_once(handler, envs[name], folder)
            samples[name]["init"].append(init)
            samples[name]["first_response"].append(first)
    return samples


def _warm_all(prepared: dict[str, Any], runs: int) -> dict[str, Any]:
    from functions.core.settings import ENV_STORE, get_settings

    os.environ[ENV_STORE] = prepared["store"].uri
    get_settings.cache_clear()
    maas_handler = importlib.reload(importlib.import_module("functions.api.handler")).handler
    os.environ["BENCH_ONNX"] = str(prepared["onnx"])
    os.environ["BENCH_TORCH_STATE"] = str(prepared["state"])
    from bench.peers import handlers

    minimal, torch_handler = handlers.minimal_handler(), handlers.torch_handler()
    from model_build.evaluate import cpu_session

    session = cpu_session(prepared["onnx"])
    feed = {session.get_inputs()[0].name: (np.asarray([DIGIT_ZERO], dtype=np.float32) / 16).reshape(1, 1, 8, 8)}
    raw = []
    for _ in range(20):
        session.run(None, feed)
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        raw.append((time.perf_counter() - started) * 1000)
    results = {"raw session.run": raw}
    # interleave handlers in blocks so drift affects all alike
    blocks = 5
    collected: dict[str, list[float]] = {"maas handler": [], "minimal FastAPI+Mangum+onnxruntime": [],
                                         "FastAPI+Mangum+PyTorch eager": []}
    for _ in range(blocks):
        collected["maas handler"] += _warm(maas_handler, runs // blocks)
        collected["minimal FastAPI+Mangum+onnxruntime"] += _warm(minimal, runs // blocks)
        collected["FastAPI+Mangum+PyTorch eager"] += _warm(torch_handler, runs // blocks)
    results.update(collected)
    return {name: _without_samples(_summary(samples)) for name, samples in results.items()}


def _demo_instance(manifest: Any) -> Any:
    """One valid instance: the training means for tabular models, a sentence for text, a digit for images."""
    from functions.core.manifest import TabularPreprocessing, TextVocabPreprocessing

    spec = manifest.preprocessing
    if isinstance(spec, TabularPreprocessing):
        return {feature: round(mean, 3) for feature, mean in zip(spec.features, spec.mean, strict=True)}
    if isinstance(spec, TextVocabPreprocessing):
        return "The striker scored twice in the final."
    return DIGIT_ZERO


def _per_model(prepared: dict[str, Any], cold_runs: int, warm_runs: int) -> dict[str, Any]:
    """maas alone on every demo model: cold start from the local store, warm handler p50/p99, raw floor."""
    import json

    from functions.api.handler import handler
    from functions.core.model_cache import ModelCache
    from functions.core.settings import get_settings

    store = prepared["store"]
    instances = {name: _demo_instance(manifest) for name, manifest in prepared["demo"].items()}
    envs = {name: {**os.environ, "MAAS_STORE": store.uri, "BENCH_MODEL": name,
                   "BENCH_INSTANCES": json.dumps([instance])} for name, instance in instances.items()}
    cold: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(cold_runs):
        for name, env in envs.items():
            cold[name].append(_cold_once("maas", env))
    cache = ModelCache(store, get_settings())
    results: dict[str, Any] = {}
    for name, instance in instances.items():
        model = cache.get(name)
        feed = model.preprocessor.encode([instance])
        raw = []
        for _ in range(20):
            model.session.run(None, feed)
        for _ in range(warm_runs):
            started = time.perf_counter()
            model.session.run(None, feed)
            raw.append((time.perf_counter() - started) * 1000)
        warm = _summary(_warm(handler, warm_runs, name, [instance]))
        floor = _summary(raw)
        results[name] = {"variant": model.variant.name, "bytes": model.variant.bytes,
                         "cold_ms": _without_samples(_summary(cold[name])), "warm": _without_samples(warm),
                         "raw": _without_samples(floor),
                         "handler_overhead_p50_ms": round(warm["p50_ms"] - floor["p50_ms"], 4)}
    return results


IMPORTED = ("numpy", "onnxruntime", "pydantic", "pydantic_core", "annotated_types", "anyio", "starlette", "fastapi",
            "opentelemetry", "mangum", "orjson", "functions")
COLD_IMPORTS = "import functions.api.handler; import onnxruntime"  # onnxruntime comes with the first request


def _import_costs(runs: int) -> dict[str, Any]:
    """Where the cold path's import time goes: ``python -X importtime`` on the handler and onnxruntime, each
    module's self time charged to its top-level package (additive). importtime's own overhead inflates every
    figure alike; the shares are what to read."""
    totals: dict[str, list[float]] = {}
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-X", "importtime", "-c", COLD_IMPORTS],
                                cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
        charged: dict[str, float] = {"total": 0.0}
        for line in result.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            own, _, name = line.removeprefix("import time:").split("|")
            package = name.strip().split(".")[0]
            key = package if package in IMPORTED else "other (stdlib, typing_extensions, ...)"
            charged[key] = charged.get(key, 0.0) + int(own) / 1000
            charged["total"] += int(own) / 1000
        for key, value in charged.items():
            totals.setdefault(key, []).append(value)
    return {key: round(statistics.median(values), 1) for key, values in totals.items()}


def _without_samples(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "samples_ms"}


def render(result: dict[str, Any]) -> str:
    r = result["ratios"]
    load = result.get("load_average")
    busy = ([f"Machine load (1-minute load average) at the start and end of the run: {load['start']:.1f} and "
             f"{load['end']:.1f} on {result['machine']['cores']} cores. Absolute times grow with it; the ratios "
             "compare runs interleaved under the same load.", ""] if load else [])
    lines = [*busy, f"Model: {result['model']} (shipped variant {result['variant']}).", "",
             "| cold start: process start -> first prediction | median (ms) | runs |", "|---|---|---|"]
    lines += [f"| {name} | {s['median_ms']:.0f} | {s['runs']} |" for name, s in result["cold"].items()]
    lines += ["", "| warm, in-process | p50 (ms) | p99 (ms) | runs |", "|---|---|---|---|"]
    lines += [f"| {name} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {s['runs']} |" for name, s in result["warm"].items()]
    floor = ([f"| maas cold (local store) / floor (numpy+onnxruntime, session, one run) | {r['cold_vs_floor']:.2f}x "
              "| <= 1.5x (goal) |"] if "cold_vs_floor" in r else [])
    lines += ["", "| ratio (same run) | value | target |", "|---|---|---|",
              f"| maas cold (local store) / minimal handler | {r['cold_vs_minimal']:.2f}x | <= 0.75x |", *floor,
              f"| maas cold (local store) / PyTorch handler | {r['cold_vs_torch']:.2f}x | <= 0.2x |",
              f"| maas cold (S3 store, moto on loopback; boto3 import included) / minimal handler (model file on disk) "
              f"| {r['cold_s3_vs_minimal']:.2f}x | - |",
              f"| maas warm p50 / minimal handler p50 | {r['warm_p50_vs_minimal']:.2f}x | <= 1.0x |"]
    if "runtime_cold" in result:
        lines += ["", "Through Lambda's runtime client (`python -m awslambdaric`, loopback Runtime API), from process "
                  "start:", "", "| handler | init done: first invocation/next, median (ms) "
                  "| first response posted, median (ms) | runs |", "|---|---|---|---|"]
        lines += [f"| {name} | {p['init']['median_ms']:.0f} | {p['first_response']['median_ms']:.0f} "
                  f"| {p['first_response']['runs']} |" for name, p in result["runtime_cold"].items()]
        lines += ["", "| ratio (same run, through the runtime client) | value | target |", "|---|---|---|",
                  f"| maas / minimal handler | {r['runtime_cold_vs_minimal']:.2f}x | <= 0.75x |",
                  f"| maas / floor | {r['runtime_cold_vs_floor']:.2f}x | <= 1.5x (goal) |"]
    if "per_model" in result:
        lines += ["", "Every demo model through the maas handler (local store; the peers above serve digits-cnn only):",
                  "", "| model | shipped variant | cold start median (ms) | warm p50 (ms) | warm p99 (ms) "
                  "| raw session.run p50 (ms) | handler overhead p50 (ms) |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {m['variant']} | {m['cold_ms']['median_ms']:.0f} | {m['warm']['p50_ms']:.3f} "
                  f"| {m['warm']['p99_ms']:.3f} | {m['raw']['p50_ms']:.4f} | {m['handler_overhead_p50_ms']:.3f} |"
                  for name, m in result["per_model"].items()]
    if "imports" in result:
        costs = result["imports"]
        total = costs.get("total", 0.0)
        lines += ["", "Where the handler's import time goes (`python -X importtime`, self time per package, median; "
                  "importtime inflates all figures alike):", "", "| package | ms | share |", "|---|---|---|"]
        lines += [f"| {name} | {ms:.0f} | {ms / total:.0%} |" for name, ms in
                  sorted(costs.items(), key=lambda item: -item[1]) if name != "total"]
    return "\n".join(lines)
