"""HTTP status codes for the project's errors, mapped in one place, and the JSON error body."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from functions.core.errors import (
    AlreadyExistsError,
    IntegrityError,
    InvalidInputError,
    MaasError,
    ModelUnavailableError,
    NotFoundError,
    StoreUnavailableError,
)


class RequestError(MaasError):
    """A request the server cannot read at all: malformed JSON, wrong content type, body too large."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def status_of(exc: MaasError) -> int:
    """The HTTP status for an error; 4xx for the client's mistakes, 503 when a model cannot be served."""
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, InvalidInputError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AlreadyExistsError):
        return 409
    if isinstance(exc, ModelUnavailableError | IntegrityError | StoreUnavailableError):
        return 503
    return 500


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
