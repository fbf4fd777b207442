"""The console's rollouts route against `maas serve --capture DIR`: each alias with its shadow or split, and the
shadow's report over the comparison records; local, S3 (gzipped Firehose objects) and missing sources."""

from __future__ import annotations

import asyncio
import gzip
import importlib
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import orjson
import pytest

from functions.console.rollouts import comparison_source, late_summary, shadow_summary
from functions.core import capture
from functions.core.settings import ENV_STORE, Settings, get_settings
from functions.core.store import LocalStore
from tests.console.conftest import DAY, SHADOW_MODEL, SHADOW_RATE, SPLIT_MODEL, SPLIT_PERCENT, comparisons
from tests.events import LambdaContext, http_api_event

CONFUSION = {"benign": {"benign": 6, "malignant": 2}, "malignant": {"malignant": 8}}


@pytest.fixture(scope="module")
def client(rollout_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rollout_url, timeout=30) as client:
        yield client


def check_report(report: dict[str, object]) -> None:
    """The figures of the fixture's ten prod requests (candidate 2 vs live 1); the others are left out."""
    assert {k: report[k] for k in ("model", "alias", "live_version", "candidate", "task", "requests", "compared",
                                   "rows_compared", "agreement", "confusion")} == {
        "model": SHADOW_MODEL, "alias": "prod", "live_version": "1", "candidate": "2", "task": "classification",
        "requests": 10, "compared": 8, "rows_compared": 16, "agreement": 14 / 16, "confusion": CONFUSION}
    assert report["candidate_errors"] == {"count": 2, "rate": 0.2, "by_code": {"busy": 1, "timeout": 1}}
    latency = report["latency"]
    assert isinstance(latency, dict) and latency["ratio_p50"] == 0.5 and latency["live_p50_ms"] == 2.0


def test_a_shadowed_alias_comes_with_its_report(client: httpx.Client) -> None:
    body = client.get(f"/v1/models/{SHADOW_MODEL}/rollouts").json()
    assert body["model"] == SHADOW_MODEL and body["unreadable"] == {}
    (prod,) = body["aliases"]
    assert (prod["alias"], prod["version"], prod["split"], prod["ignored"]) == ("prod", "1", None, [])
    assert prod["shadow"]["candidate"] == "2" and prod["shadow"]["rate"] == SHADOW_RATE
    report = prod["report"]
    check_report(report)
    assert report["records_read"] == 12 and report["records_limit"] == 2000 and report["note"] is None
    assert report["first_time"] == f"{DAY}T10:00:00.000Z"
    fewer = client.get(f"/v1/models/{SHADOW_MODEL}/rollouts", params={"records": 3}).json()["aliases"][0]["report"]
    assert fewer["records_read"] == 3 and fewer["requests"] <= 3  # the newest records only


def test_a_split_alias_and_malformed_or_unreadable_aliases(client: httpx.Client) -> None:
    body = client.get(f"/v1/models/{SPLIT_MODEL}/rollouts").json()
    aliases = {a["alias"]: a for a in body["aliases"]}
    assert set(aliases) == {"canary", "prod"}
    prod = aliases["prod"]
    assert prod["split"]["version"] == "2" and prod["split"]["percent"] == SPLIT_PERCENT
    assert prod["shadow"] is None and prod["report"] is None
    canary = aliases["canary"]  # a shadow rate of 5: ignored, the alias keeps serving version 1
    assert canary["version"] == "1" and canary["shadow"] is None and "rate" in canary["ignored"][0]
    assert list(body["unreadable"]) == ["broken"] and "unusable" in body["unreadable"]["broken"]
    assert client.get("/v1/models/text-lstm/rollouts").json()["aliases"] == []


def test_unknown_models_and_bad_counts_are_4xx(client: httpx.Client) -> None:
    for path in ("/v1/models/nope/rollouts", "/v1/models/..%2Fx/rollouts", "/v1/models/_shadow/rollouts"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) >= {"error", "code"}
    assert client.get(f"/v1/models/{SHADOW_MODEL}/rollouts", params={"records": 0}).status_code == 422
    assert client.get(f"/v1/models/{SHADOW_MODEL}/rollouts", params={"records": 10**6}).status_code == 422


