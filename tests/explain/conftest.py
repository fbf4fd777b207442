"""Explain fixtures: a model cache over the quick-built demo store, and the app served by uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from functions.api.app import create_app
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer


@pytest.fixture(scope="session")
def explain_settings(built_store: LocalStore) -> Settings:
    return Settings(store=built_store.uri, max_instances=64, explain_max_instances=8)


@pytest.fixture(scope="session")
def explain_cache(built_store: LocalStore, explain_settings: Settings) -> ModelCache:
    return ModelCache(built_store, explain_settings)


@pytest.fixture(scope="session")
def explain_url(explain_cache: ModelCache, explain_settings: Settings) -> Iterator[str]:
    with LiveServer(create_app(explain_settings, explain_cache)) as url:
        yield url


@pytest.fixture(scope="session")
def explain_client(explain_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=explain_url, timeout=60) as http:
        yield http
