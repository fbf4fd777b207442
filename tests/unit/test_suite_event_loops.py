"""The suite keeps the event loop an in-process Lambda invocation leaves behind (tests/conftest.py), so that a
later ``asyncio.run`` replacing it never lets the garbage collector find it unclosed in another test."""

from __future__ import annotations

import asyncio
import gc

from tests.events import LambdaContext, http_api_event


def test_an_in_process_invocation_leaves_its_loop_on_the_main_thread() -> None:
    from mangum import Mangum

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    assert Mangum(app, lifespan="off")(http_api_event("GET", "/ping"), LambdaContext())["statusCode"] == 200


def test_asyncio_run_then_replaces_that_loop() -> None:
    async def answer() -> int:
        return 1

    assert asyncio.run(answer()) == 1


def test_a_collection_afterwards_finds_nothing_unclosed() -> None:
    gc.collect()  # an unclosed loop or socket found here is an error under the suite's warning filters