def test_the_route_is_documented_and_read_only(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/models/{name}/rollouts"]) == {"get"}
    for method in ("POST", "PUT", "DELETE"):
        assert client.request(method, f"/v1/models/{SHADOW_MODEL}/rollouts").status_code == 405


def test_a_missing_source_is_an_empty_report_never_an_error(tmp_path: Path) -> None:
    report = shadow_summary(str(tmp_path / "nothing-here"), SHADOW_MODEL, "prod", "1", "2")
    assert report["requests"] == 0 and report["agreement"] is None and report["candidate"] == "2"
    assert report["note"] == "no comparison records could be read (unreadable_input)"
    assert str(tmp_path) not in orjson.dumps(report).decode()  # the source is logged, not returned
    late = late_summary(SHADOW_MODEL, "prod", "1", "2", 50)
    assert late["requests"] == 0 and "request budget" in late["note"]


def test_deployed_the_records_are_read_from_the_data_bucket(moto_endpoint: str, s3_bucket: str,
                                                            tmp_path: Path) -> None:
    settings = Settings(store=LocalStore(tmp_path).uri, data_bucket=s3_bucket)
    source = comparison_source(SHADOW_MODEL, settings)
    assert source == f"s3://{s3_bucket}/shadow/{SHADOW_MODEL}/"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in comparisons())
    half = lines.index(b"\n", len(lines) // 2) + 1
    # Firehose objects: gzipped, no extension, under shadow/MODEL/LIVE-VERSION/DAY/.
    for n, part in enumerate((lines[:half], lines[half:])):
        s3.put_object(Bucket=s3_bucket, Key=f"shadow/{SHADOW_MODEL}/1/{DAY}/maas-capture-{n}", Body=gzip.compress(part))
    check_report(shadow_summary(source, SHADOW_MODEL, "prod", "1", "2", moto_endpoint))
    missing = shadow_summary(f"s3://{s3_bucket}-gone/shadow/{SHADOW_MODEL}/", SHADOW_MODEL, "prod", "1", "2",
                             moto_endpoint)
    assert missing["requests"] == 0 and missing["note"].startswith("no comparison records could be read")



def test_through_the_lambda_handler_with_maas_capture_dir(rollout_store: LocalStore, capture_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The async route (work in threads, bounded by the budget) under Mangum; the source from MAAS_CAPTURE_DIR."""
    monkeypatch.setattr(capture, "_state", capture.Capture())  # no capture folder configured in this process
    monkeypatch.setenv(ENV_STORE, rollout_store.uri)
    monkeypatch.setenv(capture.ENV_CAPTURE_DIR, str(capture_dir))
    monkeypatch.delenv("MAAS_DATA_BUCKET", raising=False)
    get_settings.cache_clear()
    try:
        handler = importlib.reload(importlib.import_module("functions.api.handler")).handler
        response = handler(http_api_event("GET", f"/v1/models/{SHADOW_MODEL}/rollouts"), LambdaContext())
    finally:
        get_settings.cache_clear()
    assert response["statusCode"] == 200
    (prod,) = orjson.loads(response["body"])["aliases"]
    check_report(prod["report"])


def test_a_report_past_the_request_budget_is_empty_and_says_so(rollout_store: LocalStore, capture_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.api.app import create_app
    from functions.console import rollouts

    release = threading.Event()

    def slow(*args: object) -> dict[str, object]:
        release.wait(60)  # a source that does not answer until the test ends: the route must not wait for it
        return {"requests": 99, "note": "late"}

    monkeypatch.setattr(rollouts, "shadow_summary", slow)
    monkeypatch.setenv(capture.ENV_CAPTURE_DIR, str(capture_dir))
    app = create_app(Settings(store=rollout_store.uri, request_budget_seconds=1))

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
            return await client.get(f"/v1/models/{SHADOW_MODEL}/rollouts")

    try:
        response = asyncio.run(get())
    finally:
        release.set()
    assert response.status_code == 200
    (prod,) = response.json()["aliases"]
    assert prod["report"]["requests"] == 0 and "request budget" in prod["report"]["note"]
    assert prod["shadow"]["candidate"] == "2"
