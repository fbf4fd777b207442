"""The request path: no FastAPI on the fast routes, health without the store, a hung store bounded by the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.api.front import create_front
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer
from tests.api.samples import CANCER_ROW, DIABETES_ROW, DIGIT_ZERO

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from functions.api.handler import handler
from tests.events import LambdaContext, http_api_event
body = json.dumps({"instances": [DIGIT]}).encode()
infer = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": DIGIT}]}).encode()
statuses = [handler(http_api_event(*call), LambdaContext())["statusCode"] for call in [
    ("POST", "/v1/models/digits-cnn/predict", body), ("POST", "/v1/models/digits-cnn/versions/1/predict", body),
    ("POST", "/v2/models/digits-cnn/infer", infer), ("POST", "/v2/models/digits-cnn/versions/1/infer", infer),
    ("POST", "/v1/models/digits-cnn/predict", b"{"), ("GET", "/v2/health/live", None),
    ("GET", "/v2/health/ready", None)]]
print(json.dumps({"statuses": statuses, "modules": sorted(m.split(".")[0] for m in sys.modules)}))
""".replace("DIGIT", json.dumps(DIGIT_ZERO))


@pytest.fixture(scope="module")
def probe(serving_store: LocalStore) -> dict[str, Any]:
    """Predictions and health checks through the Lambda handler in a fresh interpreter."""
    env = {**os.environ, "MAAS_STORE": serving_store.uri, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_fast_routes_answer_without_fastapi_or_starlette(probe: dict[str, Any]) -> None:
    assert probe["statuses"] == [200, 200, 200, 200, 400, 200, 200]
    assert {"fastapi", "starlette"}.isdisjoint(probe["modules"])


def test_fast_routes_answer_without_pydantic(probe: dict[str, Any]) -> None:
    assert "pydantic" not in probe["modules"]


class HangingStore(LocalStore):
    """A real local store whose reads block while ``hung`` is set, like an S3 endpoint that stopped answering.

    A stand-in for the network fault (the fault-injection suite stalls moto's server itself); it lets this test
    release the hang deterministically at the end.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.hung = threading.Event()
        self.release = threading.Event()
        self.listings = 0

    def _wait(self) -> None:
        if self.hung.is_set():
            self.release.wait(60)

    def get_bytes(self, key: str) -> bytes:
        self._wait()
        return super().get_bytes(key)

    def list_children(self, prefix: str) -> list[str]:
        self.listings += 1
        self._wait()
        return super().list_children(prefix)


@pytest.fixture(scope="module")
def hanging(serving_store: LocalStore) -> Iterator[tuple[HangingStore, str]]:
    store = HangingStore(serving_store.root)
    settings = Settings(store=serving_store.uri, alias_ttl_seconds=600)
    front = create_front(settings, ModelCache(store, settings))
    front.service.budget = 1.0
    with LiveServer(front) as url:
        yield store, url
    store.release.set()


def test_a_hung_store_gets_503_with_retry_after_while_cached_models_and_live_keep_answering(
        hanging: tuple[HangingStore, str], serving_store: LocalStore) -> None:
    store, url = hanging
    with httpx.Client(base_url=url, timeout=20) as http:
        warm = http.post("/v1/models/digits-cnn/predict", json={"instances": [DIGIT_ZERO]})
        assert warm.status_code == 200
        store.hung.set()
        try:
            cold = http.post("/v1/models/diabetes-mlp/predict", json={"instances": [DIABETES_ROW]})
            also_cold = http.post("/v2/models/cancer-mlp/versions/1/infer", json={"inputs": [
                {"name": "features", "shape": [1, 30], "datatype": "FP32", "data": CANCER_ROW}]})
            cached = http.post("/v1/models/digits-cnn/predict", json={"instances": [DIGIT_ZERO]})
            live = http.get("/v2/health/live")
        finally:
            store.hung.clear()
            store.release.set()
    for answer in (cold, also_cold):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"].isdigit()
        assert answer.json()["code"] == "store_timeout"
        assert str(serving_store.root) not in answer.text and "file://" not in answer.text
    assert cached.status_code == 200
    assert live.status_code == 200 and live.json() == {"live": True}


def test_ready_is_cached_and_says_only_ready(hanging: tuple[HangingStore, str]) -> None:
    store, url = hanging
    with httpx.Client(base_url=url, timeout=20) as http:
        answers = [http.get("/v2/health/ready") for _ in range(3)]
    assert all(a.status_code == 200 and a.json() == {"ready": True} for a in answers)
    listings = store.listings
    with httpx.Client(base_url=url, timeout=20) as http:
        assert http.get("/v2/health/ready").json() == {"ready": True}
    assert store.listings == listings


def test_live_never_touches_the_store(hanging: tuple[HangingStore, str]) -> None:
    store, url = hanging
    listings = store.listings
    with httpx.Client(base_url=url, timeout=20) as http:
        assert http.get("/v2/health/live").status_code == 200
    assert store.listings == listings
