"""Fault injection: the model store (moto's server behind a loopback proxy) stopped, hung or slow.

Asserts statuses, not timings: models in memory keep serving, alias routes answer their last known target,
what needs the store gets a 503 from the store budget (its error code and Retry-After), and everything recovers
by itself when the store is back. That every store call ends within the budget is the client configuration's
arithmetic (``call_bounds``); how long each answer takes is measured by ``bench/faults.py``, not here.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from functions.api.app import create_app
from functions.batch.objects import InputObject, data_bucket_factory
from functions.batch.process import Processor
from functions.core.errors import StoreUnavailableError
from functions.core.model_cache import ModelCache
from functions.core.store import S3Store, call_bounds
from tests.reliability.proxy import Mode
from tests.reliability.rig import ROUTES, ROW, Rig, fault_rig, request

HTTP_TIMEOUT = 60.0  # the live-server client's own limit: a hang guard, not a speed target
WAIT_BUDGET = 30.0  # a store budget no machine's health answer comes near: the order check needs no timing


@pytest.fixture(scope="module")
def rig(moto_endpoint: str) -> Iterator[Rig]:
    with fault_rig(moto_endpoint) as rig:
        yield rig


EXPECTED: dict[Mode, dict[str, set[int]]] = {
    "stopped": {"version route, model not loaded": {503}},
    "hung": {"version route, model not loaded": {503}},
    "slow": {},
}


def test_budget_arithmetic_keeps_one_call_within_the_budget() -> None:
    for budget in (3.0, 10.0, 20.0, 25.0):
        assert call_bounds(budget).worst_case_seconds <= budget + 1e-9
    assert call_bounds(20.0).worst_case_seconds + 9 <= 29  # the API function's timeout, with margin


@pytest.mark.parametrize("mode", ["stopped", "hung", "slow"])
def test_store_fault(rig: Rig, mode: Mode) -> None:
    rig.proxy.set_mode(mode)
    rig.clock.now += 60  # past the alias and listing TTL: both are re-read in the background
    stale_before = rig.cache.stale_answers
    try:
        for route in ROUTES:
            response = request(rig, route, mode)
            status = response.status_code
            allowed = EXPECTED[mode].get(route, {200})
            assert status in allowed, (mode, route, status)
            if status == 503:  # answered by the store budget, not by some other failure
                assert response.json()["code"] in {"store_unavailable", "store_timeout"}, response.text
                assert response.headers["retry-after"].isdigit()
        assert rig.client.get("/v1/models").json()["stale"] is True  # the last known listing, marked
        assert rig.cache.alias_targets.settle(HTTP_TIMEOUT) and rig.cache.listings.settle(HTTP_TIMEOUT)
        if mode != "slow":  # the refreshes failed: the answers from now on are counted as stale
            failures = rig.cache.alias_targets.refresh_failures
            assert request(rig, "alias route, model in memory (TTL expired)", mode).status_code == 200
            assert rig.cache.stale_answers > stale_before
            assert rig.cache.alias_targets.refresh_failures == failures  # backing off: no new refresh
    finally:
        rig.proxy.set_mode("pass")
    # recovery needs nothing: a store outage was not remembered as a broken version
    assert rig.client.post(f"/v1/models/cold-{mode}/versions/1/predict", json=ROW).status_code == 200
    rig.clock.now += rig.cache.settings.alias_ttl_seconds  # one TTL: the backoff is over, a refresh starts
    assert rig.client.get("/v1/models").status_code == 200
    assert rig.cache.listings.settle(HTTP_TIMEOUT)
    assert rig.client.get("/v1/models").json()["stale"] is False


def test_batch_input_is_retried_not_failed_while_the_store_hangs(rig: Rig) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=rig.moto)
    s3.put_object(Bucket=rig.bucket, Key="inputs/later/x.csv", Body=b"a,b\n1,2\n")
    head = s3.head_object(Bucket=rig.bucket, Key="inputs/later/x.csv")
    item = InputObject(rig.bucket, "inputs/later/x.csv", str(head["ETag"]).strip('"'), int(head["ContentLength"]))
    processor = Processor(rig.cache, data_bucket_factory(rig.moto))
    rig.proxy.set_mode("hung")
    try:
        with pytest.raises(StoreUnavailableError):  # gave up within the budget; the message goes back to the queue
            processor.process(item)
        listed = s3.list_objects_v2(Bucket=rig.bucket, Prefix="outputs/")
        assert listed.get("KeyCount", 0) == 0  # no failure report for a store outage
    finally:
        rig.proxy.set_mode("pass")
    assert processor.process(item) == "done"


def test_live_answers_while_a_request_waits_on_a_hung_store(rig: Rig) -> None:
    """Ordered, not timed: the predict request's budget is long (WAIT_BUDGET), so it is still waiting on the hung
    store when the health route has answered, however slow this machine; releasing the store then ends it."""
    from tests.api.conftest import LiveServer

    settings = dataclasses.replace(rig.cache.settings, request_budget_seconds=WAIT_BUDGET)
    store = S3Store(rig.bucket, "store", endpoint_url=rig.proxy.endpoint, budget_seconds=WAIT_BUDGET)
    answers: list[int] = []
    with LiveServer(create_app(settings, ModelCache(store, settings))) as url:
        rig.proxy.set_mode("hung")
        waiting = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{url}/v1/models/later/versions/1/predict", json=ROW, timeout=HTTP_TIMEOUT).status_code))
        try:
            waiting.start()
            deadline = time.monotonic() + HTTP_TIMEOUT
            while rig.proxy.open_connections == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # until the predict request is waiting on the hung store
            assert rig.proxy.open_connections > 0
            assert httpx.get(f"{url}/v2/health/live", timeout=HTTP_TIMEOUT).status_code == 200
            assert waiting.is_alive() and not answers  # answered while the predict still waits
        finally:
            rig.proxy.set_mode("pass")  # closes the hung connections: the predict's store call ends now
            waiting.join()
    assert answers and answers[0] in {200, 503}  # an answer, not a hang or a 500
