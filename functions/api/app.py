"""The FastAPI app: OpenAPI, ``/docs``, listings and metadata; built on first need behind the fast front
(``functions.api.front``), which answers predictions and health checks without it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from functions.api import console, v1, v2
from functions.api.codecs import v1_explain
from functions.api.errors import error_reply, reply_for
from functions.api.http import Call
from functions.api.routes import hidden_locations
from functions.api.schemas import OipInferRequest, PredictRequest
from functions.core.errors import MaasError
from functions.core.model_cache import ModelCache, model_cache_from
from functions.core.service import PredictionService
from functions.core.settings import Settings, get_settings

API_KEY_SCHEMES = {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                   "Bearer": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"}}
"""How callers authenticate when the API requires API keys (``maas serve --keys``, an ``apiKey`` stage)."""
KEYLESS_PATHS = ("/v2/health/live", "/v2/health/ready")


def create_app(settings: Settings | None = None, cache: ModelCache | None = None,
               api_keys: bool = False) -> FastAPI:
    """Build the app; the model cache is shared by every request of the process. With ``api_keys`` the OpenAPI
    document declares the key (so ``/docs`` can send it)."""
    settings = settings or get_settings()
    cache = cache or model_cache_from(settings)
    app = FastAPI(title="maas prediction API", version="1", docs_url=None, redoc_url=None,
                  description="Predictions from models published with `maas build`. v1 takes natural instances; "
                              "v2 is the Open Inference Protocol (KServe/Triton REST).")
    app.state.cache = cache
    service = app.state.service = PredictionService(cache, settings)
    # Routes are added flat, prediction routes first: FastAPI's include_router adds a nesting level and
    # every route tried before the match costs time on each request.
    routes = [*v1.make_router(service).routes, *v2.make_router(service).routes,
              *v1_explain.make_router(service).routes, *app.router.routes]
    routes += [*console.make_router(cache, settings).routes, *console.static_routes()]  # /console, /docs
    if settings.data_bucket:  # deployed: inputs go to the data bucket through presigned uploads
        from functions.api import s3_jobs

        routes += s3_jobs.make_router(service, s3_jobs.S3Jobs.from_settings(settings)).routes
    elif settings.store.startswith("file://"):  # asynchronous jobs for maas serve, run in this process
        from functions.api import local_jobs

        jobs = local_jobs.LocalJobs(Path(settings.cache_dir) / "jobs")
        routes += local_jobs.make_router(service, jobs).routes
    app.state.documented_routes = list(routes)
    app.state.api_keys = api_keys
    # Endpoints that take only the request are served as plain Starlette routes: FastAPI's per-request
    # dependency solving (tens of microseconds) buys them nothing. Their OpenAPI entries come from the
    # FastAPI routes kept above.
    served = [_lean(route) for route in routes]
    app.router.routes[:] = sorted(served, key=lambda route: "POST" not in getattr(route, "methods", ()))
    app.add_exception_handler(MaasError, _maas_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _lean(route: BaseRoute) -> BaseRoute:
    """A Starlette route calling the same endpoint, when the endpoint's only parameter is the request."""
    if not isinstance(route, APIRoute) or list(inspect.signature(route.endpoint).parameters) != ["request"]:
        return route
    return Route(route.path, route.endpoint, methods=sorted(route.methods or ()), name=route.name)


async def _maas_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MaasError)
    call = Call.of(request.scope, request.receive)
    return v1.to_response(reply_for(exc, call.path, call.request_id, hidden_locations(request.app.state.service)))


def error_response(status: int, code: str, message: str) -> Response:
    return v1.to_response(error_reply(status, code, message))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    return error_response(exc.status_code, code, message)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.state.documented_routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (PredictRequest, OipInferRequest):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    if app.state.api_keys:
        schema["components"]["securitySchemes"] = API_KEY_SCHEMES
        schema["security"] = [{name: []} for name in API_KEY_SCHEMES]
        for path in KEYLESS_PATHS:
            for operation in schema.get("paths", {}).get(path, {}).values():
                operation["security"] = []
    app.openapi_schema = schema
    return schema
