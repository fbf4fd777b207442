"""The console as the deployed function serves it: the Lambda handler invoked with API Gateway events."""

from __future__ import annotations

import base64
import hashlib
import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from functions.core import catalog
from functions.core.settings import ENV_STORE, get_settings
from functions.core.store import LocalStore
from tests.events import LambdaContext, http_api_event, rest_api_event


@pytest.fixture(scope="module")
def handler(console_store: LocalStore) -> Iterator[Any]:
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_STORE, console_store.uri)
    mp.delenv("MAAS_BATCH_OUTPUTS", raising=False)
    get_settings.cache_clear()
    module = importlib.reload(importlib.import_module("functions.api.handler"))
    yield module.handler
    mp.undo()
    get_settings.cache_clear()


def invoke(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    response = handler(event, LambdaContext())
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return response["statusCode"], {k.lower(): v for k, v in response["headers"].items()}, data


@pytest.mark.parametrize("make_event", [http_api_event, rest_api_event], ids=["http-api-v2", "rest-api-v1"])
def test_console_pages_and_plots_through_the_lambda_handler(handler: Any, make_event: Any,
                                                            console_store: LocalStore) -> None:
    status, headers, page = invoke(handler, make_event("GET", "/console/"))
    assert status == 200 and headers["content-type"].startswith("text/html") and b'type="module"' in page
    status, headers, script = invoke(handler, make_event("GET", "/console/js/app.js"))
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"import" in script
    status, headers, plot = invoke(handler, make_event("GET", "/v1/models/digits-cnn/versions/1/files/training.png"))
    assert status == 200 and headers["content-type"] == "image/png"
    assert hashlib.sha256(plot).hexdigest() == catalog.read_manifest(console_store, "digits-cnn", "1").file(
        "training.png").sha256
    status, _, docs = invoke(handler, make_event("GET", "/docs"))
    assert status == 200 and b"swagger-ui-bundle.js" in docs and b"cdn." not in docs
    status, _, body = invoke(handler, make_event("GET", "/v1/batch/outputs"))
    assert status == 200 and body == b'{"configured":false,"outputs":[]}'
