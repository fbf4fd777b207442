"""Real API Gateway event payloads (tests/events/*.json) adapted to a request, for invoking handlers."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

EVENTS = Path(__file__).parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A stored event payload by file stem."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return event


def http_api_event(method: str, path: str, body: bytes | None = None, query: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, base64_body: bool = False) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2.0) event for one request."""
    event = copy.deepcopy(load_event("apigw-http-v2"))
    event["rawPath"] = path
    event["rawQueryString"] = urlencode(query or {})
    event["queryStringParameters"] = query or None
    event["headers"] = {"content-type": "application/json", **(headers or {})}
    event["requestContext"]["http"].update({"method": method, "path": path})
    event["routeKey"] = "$default"
    event.pop("cookies", None)
    _set_body(event, body, base64_body)
    return event


def rest_api_event(method: str, path: str, body: bytes | None = None, query: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, base64_body: bool = False) -> dict[str, Any]:
    """An API Gateway REST API (payload v1.0) event for one request."""
    event = copy.deepcopy(load_event("apigw-rest-v1"))
    all_headers = {"content-type": "application/json", **(headers or {})}
    event.update({"path": path, "resource": "/{proxy+}", "httpMethod": method, "headers": all_headers,
                  "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
                  "queryStringParameters": query or None,
                  "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None})
    event["requestContext"].update({"httpMethod": method, "path": path})
    _set_body(event, body, base64_body)
    return event


def _set_body(event: dict[str, Any], body: bytes | None, base64_body: bool) -> None:
    if body is None:
        event["body"] = None
        event["isBase64Encoded"] = False
    elif base64_body:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body.decode()
        event["isBase64Encoded"] = False


class LambdaContext:
    """The attributes of a Lambda context object that the code reads."""

    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    function_name = "maas-api"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:maas-api"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
