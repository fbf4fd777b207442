"""A stand-in for Lambda's Python runtime loop, for capture's after-response writes, in process (tests and bench).

The handlers run under Lambda's real client (``awslambdaric``, a dev dependency) in tests/runtime, against the
loopback Runtime API of tests/runtime_api.py. This stand-in stays for what the real client cannot do in the test
process: imported once, awslambdaric's client class would stay in ``sys.modules`` (where capture looks for it)
for every later test, its posts need a Runtime API, and some cases never arise from a real handler (an error
post after a captured prediction, a post under another module name, a dead sink). It has the real client's two
posts, with both signatures the runtime has used (with and without ``invocation_id``), and ``invoke`` runs one
invocation in the runtime's order: handler, marshal the result, post it (or post the error). The monitoring
bench times the handler and the post apart with it.
"""

from __future__ import annotations

import json
from typing import Any


def runtime_client_class() -> type[Any]:
    """A fresh client class per call (installing the after-response writes patches the class)."""

    class LambdaRuntimeClient:
        def __init__(self) -> None:
            self.posted: list[tuple[str, str]] = []

        def post_invocation_result(self, invoke_id: str, result_data: bytes | str,
                                   content_type: str = "application/json", invocation_id: str | None = None) -> None:
            self.posted.append(("result", invoke_id))

        def post_invocation_error(self, invoke_id: str, error_response_data: str, xray_fault: str,
                                  invocation_id: str | None = None) -> None:
            self.posted.append(("error", invoke_id))

    return LambdaRuntimeClient


def base_and_sibling_client_classes() -> tuple[type[Any], type[Any]]:
    """awslambdaric 4's layout: the posts live on a base class; the runtime uses one of two subclasses (one per
    concurrency mode) and ``LambdaRuntimeClient`` is the one found by name."""
    base = runtime_client_class()
    multi_concurrent = type("LambdaMultiConcurrentRuntimeClient", (base,), {})
    standard = type("LambdaRuntimeClient", (base,), {})
    return standard, multi_concurrent


def invoke(client: Any, handler: Any, event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """One invocation in the runtime's order; returns the handler's response (None when it raised)."""
    try:
        response = handler(event, context)
        result = json.dumps(response)
    except Exception as exc:
        client.post_invocation_error(context.aws_request_id, json.dumps({"errorMessage": str(exc)}), "{}")
        return None
    client.post_invocation_result(context.aws_request_id, result, "application/json")
    return dict(response)
