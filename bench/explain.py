"""Explain latency per instance through the Lambda handler (Mangum + the app, API Gateway HTTP API events),
next to predict latency for the same instance, on every demo model and minilm-classifier (quick builds, local
store, one intra-op thread as in Lambda). One instance per request; the explain figure is the whole Kernel
SHAP explanation (all coalitions run as a few batched ``session.run`` calls) with the default caps."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers.event import DIGIT_ZERO, LambdaContext, predict_event

TITLE = "Explanations: explain latency per instance next to predict, through the Lambda handler"
MODELS = ("diabetes-mlp", "cancer-mlp", "digits-cnn", "text-lstm", "minilm-classifier")
TEXT = "The striker scored twice in the final."


def _instance(manifest: Any) -> Any:
    from functions.core.manifest import ImagePreprocessing, TabularPreprocessing

    spec = manifest.preprocessing
    if isinstance(spec, TabularPreprocessing):
        return {feature: round(mean, 3) for feature, mean in zip(spec.features, spec.mean, strict=True)}
    return DIGIT_ZERO if isinstance(spec, ImagePreprocessing) else TEXT


def _event(model: str, instance: Any, route: str) -> dict[str, Any]:
    event = copy.deepcopy(predict_event(model, [instance]))
    path = f"/v1/models/{model}/{route}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    return event


def _timed(handler: Any, event: dict[str, Any], runs: int, warmup: int) -> dict[str, Any]:
    context = LambdaContext()
    samples = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # noqa: PTH123
        for _ in range(warmup):
            response = handler(event, context)
        for _ in range(runs):
            started = time.perf_counter()
            response = handler(event, context)
            samples.append((time.perf_counter() - started) * 1000)
    assert response["statusCode"] == 200, response["body"]
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3), "runs": runs,
            "body": json.loads(response["body"])}


def run(quick: bool) -> dict[str, Any]:
    from mangum import Mangum

    from bench.serving import trained_recipe
    from functions.api.app import create_app
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings
    from functions.core.store import LocalStore
    from model_build.pipeline import build

    explain_runs, predict_runs = (5, 50) if quick else (40, 400)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "store")
        manifests = {name: build(trained_recipe(name), store, quick=True) for name in MODELS}
        settings = Settings(store=store.uri)
        handler = Mangum(create_app(settings, ModelCache(store, settings)), lifespan="off")
        for name, manifest in manifests.items():
            instance = _instance(manifest)
            predicted = _timed(handler, _event(name, instance, "predict"), predict_runs, 20)
            explained = _timed(handler, _event(name, instance, "explain"), explain_runs, 2)
            answer = explained.pop("body")["explanations"][0]
            predicted.pop("body")
            results[name] = {"variant": manifest.selected["cpu"], "predict": predicted, "explain": explained,
                             "method": answer["method"],
                             "evaluations": answer["evaluations"],
                             "players": len(answer["tokens"]) if "tokens" in answer else
                             (16 if name == "digits-cnn" else len(answer["attributions"])),
                             "explain_over_predict": round(explained["p50_ms"] / predicted["p50_ms"], 1)}
    return {"quick": quick, "models": results}


def render(result: dict[str, Any]) -> str:
    lines = ["| model | variant | players | method | model evaluations | predict p50 / p99 (ms) "
             "| explain p50 / p99 (ms) | explain / predict (p50) |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["models"].items():
        lines.append(f"| {name} | {r.get('variant', '-')} | {r['players']} | {r['method']} | {r['evaluations']:,} "
                     f"| {r['predict']['p50_ms']:.2f} / {r['predict']['p99_ms']:.2f} "
                     f"| {r['explain']['p50_ms']:.1f} / {r['explain']['p99_ms']:.1f} | {r['explain_over_predict']}x |")
    return "\n".join(lines)
