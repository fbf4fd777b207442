"""HTTP status codes for the project's errors, mapped in one place, and the JSON error body."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from functions.core.errors import MaasError, RequestError, http_status

__all__ = ["RequestError", "error_response", "maas_error_handler", "status_of"]


def status_of(exc: MaasError) -> int:
    """The HTTP status for an error, from the one table in functions/core/errors.py."""
    return http_status(exc)


def error_response(status: int, code: str, message: str, instance: int | None = None) -> Response:
    """``{"error": message, "code": code, "instance": index}``; ``error`` is a string as in the OIP spec."""
    body: dict[str, Any] = {"error": message, "code": code}
    if instance is not None:
        body["instance"] = instance
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def maas_error_handler(request: Request, exc: Exception) -> Response:
    """Log the error (no payload) with the request id, and answer with the mapped status."""
    from functions.api.telemetry import log
    from functions.api.v1 import request_id

    assert isinstance(exc, MaasError)
    status = status_of(exc)
    log("ERROR" if status >= 500 else "WARNING", exc.message, status=status, code=exc.code,
        path=request.url.path, request_id=request_id(request))
    return error_response(status, exc.code, exc.message, getattr(exc, "index", None))
