"""Fixtures for the API: a store with the demo models plus a corrupted version, the app, a live uvicorn server."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from bench.soak import BROKEN_MODEL, BROKEN_VERSION, add_broken_version
from functions.api.app import create_app
from functions.api.front import create_front
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore

CORRUPT_MODEL, CORRUPT_VERSION = BROKEN_MODEL, BROKEN_VERSION  # cancer-mlp 2, one bit of its model file flipped


class FakeClock:
    """A monotonic clock the tests move by hand, to step past the alias TTL."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def serving_store(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """The quick-built demo models, plus cancer-mlp version 2 whose shipped model file has one flipped bit."""
    root = tmp_path_factory.mktemp("serving") / "store"
    shutil.copytree(built_store.root, root)
    add_broken_version(root)  # prod keeps serving the intact version 1
    return LocalStore(root)


@pytest.fixture(scope="session")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def settings(serving_store: LocalStore) -> Settings:
    return Settings(store=serving_store.uri, alias_ttl_seconds=30, max_instances=64, max_body_bytes=64 * 1024)


@pytest.fixture(scope="session")
def app(serving_store: LocalStore, settings: Settings, clock: FakeClock):  # type: ignore[no-untyped-def]
    """What Lambda and ``maas serve`` run: the fast front, with the FastAPI app behind it."""
    return create_front(settings, ModelCache(serving_store, settings, clock=clock))


@pytest.fixture(scope="session")
def fastapi_app(app):  # type: ignore[no-untyped-def]
    """The FastAPI app alone, over the same model cache as ``app``."""
    return create_app(app.settings, app.cache)


class LiveServer:
    """uvicorn serving the app on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def base_url(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with LiveServer(app) as url:
        yield url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


def model_path(store: LocalStore, name: str, version: str) -> Path:
    return store.root / "models" / name / "versions" / version


@pytest.fixture(scope="session")
def api_schema(base_url: str):  # type: ignore[no-untyped-def]
    import schemathesis

    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")
