"""Stale-while-revalidate under a hung store, against a real server (uvicorn on loopback, the app ``maas serve``
runs) with the default request budget: 32 clients on an alias route for 30 s while the store (moto's S3 server
behind the fault proxy) accepts connections and never answers.

Asserted structurally, never on timings: every answer is 200 from the last known target; no request went to
the store (the server's own counters: nothing ran off the event loop, nothing hit the budget); one refresh per
key at a time (its peak, and the connections the hung store received); the listing answers the last one read,
marked stale; and once the store is back, an alias move made during the hang is served after at most one TTL
of the server's clock. The latencies (p50/p99, healthy vs hung) are measured by ``bench/faults.py``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from functions.api.front import Front, create_front
from functions.core import catalog
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import MAX_ATTEMPTS, LocalStore, S3Store
from tests.api.conftest import LiveServer
from tests.reliability.artifacts import model_bytes, version_files
from tests.reliability.proxy import FaultProxy

CLIENTS = 32
SOAK_SECONDS = float(os.environ.get("MAAS_SOAK_SECONDS", "30"))
HANG_GUARD = 120.0  # the clients' own limit: a hang guard, not a speed target
ROW = {"instances": [[1.0, 2.0]]}
ROUTE = "/v1/models/soak/predict"


class ShiftedClock:
    """The server's monotonic clock, which the test can move forward by whole TTLs."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@dataclass
class Live:
    front: Front
    url: str
    proxy: FaultProxy
    direct: S3Store
    clock: ShiftedClock

    @property
    def cache(self) -> ModelCache:
        return self.front.cache

    @property
    def ttl(self) -> float:
        return self.front.settings.alias_ttl_seconds


@pytest.fixture(scope="module")
def live(moto_endpoint: str) -> Iterator[Live]:
    import boto3

    bucket = f"maas-swr-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    direct = S3Store(bucket, "store", endpoint_url=moto_endpoint)
    for version in ("1", "2"):
        for key, data in version_files("soak", model_bytes(), version=version).items():
            direct.put_bytes(f"{catalog.version_prefix('soak', version)}/{key}", data)
    catalog.promote(direct, "soak", "1", "prod")
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    settings = Settings(store=direct.uri, s3_endpoint_url=proxy.endpoint,
                        cache_dir=f"/tmp/maas-swr-{os.getpid()}-{bucket}")  # the default budget and TTL
    clock = ShiftedClock()
    store = S3Store(bucket, "store", endpoint_url=proxy.endpoint, budget_seconds=settings.request_budget_seconds)
    front = create_front(settings, ModelCache(store, settings, clock=clock))
    try:
        with LiveServer(front) as url:
            assert httpx.post(url + ROUTE, json=ROW, timeout=HANG_GUARD).json()["version"] == "1"
            assert httpx.get(f"{url}/v1/models", timeout=HANG_GUARD).json()["stale"] is False
            yield Live(front, url, proxy, direct, clock)
    finally:
        proxy.close()


