"""HTTP answers for the project's errors: status, the JSON error body, the log line, Retry-After.

Error bodies never carry store locations, bucket names, endpoints or host paths: such details go to the log
line (with the request id) and the body gets a plain message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from functions.api.http import Reply
from functions.core.errors import (
    InvalidInputError,
    InvalidNameError,
    KeyStoreUnavailableError,
    MaasError,
    ModelUnavailableError,
    RequestError,
    StoreUnavailableError,
    http_status,
)
from functions.core.telemetry import log

RETRY_AFTER_SECONDS = 5
STORE_UNAVAILABLE = "the model store is unavailable; retry later"
KEY_STORE_UNAVAILABLE = "API keys cannot be checked right now; retry later"
_LOCATION_MARKERS = ("://", "/tmp/")


def status_of(exc: MaasError) -> int:
    """The HTTP status for an error, from the one table in functions/core/errors.py."""
    return http_status(exc)


def error_body(code: str, message: str, instance: int | None = None) -> bytes:
    """``{"error": message, "code": code, "instance": index}``; ``error`` is a string as in the OIP spec."""
    body: dict[str, Any] = {"error": message, "code": code}
    if instance is not None:
        body["instance"] = instance
    return orjson.dumps(body)


def error_reply(status: int, code: str, message: str, instance: int | None = None,
                retry_after: int | None = None) -> Reply:
    """The JSON error answer; 503s and 429s tell the client when to retry."""
    if retry_after is None and status == 503:
        retry_after = RETRY_AFTER_SECONDS
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status, error_body(code, message, instance), headers=headers)


def public_message(exc: MaasError, hidden: Iterable[str] = ()) -> str:
    """The message a client may see: store failures are named, not located; locations are cut out."""
    if isinstance(exc, KeyStoreUnavailableError):
        return KEY_STORE_UNAVAILABLE
    if isinstance(exc, StoreUnavailableError):
        return STORE_UNAVAILABLE
    message = exc.message
    if isinstance(exc, RequestError | InvalidInputError | InvalidNameError):
        return message  # about the client's own input
    if any(marker in message for marker in (*_LOCATION_MARKERS, *(h for h in hidden if h))):
        head = message.split(":")[0] if isinstance(exc, ModelUnavailableError) else ""
        return f"{head}: a file of this version is unreadable" if head else "the request could not be served"
    return message


def reply_for(exc: MaasError, path: str, rid: str, hidden: Iterable[str] = ()) -> Reply:
    """Log the error (no payload, full detail) with the request id, and answer with the mapped status."""
    status = status_of(exc)
    log("ERROR" if status >= 500 else "WARNING", exc.message, status=status, code=exc.code, path=path,
        request_id=rid)
    return error_reply(status, exc.code, public_message(exc, hidden), getattr(exc, "index", None),
                       getattr(exc, "retry_after", None))
