"""Sticky A/B splits: the same routing key always gets the same version, the share of keys on the split version
is what was asked for, and a malformed rollout never stops an alias from serving its target."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from mangum import Mangum

from functions.api.front import create_front
from functions.api.http import authenticated_caller
from functions.core import catalog, rollout
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer
from tests.events import LambdaContext, http_api_event, load_event
from tests.rollouts.two_versions import CANDIDATE, LIVE, MODEL, add_pair, rows

KEYS = 4000


@pytest.fixture(scope="module")
def pair_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pair") / "store"
    add_pair(root)
    return root


@pytest.fixture
def store(pair_root: Path, tmp_path: Path) -> LocalStore:
    root = tmp_path / "store"
    shutil.copytree(pair_root, root)
    return LocalStore(root)


def _split(store: LocalStore, percent: float) -> rollout.SplitSetting:
    setting = rollout.new_split(CANDIDATE, percent, catalog.now())
    catalog.set_split(store, MODEL, "prod", setting)
    return setting


def _within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("percent", [1.0, 30.0, 50.0, 95.5])
def test_the_share_of_keys_on_the_split_version_is_what_was_asked(percent: float) -> None:
    split = rollout.SplitSetting(version="2", percent=percent, started_at="t")
    taken = sum(split.takes(MODEL, "prod", f"user-{n}") for n in range(KEYS))
    assert _within_binomial(taken, KEYS, percent / 100)


def test_raising_the_share_only_moves_keys_to_the_split_version() -> None:
    low, high = (rollout.SplitSetting(version="2", percent=p, started_at="t") for p in (10.0, 25.0))
    keys = [f"k{n}" for n in range(KEYS)]
    on_low = {k for k in keys if low.takes(MODEL, "prod", k)}
    on_high = {k for k in keys if high.takes(MODEL, "prod", k)}
    assert on_low < on_high


def test_each_split_draws_its_own_keys() -> None:
    """A split to another version (another experiment) assigns keys afresh, not the same users every time."""
    keys = [f"k{n}" for n in range(KEYS)]
    first = {k for k in keys if rollout.SplitSetting(version="2", percent=50, started_at="t").takes(MODEL, "prod", k)}
    other = {k for k in keys if rollout.SplitSetting(version="3", percent=50, started_at="t").takes(MODEL, "prod", k)}
    assert _within_binomial(len(first & other), KEYS, 0.25)


def test_the_same_key_always_gets_the_same_version_over_http(store: LocalStore) -> None:
    split = _split(store, 40.0)
    settings = Settings(store=store.uri)
    seen: dict[str, set[str]] = {}
    with LiveServer(create_front(settings, ModelCache(store, settings))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            for n in range(40):
                key = f"customer-{n}"
                for path in ("/v1/models/pair/predict", "/v1/models/pair:predict?alias=prod"):
                    answer = client.post(path, json={"instances": rows(1, seed=n)},
                                         headers={"x-maas-routing-key": key})
                    assert answer.status_code == 200
                    seen.setdefault(key, set()).add(answer.json()["version"])
                infer = client.post("/v2/models/pair/infer", headers={"x-maas-routing-key": key}, json={
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.2]}]})
                seen[key].add(infer.json()["model_version"])
        pinned = client.post("/v1/models/pair/versions/1/predict", json={"instances": rows(1)},
                             headers={"x-maas-routing-key": "customer-0"})
        assert pinned.json()["version"] == LIVE  # an explicit version is never split
    assert all(len(versions) == 1 for versions in seen.values())
    expected = {key: CANDIDATE if split.takes(MODEL, "prod", key) else LIVE for key in seen}
    assert {key: versions.pop() for key, versions in seen.items()} == expected
    assert set(expected.values()) == {LIVE, CANDIDATE}


def test_without_a_key_each_request_draws(store: LocalStore) -> None:
    _split(store, 50.0)
    settings = Settings(store=store.uri)
    with LiveServer(create_front(settings, ModelCache(store, settings))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        versions = [client.post("/v1/models/pair/predict", json={"instances": rows(1)}).json()["version"]
                    for _ in range(120)]
    assert _within_binomial(versions.count(CANDIDATE), 120, 0.5)


class _Context(LambdaContext):
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


def _with_claims(event: dict[str, Any], sub: str) -> dict[str, Any]:
    authorizer = {"jwt": {"claims": {"sub": sub, "scope": "predict"}, "scopes": ["predict"]}}
    return {**event, "requestContext": {**event["requestContext"], "authorizer": authorizer}}


def test_behind_api_gateway_the_authenticated_caller_is_the_key(store: LocalStore) -> None:
    split = _split(store, 50.0)
    settings = Settings(store=store.uri, max_batch_rows=1)
    handler = Mangum(create_front(settings, ModelCache(store, settings)), lifespan="off")
    body = orjson.dumps({"instances": rows(1)})
    for n in range(12):
        subject = f"sub-{n}"
        event = _with_claims(http_api_event("POST", "/v1/models/pair/predict", body), subject)
        answers = {orjson.loads(handler(event, _Context(f"r{n}-{i}"))["body"])["version"] for i in range(3)}
        assert answers == {CANDIDATE if split.takes(MODEL, "prod", f"jwt:{subject}") else LIVE}
        keyed = http_api_event("POST", "/v1/models/pair/predict", body, headers={"x-maas-routing-key": "fixed"})
        header_wins = orjson.loads(handler(_with_claims(keyed, subject), _Context(f"h{n}"))["body"])["version"]
        assert header_wins == (CANDIDATE if split.takes(MODEL, "prod", "fixed") else LIVE)


@pytest.mark.parametrize(("context", "caller"), [
    ({"authorizer": {"jwt": {"claims": {"sub": "alice"}}}}, "jwt:alice"),
    ({"authorizer": {"iam": {"userArn": "arn:aws:iam::1:user/bob", "callerId": "AIDA"}}},
     "iam:arn:aws:iam::1:user/bob"),
    ({"authorizer": {"lambda": {"consumer": "team-a"}}}, "consumer:team-a"),
    ({"authorizer": {"principalId": "p-1"}}, "principal:p-1"),  # REST API (v1) authorizers
    ({"authorizer": {"claims": {"sub": "carol"}}}, "jwt:carol"),
    ({"identity": {"userArn": "arn:aws:sts::1:assumed-role/r/s"}}, "iam:arn:aws:sts::1:assumed-role/r/s"),
    ({"authorizer": {"jwt": {"claims": {"claim1": "value1"}}}}, None),  # the shipped sample event: no subject
    ({}, None),
])
def test_the_authenticated_caller_is_read_from_each_event_shape(context: dict[str, Any], caller: str | None) -> None:
    assert authenticated_caller({"aws.event": {"requestContext": context}}) == caller


def test_the_shipped_events_name_no_caller() -> None:
    """The real sample payloads carry authorizer blocks without a subject (v2: claims without ``sub``; v1: null
    claims and a null userArn): no caller, so requests draw at random unless they send a key."""
    for name in ("apigw-http-v2", "apigw-rest-v1"):
        assert authenticated_caller({"aws.event": load_event(name)}) is None
    assert authenticated_caller({}) is None


@pytest.mark.parametrize("document", [
    {"shadow": {"candidate": "2", "rate": 5, "started_at": "t"}},
    {"split": {"version": "2", "percent": "half", "started_at": "t"}},
    {"split": {"version": "../2", "percent": 10, "started_at": "t"}},
    {"shadow": "everything", "split": [1, 2]},
])
def test_a_malformed_rollout_leaves_the_alias_serving_its_target(store: LocalStore, document: dict[str, Any],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    record = catalog.read_alias(store, MODEL, "prod")
    assert record is not None
    store.put_bytes(catalog.alias_key(MODEL, "prod"), orjson.dumps({**record.to_dict(), **document}))
    settings = Settings(store=store.uri)
    with LiveServer(create_front(settings, ModelCache(store, settings))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        versions = {client.post("/v1/models/pair/predict", json={"instances": rows(1)},
                                headers={"x-maas-routing-key": f"k{n}"}).json()["version"] for n in range(30)}
    assert versions == {LIVE}
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if "rollout setting ignored" in line]
    assert lines and lines[0]["model"] == MODEL and lines[0]["alias"] == "prod" and lines[0]["version"] == LIVE
    assert lines[0]["problem"].startswith(("shadow", "split"))


def test_the_cli_and_client_send_the_routing_key(store: LocalStore) -> None:
    from click.testing import CliRunner

    from maas.cli import main
    from maas.client import Client

    split = _split(store, 50.0)
    settings = Settings(store=store.uri)
    keys = [f"team-{n}" for n in range(8)]
    with LiveServer(create_front(settings, ModelCache(store, settings))) as url:
        for key in keys:
            expected = CANDIDATE if split.takes(MODEL, "prod", key) else LIVE
            result = CliRunner().invoke(main, ["predict", MODEL, "--url", url, "--data", orjson.dumps(rows(1)).decode(),
                                               "--routing-key", key])
            assert result.exit_code == 0, result.output
            assert orjson.loads(result.output)["version"] == expected
            assert Client(url, routing_key=key).predict(MODEL, rows(1), alias="prod")["version"] == expected


def test_errors_count_for_the_version_that_served_the_request(store: LocalStore, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The dashboard's errors per version: a request a split sent to a version and that version rejected counts
    for it; a request refused before any version was chosen (an unknown model) counts for none."""
    split = _split(store, 50.0)
    monkeypatch.setenv("MAAS_METRICS", "1")
    settings = Settings(store=store.uri)
    keys = {LIVE: "", CANDIDATE: ""}
    for n in range(200):
        keys[CANDIDATE if split.takes(MODEL, "prod", f"k{n}") else LIVE] = f"k{n}"
    with LiveServer(create_front(settings, ModelCache(store, settings))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        for version, key in keys.items():
            answer = client.post("/v1/models/pair/predict", json={"instances": [{"f0": 1.0}]},
                                 headers={"x-maas-routing-key": key})
            assert answer.status_code == 422, version
        assert client.post("/v1/models/nope/predict", json={"instances": [{"f0": 1.0}]}).status_code == 404
    errors = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if '"Errors"' in line]
    assert sorted((e["model"], e["version"], e["error"]) for e in errors) == [
        (MODEL, LIVE, "invalid_input"), (MODEL, CANDIDATE, "invalid_input")]
