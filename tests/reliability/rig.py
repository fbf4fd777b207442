"""The store-fault rig: model versions on moto's S3 server, reached through a loopback fault proxy.

Shared by the fault tests (``test_store_faults``, which assert statuses) and the fault bench
(``bench/faults.py``, which measures how long each answer takes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from functions.api.app import create_app
from functions.core.catalog import alias_key, version_prefix
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import S3Store
from tests.reliability.artifacts import model_bytes, version_files
from tests.reliability.proxy import FaultProxy

BUDGET = 3.0
ROW = {"instances": [[1.0, 2.0]]}
MODELS = ("loaded", "cold-stopped", "cold-hung", "cold-slow", "later")
ROUTES = {
    "alias route, model in memory (TTL expired)": ("post", "/v1/models/loaded/predict"),
    "version route, model in memory": ("post", "/v1/models/loaded/versions/1/predict"),
    "version route, model not loaded": ("post", "/v1/models/cold-{mode}/versions/1/predict"),
    "model list (known)": ("get", "/v1/models"),
    "model metadata v1 (known)": ("get", "/v1/models/loaded"),
    "model metadata v2 (known)": ("get", "/v2/models/loaded"),
    "health live": ("get", "/v2/health/live"),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    proxy: FaultProxy
    client: TestClient
    cache: ModelCache
    clock: Clock
    bucket: str
    moto: str


@contextlib.contextmanager
def fault_rig(moto_endpoint: str) -> Iterator[Rig]:
    """Publish the rig's models, then serve them through the proxy with a ``BUDGET``-second store budget; the
    model ``loaded`` has answered once (it is in memory) and the model list has been read once."""
    import boto3

    bucket = f"maas-faults-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    direct = S3Store(bucket, "store", endpoint_url=moto_endpoint)
    for name in MODELS:
        for key, data in version_files(name, model_bytes()).items():
            direct.put_bytes(f"{version_prefix(name, '1')}/{key}", data)
    direct.put_bytes(alias_key("loaded", "prod"), b'{"version": "1", "previous": [], "updated_at": "t"}')
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    settings = Settings(store=direct.uri, s3_endpoint_url=proxy.endpoint, request_budget_seconds=BUDGET,
                        alias_ttl_seconds=30, cache_dir=f"/tmp/maas-faults-{os.getpid()}-{bucket}")
    clock = Clock()
    cache = ModelCache(S3Store(bucket, "store", endpoint_url=proxy.endpoint, budget_seconds=BUDGET), settings,
                       clock=clock)
    try:
        with TestClient(create_app(settings, cache), raise_server_exceptions=False) as client:
            assert client.post("/v1/models/loaded/predict", json=ROW).status_code == 200
            assert client.get("/v1/models").json()["stale"] is False  # the listing is known
            yield Rig(proxy, client, cache, clock, bucket, moto_endpoint)
    finally:
        proxy.close()


def request(rig: Rig, route: str, mode: str) -> Any:
    """One request on ``route`` of ``ROUTES`` (``{mode}`` filled in); the test client's response."""
    method, url = ROUTES[route]
    url = url.format(mode=mode)
    return rig.client.post(url, json=ROW) if method == "post" else rig.client.get(url)
