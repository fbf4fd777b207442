"""Shared fixtures: a moto S3 server over real HTTP, and demo models built once per session in quick mode."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.core.store import LocalStore, S3Store

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

DEMO_RECIPES = ["digits-cnn", "cancer-mlp", "diabetes-mlp", "text-lstm"]
_MAIN_THREAD_LOOPS: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(scope="session", autouse=True)
def _main_thread_loops_closed_at_the_end() -> Iterator[None]:
    """Mangum runs each in-process Lambda invocation on the main thread's current event loop and, as Lambda
    wants, never closes it. A later ``asyncio.run`` replaces that loop, and the garbage collector would then find
    it unclosed in the middle of whatever test runs (a ResourceWarning, an error under this suite's filters).
    Each such loop is kept here after the test that made it and closed once the session ends."""
    yield
    for loop in _MAIN_THREAD_LOOPS:
        if not loop.is_running() and not loop.is_closed():
            loop.close()


@pytest.fixture(autouse=True)
def _keep_the_main_thread_loop() -> Iterator[None]:
    yield
    if threading.current_thread() is not threading.main_thread():
        return
    loop = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_closed() and loop not in _MAIN_THREAD_LOOPS:
        _MAIN_THREAD_LOOPS.append(loop)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's standalone server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh bucket on the moto server."""
    import boto3

    name = f"maas-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(moto_endpoint: str, s3_bucket: str) -> S3Store:
    return S3Store(s3_bucket, "team/store", endpoint_url=moto_endpoint)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """Every demo recipe built once in quick mode into one local store."""
    from model_build.pipeline import build
    from model_build.recipes import load_recipe
    from tests.pinned import ENV_TEST_VARIANT, pin_variant

    store = LocalStore(tmp_path_factory.mktemp("built") / "store")
    for name in DEMO_RECIPES:
        build(load_recipe(name), store, quick=True)
    if (variant := os.environ.get(ENV_TEST_VARIANT)) and pin_variant(store, variant) != sorted(DEMO_RECIPES):
        raise RuntimeError(f"{ENV_TEST_VARIANT}={variant}: not every demo model shipped that variant")
    return store