async def _soak(url: str, seconds: float) -> list[tuple[int, str | None]]:
    answers: list[tuple[int, str | None]] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async def user(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            response = await client.post(url + ROUTE, json=ROW)
            answers.append((response.status_code, response.json().get("version")))

    async with httpx.AsyncClient(timeout=HANG_GUARD, limits=limits) as client:
        await asyncio.gather(*(user(client) for _ in range(CLIENTS)))
    return answers


def _version(live: Live) -> str:
    response = httpx.post(live.url + ROUTE, json=ROW, timeout=HANG_GUARD)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def test_a_hung_store_holds_no_request_and_a_move_made_meanwhile_is_served_within_one_ttl(live: Live) -> None:
    service, aliases, listings = live.front.service, live.cache.alias_targets, live.cache.listings
    off_loop, timeouts, stale = service.off_loop_calls, service.budget_timeouts, live.cache.stale_answers
    listed = httpx.get(f"{live.url}/v1/models", timeout=HANG_GUARD).json()["models"]
    live.proxy.set_mode("hung")
    try:
        live.clock.offset += live.ttl + 1  # the alias target and the listing have expired
        catalog.promote(live.direct, "soak", "2", "prod")  # moved during the hang, straight to the store
        answers = asyncio.run(_soak(live.url, SOAK_SECONDS))
        listing = httpx.get(f"{live.url}/v1/models", timeout=HANG_GUARD).json()

        assert answers and Counter(answers) == {(200, "1"): len(answers)}  # every answer, the last known target
        assert (service.off_loop_calls, service.budget_timeouts) == (off_loop, timeouts)  # nobody waited
        assert listing == {"models": listed, "stale": True}
        assert aliases.refreshes >= 1 and aliases.peak_reads == 1 and listings.peak_reads == 1  # single flight
        assert 1 <= live.proxy.open_connections <= MAX_ATTEMPTS * (aliases.refreshes + listings.refreshes)

        live.proxy.set_mode("stopped")  # cut the hung calls: the refreshes in flight fail now
        assert aliases.settle(HANG_GUARD) and listings.settle(HANG_GUARD)
        assert aliases.refresh_failures >= 1 and listings.refresh_failures >= 1
        assert _version(live) == "1" and live.cache.stale_answers > stale  # answered stale, and counted
    finally:
        live.proxy.set_mode("pass")

    live.clock.offset += live.ttl  # one TTL after the store is back: every backoff (capped at a TTL) is over
    versions = []
    for _ in range(3):  # the first answer may still be the stale target; its refresh then brings the move
        versions.append(_version(live))
        if versions[-1] == "2":
            break
        assert aliases.settle(HANG_GUARD)
    assert versions[-1] == "2", versions
    for _ in range(3):
        listing = httpx.get(f"{live.url}/v1/models", timeout=HANG_GUARD).json()
        if not listing["stale"]:
            break
        assert listings.settle(HANG_GUARD)
    assert listing["stale"] is False and listing["models"][0]["aliases"] == {"prod": "2"}
    assert service.budget_timeouts == timeouts


class GatedStore(LocalStore):
    """A local store whose reads block while the gate is closed, like S3 hanging; counts reads held there."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0

    def get_bytes(self, key: str) -> bytes:
        if not self.gate.is_set():
            self.held += 1
            self.gate.wait(HANG_GUARD)
            self.held -= 1
        return super().get_bytes(key)


def test_in_the_lambda_handler_the_answer_never_waits_for_the_refresh_it_started(tmp_path: Path) -> None:
    """Invocations through Mangum as in Lambda: the one that finds the target expired returns while its refresh
    is provably still blocked in the store, the next one starts no second read, and once the read completes
    the invocation after it serves the new target."""
    from mangum import Mangum

    from tests.events import LambdaContext, http_api_event

    store = GatedStore(tmp_path / "store")
    for version in ("1", "2"):
        for key, data in version_files("soak", model_bytes(), version=version).items():
            store.put_bytes(f"{catalog.version_prefix('soak', version)}/{key}", data)
    catalog.promote(store, "soak", "1", "prod")
    settings = Settings(store=store.uri)
    clock = ShiftedClock()
    front = create_front(settings, ModelCache(store, settings, clock=clock))
    handler = Mangum(front, lifespan="off")

    def invoke() -> str:
        answer = handler(http_api_event("POST", ROUTE, orjson.dumps(ROW)), LambdaContext())
        assert answer["statusCode"] == 200, answer
        return str(orjson.loads(answer["body"])["version"])

    assert invoke() == "1"
    catalog.promote(store, "soak", "2", "prod")
    store.gate.clear()
    try:
        clock.offset += settings.alias_ttl_seconds
        assert invoke() == "1"  # answered although the store read of the refresh it started cannot complete
        deadline = time.monotonic() + HANG_GUARD
        while store.held == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # until that refresh thread is blocked in the store
        assert store.held == 1
        assert invoke() == "1" and store.held == 1  # single flight: the next invocation started no second read
        assert front.cache.alias_targets.refreshes == 1
    finally:
        store.gate.set()
    assert front.cache.alias_targets.settle(HANG_GUARD) and front.cache.alias_targets.peak_reads == 1
    assert invoke() == "2"
