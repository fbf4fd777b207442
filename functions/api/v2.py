"""Open Inference Protocol v2 (KServe / Triton REST) routes of the FastAPI app: server and model metadata,
readiness, and (through the shared route handlers, see ``codecs.v2_infer``) health and typed-tensor inference."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.api import routes
from functions.api.codecs.v2_infer import natural_inputs, natural_outputs
from functions.api.schemas import ERROR_RESPONSES, OipInferResponse
from functions.api.v1 import json_response, routed
from functions.core.model_cache import ModelCache
from functions.core.service import ModelRef, PredictionService

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "title": "Version"}}
INFER_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/OipInferRequest"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "Binary tensor extension (Inference-Header-Content-Length)"}}}}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": OipInferResponse}, **ERROR_RESPONSES}


def make_router(service: PredictionService) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
    cache = service.cache
    live_endpoint, ready_endpoint = routed(routes.live, service), routed(routes.ready, service)
    infer_endpoint = routed(routes.infer_default, service)
    infer_version_endpoint = routed(routes.infer_version, service)

    @router.get("")
    async def server_metadata() -> Response:
        """Server name, version and protocol extensions."""
        return json_response({"name": "maas", "version": _version(), "extensions": ["binary_tensor_data"]})

    @router.get("/health/live")
    async def live(request: Request) -> Response:
        """The process is up (never touches the store)."""
        return await live_endpoint(request)

    @router.get("/health/ready")
    async def ready(request: Request) -> Response:
        """The process can serve: the store answers (checked at most every few seconds)."""
        return await ready_endpoint(request)

    async def _metadata(name: str, version: str | None) -> Response:
        return json_response(await service.off_loop(_model_metadata, cache, ModelRef.checked(name, version)))

    @router.get("/models/{name}", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_metadata(name: str) -> Response:
        """Inputs and outputs of the default version."""
        return await _metadata(name, None)

    @router.get("/models/{name}/versions/{version}", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_version_metadata(name: str, version: str) -> Response:
        """Inputs and outputs of a version."""
        return await _metadata(name, version)

    async def _ready(name: str, version: str | None) -> Response:
        model = await service.model(ModelRef.checked(name, version))
        return json_response({"name": name, "version": model.version, "ready": True})

    @router.get("/models/{name}/ready", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_ready(name: str) -> Response:
        """200 once the default version is loaded; 503 if it cannot be."""
        return await _ready(name, None)

    @router.get("/models/{name}/versions/{version}/ready", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_version_ready(name: str, version: str) -> Response:
        """200 once the version is loaded; 503 if it cannot be."""
        return await _ready(name, version)

    @router.post("/models/{name}/infer", openapi_extra={**INFER_BODY, "parameters": [_NAME]},
                 responses=INFER_RESPONSES)
    async def infer(request: Request) -> Response:
        """Inference on the default version (prod alias, else latest)."""
        return await infer_endpoint(request)

    @router.post("/models/{name}/versions/{version}/infer",
                 openapi_extra={**INFER_BODY, "parameters": [_NAME, _VERSION]}, responses=INFER_RESPONSES)
    async def infer_version(request: Request) -> Response:
        """Inference on an explicit version."""
        return await infer_version_endpoint(request)

    return router


def _version() -> str:
    try:
        return metadata.version("maas")
    except metadata.PackageNotFoundError:
        return "0"


def _model_metadata(cache: ModelCache, ref: ModelRef) -> dict[str, Any]:
    version = ref.version or cache.resolve(ref.name)
    manifest = cache.manifest(ref.name, version)
    return {"name": ref.name, "versions": cache.versions_and_aliases(ref.name)[0],
            "platform": "onnxruntime_onnx", "inputs": natural_inputs(manifest), "outputs": natural_outputs(manifest)}
