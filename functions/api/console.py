"""Routes of the web console: its static pages, the offline ``/docs`` page, and the read-only data it shows.

Documented routes return a version's summary, its card and plots (only ``card.md`` and ``*.png`` files listed in
the manifest, checksums verified), its drift reports, a model's rollouts (shadow and split per alias, with the
shadow's comparison report), and recent batch outputs. Nothing here writes, and no
route turns a request path into a file path: static assets and documents are looked up in fixed listings.
"""

from __future__ import annotations

import asyncio
import os
from functools import cache, partial
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from functions.api.errors import error_body
from functions.api.schemas import ERROR_RESPONSES
from functions.console import STATIC_DIR
from functions.console import rollouts as rollout_data
from functions.console.documents import CARD_FILE, read_document, version_summary
from functions.console.reports import drift_reports, open_outputs, recent_outputs
from functions.core import request_facts
from functions.core.model_cache import ModelCache
from functions.core.names import check_model_name, check_version
from functions.core.settings import ENV_BATCH_OUTPUTS, Settings

SWAGGER = "vendor/swagger-ui"
_ASSET_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
                ".md": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
# The console's own pages load nothing from elsewhere and run no inline script.
CONSOLE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_VERSION_ERRORS: dict[int | str, dict[str, Any]] = {k: ERROR_RESPONSES[k] for k in (404, 503)}


class VersionSummary(BaseModel):
    """A version as the console shows it (from its manifest; model files are never listed)."""

    name: str
    version: str
    created_at: str
    task: str
    description: str
    labels: list[str] | None
    aliases: list[str] = Field(description="Aliases that point at this version")
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    preprocessing: dict[str, Any] = Field(description="Kind, and feature names / image shape / text limits")
    metric_name: str
    latency_batch: int
    baselines: dict[str, float]
    variants: list[dict[str, Any]] = Field(description="Every candidate variant with its metrics and gate outcome")
    selected: dict[str, str]
    selection_reason: str
    gates: list[dict[str, Any]]
    reference_stats: dict[str, list[float]]
    provenance: dict[str, Any]
    global_importance: Any = Field(default=None, description="Mean |attribution| per feature, when built")
    documents: list[str] = Field(description="Files served by .../files/{file}: card.md and the PNG plots")


class DriftReports(BaseModel):
    model: str
    version: str
    reports: list[dict[str, Any]] = Field(description="Newest first: {file, report} (report null if unreadable)")


class AliasRollout(BaseModel):
    alias: str
    version: str = Field(description="The alias's target")
    updated_at: str
    shadow: dict[str, Any] | None = Field(description="{candidate, rate, started_at} while a shadow runs")
    split: dict[str, Any] | None = Field(description="{version, percent, started_at} while a split runs")
    ignored: list[str] = Field(description="Malformed rollouts left out: the alias keeps serving its target")
    report: dict[str, Any] | None = Field(description="With a shadow: its report (as `maas shadow report --json`) "
                                          "over the newest comparison records, with records_read, records_limit "
                                          "and a note when none could be read")


class Rollouts(BaseModel):
    model: str
    aliases: list[AliasRollout]
    unreadable: dict[str, str] = Field(description="Aliases whose record is unusable, and why")


class BatchOutputs(BaseModel):
    configured: bool = Field(description="Whether MAAS_BATCH_OUTPUTS / --batch-outputs names a folder or bucket")
    outputs: list[dict[str, Any]] = Field(description="Newest first: {folder, report, first_errors, more_errors}")


def error_response(status: int, code: str, message: str) -> Response:
    """The project's JSON error body as a Starlette response."""
    return Response(error_body(code, message), status_code=status, media_type="application/json")


