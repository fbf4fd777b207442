"""v1 JSON API routes of the FastAPI app: list and describe models; predict through the shared route handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from functions.api import routes
from functions.api.http import Call, Reply
from functions.api.routes import Handler, answer
from functions.api.schemas import ERROR_RESPONSES, ModelDetail, ModelList, PredictResponse
from functions.core import request_facts
from functions.core.model_cache import ModelCache
from functions.core.service import HELD, ModelRef, PredictionService

if TYPE_CHECKING:
    from functions.core.shadow import Comparison

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


def to_response(reply: Reply) -> Response:
    """A Starlette response carrying a plain ``Reply``."""
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=reply.headers)


def routed(handler: Handler, service: PredictionService) -> Callable[[Request], Awaitable[Response]]:
    """A request-only endpoint answering with the shared route handler (the same code as the fast front)."""
    async def endpoint(request: Request) -> Response:
        call = Call.of(request.scope, request.receive)
        held: list[Comparison] = []
        token = HELD.set(held)
        try:
            response = to_response(await answer(handler, service, call, dict(request.path_params)))
        finally:
            HELD.reset(token)
        if held:  # shadow comparisons run once the response is sent
            response.background = BackgroundTask(service.release, held)
        return response

    endpoint.__doc__ = handler.__doc__
    return endpoint


def make_router(service: PredictionService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["v1"])
    cache = service.cache
    alias_endpoint = routed(routes.predict_alias, service)
    version_endpoint = routed(routes.predict_version, service)

    @router.get("/models", responses={200: {"model": ModelList}, 503: ERROR_RESPONSES[503]})
    async def list_models() -> Response:
        """Models in the store with their versions and aliases. ``stale`` is true when the listing's TTL has run
        out: it is the last one read, answered while a background refresh re-reads the store."""
        known = cache.peek_listing()
        if known is None:
            known = await service.off_loop(cache.listing)
        models = [m for m in known.value if request_facts.visible(str(m.get("name")))]  # an API key's scope
        return json_response({"models": models, "stale": known.stale})

    @router.get("/models/{name}",
                responses={200: {"model": ModelDetail}, **{k: ERROR_RESPONSES[k] for k in (404, 422, 503)}})
    async def describe_model(name: str, alias: str | None = Query(default=None, max_length=64)) -> Response:
        """Metadata of the version that ``alias`` (default prod, else latest) resolves to."""
        ref = ModelRef.checked(name, None, alias)
        return json_response(await service.off_loop(_describe, cache, ref))

    @router.post("/models/{name}/predict", openapi_extra=PREDICT_ALIAS, responses=PREDICT_RESPONSES)
    async def predict_alias(request: Request) -> Response:
        """Predict with the version ``alias`` resolves to (default prod, else the latest version)."""
        return await alias_endpoint(request)

    @router.post("/models/{name}/versions/{version}/predict", openapi_extra=PREDICT_VERSION,
                 responses=PREDICT_RESPONSES)
    async def predict_version(request: Request) -> Response:
        """Predict with an explicit version."""
        return await version_endpoint(request)

    @router.post("/models/{name}:predict", openapi_extra=PREDICT_ALIAS, responses=PREDICT_RESPONSES)
    async def predict_kserve(request: Request) -> Response:
        """KServe v1 route: the same as ``/v1/models/{name}/predict``."""
        return await alias_endpoint(request)

    return router


def _describe(cache: ModelCache, ref: ModelRef) -> dict[str, Any]:
    name = ref.name
    version = cache.resolve(name, ref.alias)
    manifest = cache.manifest(name, version)
    variant = manifest.variant(manifest.selected["cpu"])
    versions, aliases = cache.versions_and_aliases(name)
    return {
        "name": name, "versions": versions, "aliases": aliases, "default_version": version,
        "task": manifest.task, "description": manifest.description,
        "labels": manifest.labels, "inputs": [t.to_dict() for t in manifest.inputs],
        "outputs": [t.to_dict() for t in manifest.outputs],
        "preprocessing": manifest.preprocessing.to_dict(), "variant": variant.name,
        "metrics": variant.metrics.to_dict() if variant.metrics else None,
    }
