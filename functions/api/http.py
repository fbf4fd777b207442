"""Plain HTTP over ASGI, shared by the fast front and the FastAPI app: request facts, bodies, replies.

No FastAPI, Starlette or pydantic here: this module is on the cold path of every prediction.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from functions.core.errors import RequestError
from functions.core.names import shown

__all__ = ["Call", "Reply", "RequestError", "json_reply", "request_id"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPE = "application/json"
JOBS_HINT = "; send large inputs as a batch job: POST /v1/models/NAME/jobs"
ROUTING_KEY_HEADER = "x-maas-routing-key"


@dataclass
class Reply:
    """A complete HTTP answer."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """ASGI header list: content type and length first, then the extra headers."""
        return [(b"content-type", self.content_type.encode()), (b"content-length", str(len(self.body)).encode()),
                *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())]

    async def send(self, send: Send) -> None:
        """Write the reply to an ASGI ``send``."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.raw_headers()})
        await send({"type": "http.response.body", "body": self.body})


def json_reply(body: Any, status: int = 200) -> Reply:
    """A JSON answer serialized with orjson."""
    return Reply(status, orjson.dumps(body))


@dataclass
class Call:
    """What a route needs from one HTTP request, read from the ASGI scope."""

    scope: Scope
    receive: Receive
    headers: dict[str, str]
    request_id: str
    served: tuple[str, str] | None = None
    """(model, version) once a codec knows which version serves the request: its errors count for that version."""

    @classmethod
    def of(cls, scope: Scope, receive: Receive) -> Call:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        return cls(scope, receive, headers, request_id(scope, headers))

    @property
    def path(self) -> str:
        return str(self.scope.get("path", ""))

    def query(self, name: str) -> str | None:
        """The last value of a query parameter, as Starlette reads it."""
        raw = self.scope.get("query_string", b"")
        if not raw:
            return None
        values = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        return values.get(name)

    def only_query(self, allowed: tuple[str, ...]) -> None:
        """422 for a query parameter the route does not take (``?version=`` would otherwise be ignored)."""
        raw = self.scope.get("query_string", b"")
        if not raw:
            return
        for name, _ in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if name not in allowed:
                hint = " (for a version, use .../versions/VERSION/... in the path)" if name == "version" else ""
                takes = f"this route takes {', '.join(allowed)}" if allowed else "this route takes none"
                raise RequestError(422, "unknown_parameter",
                                   f"unknown query parameter {shown(name)!r}{hint}; {takes}")

    def routing_key(self) -> str | None:
        """The sticky A/B key: the ``x-maas-routing-key`` header, else the authenticated caller, else None (each
        request draws at random)."""
        return self.headers.get(ROUTING_KEY_HEADER) or authenticated_caller(self.scope)

    def content_type(self, default: str = "") -> str:
        """The media type without parameters, lower-cased."""
        return self.headers.get("content-type", default).split(";")[0].strip().lower()

    async def body(self, max_bytes: int) -> bytes:
        """The raw body, refusing more than ``max_bytes`` (by header first, then by what actually arrives)."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise RequestError(413, "too_large",
                               f"request body of {declared} bytes exceeds the {max_bytes}-byte limit{JOBS_HINT}")
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                raise RequestError(400, "disconnected", "the client went away before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(413, "too_large", f"request body exceeds the {max_bytes}-byte limit{JOBS_HINT}")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def authenticated_caller(scope: Scope) -> str | None:
    """Who API Gateway authenticated, from the Lambda event Mangum keeps in the scope: a JWT subject, an IAM
    principal, or a Lambda authorizer's consumer / principal id (HTTP API v2 and REST v1 shapes); else None."""
    event = scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    if not isinstance(context, dict):
        return None
    authorizer = context.get("authorizer") if isinstance(context.get("authorizer"), dict) else {}
    identity = context.get("identity") if isinstance(context.get("identity"), dict) else {}
    candidates = (
        ("jwt", _get(authorizer, "jwt", "claims", "sub")), ("jwt", _get(authorizer, "claims", "sub")),
        ("iam", _get(authorizer, "iam", "userArn")), ("iam", _get(authorizer, "iam", "callerId")),
        ("consumer", _get(authorizer, "lambda", "consumer")), ("principal", _get(authorizer, "lambda", "principalId")),
        ("principal", _get(authorizer, "principalId")), ("iam", _get(identity, "userArn")),
    )
    for kind, value in candidates:
        if isinstance(value, str) and value:
            return f"{kind}:{value}"
    return None


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def request_id(scope: Scope, headers: dict[str, str]) -> str:
    """The Lambda request id under Mangum, else the caller's X-Request-Id, else a fresh one."""
    context = scope.get("aws.context")
    if context is not None and getattr(context, "aws_request_id", None):
        return str(context.aws_request_id)
    return headers.get("x-request-id") or os.urandom(16).hex()
