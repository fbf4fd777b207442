"""The Lambda entry point invoked with API Gateway HTTP API (v2) and REST API (v1) events for every route."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from functions.core.settings import ENV_STORE, get_settings
from functions.core.store import LocalStore
from tests.api.samples import DIABETES_ROW, DIGIT_ZERO, TEXTS
from tests.events import LambdaContext, http_api_event, rest_api_event

EventMaker = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def handler(serving_store: LocalStore) -> Any:
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_STORE, serving_store.uri)
    get_settings.cache_clear()
    module = importlib.import_module("functions.api.handler")
    module = importlib.reload(module)
    yield module.handler
    mp.undo()
    get_settings.cache_clear()


def invoke(handler: Any, event: dict[str, Any]) -> tuple[int, Any]:
    response = handler(event, LambdaContext())
    body = response["body"]
    if response.get("isBase64Encoded"):
        import base64

        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body) if body else None


ROUTES: list[tuple[str, str, Any, int, Callable[[Any], bool]]] = [
    ("GET", "/v1/models", None, 200, lambda b: {m["name"] for m in b["models"]} >= {"digits-cnn", "text-lstm"}),
    ("GET", "/v1/models/digits-cnn", None, 200, lambda b: b["task"] == "classification" and b["labels"][0] == "0"),
    ("POST", "/v1/models/digits-cnn/predict", {"instances": [DIGIT_ZERO]}, 200,
     lambda b: b["predictions"][0]["label"] in {str(d) for d in range(10)}),
    ("POST", "/v1/models/diabetes-mlp/versions/1/predict", {"instances": [DIABETES_ROW]}, 200,
     lambda b: isinstance(b["predictions"][0]["value"], float) and b["version"] == "1"),
    ("POST", "/v1/models/text-lstm/predict", {"instances": TEXTS}, 200, lambda b: len(b["predictions"]) == 2),
    ("GET", "/v2", None, 200, lambda b: b["name"] == "maas"),
    ("GET", "/v2/health/live", None, 200, lambda b: b["live"] is True),
    ("GET", "/v2/health/ready", None, 200, lambda b: b["ready"] is True),
    ("GET", "/v2/models/text-lstm", None, 200, lambda b: b["inputs"][0]["datatype"] == "BYTES"),
    ("GET", "/v2/models/diabetes-mlp/versions/1", None, 200, lambda b: b["inputs"][0]["shape"] == [-1, 10]),
    ("GET", "/v2/models/digits-cnn/ready", None, 200, lambda b: b["ready"] is True),
    ("GET", "/v2/models/digits-cnn/versions/1/ready", None, 200, lambda b: b["ready"] is True),
    ("POST", "/v2/models/diabetes-mlp/infer",
     {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32", "data": list(DIABETES_ROW.values())}]},
     200, lambda b: b["outputs"][0]["name"] == "value" and b["outputs"][0]["shape"] == [1, 1]),
    ("POST", "/v2/models/text-lstm/versions/1/infer",
     {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS}]},
     200, lambda b: {o["name"] for o in b["outputs"]} == {"probabilities", "label"}),
    ("GET", "/v1/models/no-such-model", None, 404, lambda b: b["code"] == "not_found"),
    ("POST", "/v1/models/cancer-mlp/versions/2/predict", {"instances": [[0.0] * 30]}, 503,
     lambda b: b["code"] == "model_unavailable"),
]


CASES = [pytest.param(*route, encoded, id=f"{route[0]} {route[1]}{' base64' if encoded else ''}")
         for route in ROUTES for encoded in ((False, True) if route[2] is not None else (False,))]


@pytest.mark.parametrize("make_event", [http_api_event, rest_api_event], ids=["http-api-v2", "rest-api-v1"])
@pytest.mark.parametrize(("method", "path", "payload", "status", "check", "base64_body"), CASES)
def test_every_route_through_the_lambda_handler(handler: Any, make_event: EventMaker, method: str, path: str,
                                                payload: Any, status: int, check: Callable[[Any], bool],
                                                base64_body: bool) -> None:
    body = json.dumps(payload).encode() if payload is not None else None
    code, response = invoke(handler, make_event(method, path, body, base64_body=base64_body))
    assert code == status, response
    assert check(response), response


@pytest.mark.parametrize("make_event", [http_api_event, rest_api_event], ids=["http-api-v2", "rest-api-v1"])
def test_alias_query_parameter_through_lambda(handler: Any, make_event: EventMaker) -> None:
    code, response = invoke(handler, make_event("POST", "/v1/models/cancer-mlp/predict",
                                                json.dumps({"instances": [[0.0] * 30]}).encode(),
                                                query={"alias": "prod"}))
    assert code == 200, response
    assert response["version"] == "1"


def test_the_lambda_handler_never_waits_to_join_runs(handler: Any) -> None:
    """One invocation is one request: the Lambda app runs each request at once, whatever the environment."""
    import functions.api.handler as module

    assert module.app.service.batcher.max_rows == 1


def test_handler_is_built_once_at_import(handler: Any) -> None:
    module = importlib.import_module("functions.api.handler")
    assert module.handler is handler
    assert module.handler.lifespan == "off"
