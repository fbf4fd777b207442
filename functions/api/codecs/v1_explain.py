"""v1 explain routes: the predict body in, Kernel SHAP attributions per instance out (functions.core.explain)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from functions.api.body import instances_of, read_json
from functions.api.http import Call
from functions.api.schemas import ERROR_RESPONSES
from functions.api.v1 import PREDICT_ALIAS, PREDICT_VERSION, json_response
from functions.core import request_facts
from functions.core.service import ModelRef, PredictionService

EXPLAIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Per instance: the prediction, the explained output, base_value and attributions "
                         "(named features, an 8x8 map, or one weight per token with offsets)"},
    **ERROR_RESPONSES,
}


def make_router(service: PredictionService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["v1"])
    settings = service.settings

    async def _explain(request: Request, name: str, version: str | None, alias: str | None) -> Response:
        from functions.core.explain.explainer import explain

        call = Call.of(request.scope, request.receive)
        payload = await read_json(call, settings.max_body_bytes)
        ref = ModelRef.checked(name, version, alias)
        instances = instances_of(payload, settings.max_instances)
        # the version the request's split assigns (sticky, like its predictions); explanations are never shadowed
        model, _ = await service.routed(ref, call.routing_key)
        explanations = await run_in_threadpool(explain, model, instances, settings)
        request_facts.served(model.name, model.version, len(instances))  # metered like predictions
        return json_response({"model": model.name, "version": model.version, "variant": model.variant.name,
                              "explanations": explanations})

    @router.post("/models/{name}/explain", openapi_extra=PREDICT_ALIAS, responses=EXPLAIN_RESPONSES)
    async def explain_alias(request: Request) -> Response:
        """Explain the predictions of the version ``alias`` resolves to (default prod, else the latest)."""
        return await _explain(request, request.path_params["name"], None, request.query_params.get("alias"))

    @router.post("/models/{name}/versions/{version}/explain", openapi_extra=PREDICT_VERSION,
                 responses=EXPLAIN_RESPONSES)
    async def explain_version(request: Request) -> Response:
        """Explain the predictions of an explicit version."""
        params = request.path_params
        return await _explain(request, params["name"], params["version"], None)

    @router.post("/models/{name}:explain", openapi_extra=PREDICT_ALIAS, responses=EXPLAIN_RESPONSES)
    async def explain_kserve(request: Request) -> Response:
        """KServe v1 route: the same as ``/v1/models/{name}/explain``."""
        return await explain_alias(request)

    return router
