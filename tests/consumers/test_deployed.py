"""The deployed path: the HTTP API authorizer over a DynamoDB table (moto's server), then the API function under
Lambda's real runtime client with the authorizer's verdict in its events: exact answers, usage written to the
table after the responses."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from functions.consumers import authorizer
from functions.consumers.admission import Keyring
from functions.consumers.dynamo_store import DynamoStore
from functions.consumers.keys import new_key
from functions.consumers.usage import Usage
from functions.core.store import LocalStore
from tests.api.samples import DIABETES_ROW
from tests.consumers.conftest import add_key, make_table
from tests.events import LambdaContext, http_api_event, load_event
from tests.runtime_api import lambda_function

API = "functions.api.handler.handler"
PREDICT = "/v1/models/diabetes-mlp/predict"


def authorizer_event(headers: dict[str, str]) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw-http-v2-authorizer"))
    event["headers"] = {k: v for k, v in event["headers"].items() if k != "x-api-key"} | headers
    event["identitySource"] = list(headers.values())
    return event


def api_event(verdict: dict[str, Any], path: str = PREDICT) -> dict[str, Any]:
    """The API function's event for a request the authorizer answered with ``verdict``."""
    assert verdict["isAuthorized"] is True
    event = http_api_event("POST", path, orjson.dumps({"instances": [DIABETES_ROW]}))
    event["requestContext"]["authorizer"] = {"lambda": verdict["context"]}
    return event


@pytest.fixture
def table(dynamo_env: str) -> DynamoStore:
    return DynamoStore(make_table(dynamo_env))


def test_the_authorizer_passes_a_grant_or_the_reason_it_refused(table: DynamoStore) -> None:
    ring = Keyring(table, ttl=0)
    key, record = add_key(table, "team-a", models=("diabetes-mlp",), daily_quota=5)
    granted = authorizer.verdict(authorizer_event({"x-api-key": key}), ring)
    assert granted == {"isAuthorized": True, "context": {
        "consumer": "team-a", "keyId": record.key_id, "models": "diabetes-mlp", "rateLimit": "", "dailyQuota": 5,
        "denied": "", "reason": ""}}
    bearer = authorizer.verdict(authorizer_event({"authorization": f"Bearer {key}"}), ring)
    assert bearer["context"]["consumer"] == "team-a"
    unknown = authorizer.verdict(authorizer_event({"x-api-key": new_key()[0]}), ring)
    assert unknown["context"] == {"denied": "unauthenticated", "reason": "the API key is not valid for this service"}
    table.update_key(record.revoked(1.0))
    revoked = authorizer.verdict(authorizer_event({"x-api-key": key}), ring)
    assert revoked["context"]["denied"] == "forbidden" and "revoked" in revoked["context"]["reason"]
    assert key not in orjson.dumps([granted, bearer, unknown, revoked]).decode()


def test_the_handler_reads_its_table_from_the_environment(table: DynamoStore, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = add_key(table, "from-env")
    monkeypatch.setenv("MAAS_KEYS", table.uri)
    monkeypatch.setattr(authorizer, "_keyring", None)
    assert authorizer.handler(authorizer_event({"x-api-key": key}), LambdaContext())["context"]["consumer"] == \
        "from-env"


def test_an_unreadable_table_fails_the_invocation_so_nothing_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from functions.core.errors import StoreUnavailableError

    with pytest.raises(StoreUnavailableError):
        authorizer.verdict(authorizer_event({"x-api-key": new_key()[0]}), Keyring(DynamoStore("maas-keys")))


@pytest.fixture(scope="module")
def deployed(built_store: LocalStore, dynamo_endpoint: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, DynamoStore]]:
    """The API function of an apiKey stage under Lambda's runtime client, with its key table."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ENDPOINT_URL_DYNAMODB": dynamo_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            env.setenv(name, value)
        table = DynamoStore(make_table(dynamo_endpoint))
        extra = {"MAAS_STORE": built_store.uri, "MAAS_AUTH": "apiKey", "MAAS_KEYS": table.uri,
                 "AWS_ENDPOINT_URL_DYNAMODB": dynamo_endpoint}
        with lambda_function(API, tmp_path_factory.mktemp("apikey"), extra) as (api, _):
            yield api, table


def answer(api: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = api.outcome(api.invoke(event)).json()
    return response["statusCode"], orjson.loads(response["body"]), response.get("headers", {})


def test_the_function_answers_the_verdict_and_meters_after_the_response(deployed: tuple[Any, DynamoStore]) -> None:
    api, table = deployed
    ring = Keyring(table, ttl=0)
    key, _ = add_key(table, "lambda-team", models=("diabetes-mlp",), daily_quota=3)
    verdict = authorizer.verdict(authorizer_event({"x-api-key": key}), ring)
    statuses = [answer(api, api_event(verdict))[0] for _ in range(3)]
    over_status, over, headers = answer(api, api_event(verdict))
    assert statuses == [200, 200, 200] and over_status == 429 and over["code"] == "quota_exceeded"
    assert int(headers["retry-after"]) <= 86400
    status, refused, _ = answer(api, api_event(verdict, "/v1/models/cancer-mlp/predict"))
    assert status == 403 and refused["code"] == "forbidden"
    unknown = authorizer.verdict(authorizer_event({"x-api-key": new_key()[0]}), ring)
    status, body, _ = answer(api, api_event(unknown))
    assert (status, body["code"]) == (401, "unauthenticated")
    no_context = http_api_event("POST", PREDICT, orjson.dumps({"instances": [DIABETES_ROW]}))
    assert answer(api, no_context)[0] == 401
    # written once each response was posted: wait for the table to hold them (a bound, not a timing)
    deadline = time.monotonic() + 30
    rows: list[Usage] = []
    while time.monotonic() < deadline:
        rows = table.usage(consumer="lambda-team")
        if sum(r.requests for r in rows) >= 5:  # 3 served, 1 over quota, 1 out of scope
            break
        time.sleep(0.05)
    by_version = {(r.model, r.version): r for r in rows}
    served = by_version[("diabetes-mlp", "1")]
    assert (served.requests, served.rows) == (3, 3)
    refused = by_version[("-", "-")]  # the quota's 429 and the scope's 403: answered before a version
    assert (refused.throttled, refused.client_errors) == (1, 1)

