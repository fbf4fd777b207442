"""Reading request bodies: content type, size cap, JSON parsing, and the shape of the envelope."""

from __future__ import annotations

from typing import Any

import orjson

from functions.api.http import Call, RequestError
from functions.core.errors import InvalidInputError

JSON_TYPES = ("application/json",)


def check_content_type(content_type: str, accepted: tuple[str, ...] = JSON_TYPES) -> str:
    """The media type if accepted, else a 415."""
    if content_type not in accepted:
        raise RequestError(415, "unsupported_media_type",
                           f"content type must be {' or '.join(accepted)}, got {content_type or 'none'!r}")
    return content_type


def parse_json(body: bytes) -> Any:
    """orjson parsing: invalid UTF-8, malformed JSON and nesting deeper than orjson's limit are 400s."""
    if not body:
        raise RequestError(400, "malformed_json", "request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "malformed_json", f"request body is not valid JSON: {exc}") from None


async def read_json(call: Call, max_bytes: int) -> Any:
    """Content type, size cap and JSON parsing in one go."""
    check_content_type(call.content_type())
    return parse_json(await call.body(max_bytes))


def instances_of(payload: Any, max_instances: int) -> list[Any]:
    """The ``instances`` list of a v1 predict body."""
    if not isinstance(payload, dict):
        raise InvalidInputError(f"body must be a JSON object with an 'instances' list, got {type(payload).__name__}")
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise InvalidInputError(f"unknown field(s) in body: {', '.join(map(repr, unknown[:5]))}")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise InvalidInputError("'instances' must be a list")
    if not instances:
        raise InvalidInputError("'instances' is empty")
    if len(instances) > max_instances:
        raise InvalidInputError(f"{len(instances)} instances exceed the limit of {max_instances} per request")
    return instances