def make_router(cache: ModelCache, settings: Settings, batch_outputs: str | None = None) -> APIRouter:
    """The console's documented routes; ``batch_outputs`` defaults to ``$MAAS_BATCH_OUTPUTS``."""
    router = APIRouter(prefix="/v1", tags=["console"])
    outputs_uri = batch_outputs if batch_outputs is not None else os.environ.get(ENV_BATCH_OUTPUTS) or None
    source = open_outputs(outputs_uri, settings.s3_endpoint_url) if outputs_uri else None
    prefix = "/models/{name}/versions/{version}"

    @router.get(prefix, responses={200: {"model": VersionSummary}, **_VERSION_ERRORS})
    def describe_version(name: str, version: str) -> Response:
        """A version's manifest as the console shows it: variants and gates, provenance, schema, references."""
        return json_response(version_summary(cache, check_model_name(name), check_version(version)))

    @router.get(f"{prefix}/card", response_class=Response, responses={
        200: {"content": {"text/markdown": {}}, "description": "The model card (markdown)"}, **_VERSION_ERRORS})
    def model_card(name: str, version: str) -> Response:
        """The model card as markdown; its images are served by ``.../files/{file}``."""
        data, media_type = read_document(cache, check_model_name(name), check_version(version), CARD_FILE)
        return Response(data, media_type=media_type, headers=_private_cache())

    @router.get(f"{prefix}/files/{{file}}", response_class=Response, responses={
        200: {"content": {"image/png": {}, "text/markdown": {}}, "description": "card.md or a PNG plot"},
        **_VERSION_ERRORS})
    def model_document(name: str, version: str, file: str) -> Response:
        """``card.md`` or a PNG plot listed in the version's manifest (sha256 verified); never a model file."""
        data, media_type = read_document(cache, check_model_name(name), check_version(version), file)
        return Response(data, media_type=media_type, headers=_private_cache())

    @router.get(f"{prefix}/drift", responses={200: {"model": DriftReports}, **_VERSION_ERRORS})
    def drift(name: str, version: str, limit: int = Query(default=10, ge=1, le=50)) -> Response:
        """The latest drift reports written next to the version (``drift/*.json``), newest first."""
        reports = drift_reports(cache.store, check_model_name(name), check_version(version), limit)
        return json_response({"model": name, "version": version, "reports": reports})

    @router.get("/models/{name}/rollouts", responses={200: {"model": Rollouts}, **_VERSION_ERRORS})
    async def rollouts(name: str, records: int = Query(default=rollout_data.DEFAULT_RECORDS, ge=1,
                                                             le=rollout_data.MAX_RECORDS)) -> Response:
        """Each alias of the model: its target, its shadow or split, and for a shadow the comparison report over
        the newest ``records`` comparison records (data bucket ``shadow/NAME/``, locally the capture folder's
        ``_shadow/NAME``); reading them fits the request budget, or the report is empty with a note."""
        body = await asyncio.to_thread(rollout_data.model_rollouts, cache.store, check_model_name(name))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.request_budget_seconds
        source = rollout_data.comparison_source(name, settings)
        for entry in body["aliases"]:
            if entry["shadow"] is None:
                continue
            args = (name, entry["alias"], entry["version"], entry["shadow"]["candidate"])
            try:
                entry["report"] = await asyncio.wait_for(asyncio.to_thread(partial(
                    rollout_data.shadow_summary, source, *args, settings.s3_endpoint_url, records)),
                    timeout=max(deadline - loop.time(), 0.0))
            except TimeoutError:
                entry["report"] = rollout_data.late_summary(*args, records)
        return json_response(body)

    @router.get("/batch/outputs", responses={200: {"model": BatchOutputs}, 503: ERROR_RESPONSES[503]})
    def batch_outputs_list(limit: int = Query(default=20, ge=1, le=100)) -> Response:
        """Recent batch outputs (reports and first error rows) from the configured folder or bucket."""
        if source is None:
            return json_response({"configured": False, "outputs": []})
        outputs = [o for o in recent_outputs(source, limit) if request_facts.visible(_output_model(o))]
        return json_response({"configured": True, "outputs": outputs})

    return router


def static_routes() -> list[BaseRoute]:
    """``/console`` (the single-page console and its assets) and ``/docs`` (Swagger UI from local assets)."""
    return [Route("/console", _to_console, methods=["GET"], include_in_schema=False),
            Route("/console/", _console_index, methods=["GET"], include_in_schema=False),
            Route("/console/{asset:path}", _console_asset, methods=["GET"], include_in_schema=False),
            Route("/docs", _swagger_page, methods=["GET"], include_in_schema=False)]


@cache
def _assets() -> dict[str, Path]:
    """Every shipped static file by its path under ``static/``: the only files these routes can return."""
    return {p.relative_to(STATIC_DIR).as_posix(): p for p in sorted(STATIC_DIR.rglob("*"))
            if p.is_file() and (p.suffix in _ASSET_TYPES or p.name in ("LICENSE", "NOTICE"))}


async def _to_console(request: Request) -> Response:
    return RedirectResponse("console/", status_code=308)


async def _console_index(request: Request) -> Response:
    return _asset_response("index.html")


async def _console_asset(request: Request) -> Response:
    return _asset_response(request.path_params["asset"])


def _asset_response(name: str) -> Response:
    path = _assets().get(name)
    if path is None:
        return error_response(404, "not_found", f"no console asset {name[:80]!r}")
    headers = {**_SECURITY, "Cache-Control": "no-cache"}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CONSOLE_CSP
    return Response(path.read_bytes(), media_type=_ASSET_TYPES.get(path.suffix, "text/plain; charset=utf-8"),
                    headers=headers)


async def _swagger_page(request: Request) -> Response:
    from fastapi.openapi.docs import get_swagger_ui_html

    root = request.scope.get("root_path", "").rstrip("/")
    page = get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="maas prediction API",
                               swagger_js_url=f"{root}/console/{SWAGGER}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}/console/{SWAGGER}/swagger-ui.css",
                               swagger_favicon_url=f"{root}/console/favicon.svg",
                               swagger_ui_parameters={"validatorUrl": None})
    page.headers.update(_SECURITY)
    return page


def json_response(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=_SECURITY)


def _private_cache() -> dict[str, str]:
    """Version files are immutable; they may carry credentials-gated content, so only the browser caches them."""
    return {**_SECURITY, "Cache-Control": "private, max-age=3600"}


def _output_model(output: dict[str, Any]) -> str:
    """The model a batch output belongs to: its report's, else its folder's first part."""
    report = output.get("report") or {}
    model = report.get("model") if isinstance(report, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    return str(name) if name else str(output.get("folder", "")).split("/", 1)[0]
