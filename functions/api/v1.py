"""v1 JSON API: list and describe models, predict from natural instances."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from functions.api.body import instances_of, read_json
from functions.api.schemas import ERROR_RESPONSES, ModelDetail, ModelList, PredictResponse
from functions.api.telemetry import emit_prediction_metrics, log
from functions.core import catalog
from functions.core.inference import predict
from functions.core.model_cache import ModelCache
from functions.core.names import check_model_name
from functions.core.settings import Settings

PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": PredictResponse}, **ERROR_RESPONSES}
_BODY = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "title": "Version"}}
_ALIAS = {"name": "alias", "in": "query", "required": False,
          "schema": {"type": "string", "maxLength": 64, "title": "Alias"}}
# The predict routes read path and query parameters from the request themselves: FastAPI's per-request
# parameter solving was the largest part of the handler's overhead. These describe them in the OpenAPI document.
PREDICT_ALIAS = {"requestBody": _BODY, "parameters": [_NAME, _ALIAS]}
PREDICT_VERSION = {"requestBody": _BODY, "parameters": [_NAME, _VERSION]}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def request_id(request: Request) -> str:
    """The Lambda request id under Mangum, else the caller's X-Request-Id, else a fresh one."""
    context = request.scope.get("aws.context")
    if context is not None and getattr(context, "aws_request_id", None):
        return str(context.aws_request_id)
    return request.headers.get("x-request-id") or os.urandom(16).hex()


def make_router(cache: ModelCache, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["v1"])

    @router.get("/models", responses={200: {"model": ModelList}, 503: ERROR_RESPONSES[503]})
    async def list_models() -> Response:
        """Models in the store with their versions and aliases."""
        store = cache.store
        models = []
        for name in catalog.list_models(store):
            versions = catalog.list_versions(store, name)
            if versions:
                aliases = {a: r.version for a, r in catalog.list_aliases(store, name).items()}
                models.append({"name": name, "versions": versions, "aliases": aliases})
        return json_response({"models": models})

    @router.get("/models/{name}",
                responses={200: {"model": ModelDetail}, **{k: ERROR_RESPONSES[k] for k in (404, 422, 503)}})
    async def describe_model(name: str, alias: str | None = Query(default=None, max_length=64)) -> Response:
        """Metadata of the version that ``alias`` (default prod, else latest) resolves to."""
        check_model_name(name)
        version = cache.resolve(name, alias)
        manifest = cache.manifest(name, version)
        variant = manifest.variant(manifest.selected["cpu"])
        return json_response({
            "name": name, "versions": catalog.list_versions(cache.store, name),
            "aliases": {a: r.version for a, r in catalog.list_aliases(cache.store, name).items()},
            "default_version": version, "task": manifest.task, "description": manifest.description,
            "labels": manifest.labels, "inputs": [t.to_dict() for t in manifest.inputs],
            "outputs": [t.to_dict() for t in manifest.outputs],
            "preprocessing": manifest.preprocessing.to_dict(), "variant": variant.name,
            "metrics": variant.metrics.to_dict() if variant.metrics else None,
        })

    async def _predict(request: Request, name: str, version: str | None, alias: str | None) -> Response:
        started = time.perf_counter()
        rid = request_id(request)
        payload = await read_json(request, settings.max_body_bytes)
        check_model_name(name)
        instances = instances_of(payload, settings.max_instances)
        model = cache.get(name, version, alias)
        predictions = predict(model, instances)
        model.requests += 1
        latency = (time.perf_counter() - started) * 1000
        emit_prediction_metrics(model.name, model.version, model.variant.name, latency, len(instances),
                                model.load_ms if model.requests == 1 else None, rid)
        if settings.log_payloads:
            log("DEBUG", "prediction", request_id=rid, instances=instances, predictions=predictions)
        return json_response({"model": model.name, "version": model.version, "variant": model.variant.name,
                              "predictions": predictions})

    @router.post("/models/{name}/predict", openapi_extra=PREDICT_ALIAS, responses=PREDICT_RESPONSES)
    async def predict_alias(request: Request) -> Response:
        """Predict with the version ``alias`` resolves to (default prod, else the latest version)."""
        return await _predict(request, request.path_params["name"], None, request.query_params.get("alias"))

    @router.post("/models/{name}/versions/{version}/predict", openapi_extra=PREDICT_VERSION,
                 responses=PREDICT_RESPONSES)
    async def predict_version(request: Request) -> Response:
        """Predict with an explicit version."""
        params = request.path_params
        return await _predict(request, params["name"], params["version"], None)

    return router
