"""The web console's version page names an imported version's source (file, kind, sha256, reference runtime),
in headless Chromium like the console's own browser tests (skipped without chromium on PATH)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from functions.api.front import create_front
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer
from tests.console.test_console_browser import CHROMIUM, Console
from tests.console.test_console_browser import browser as browser  # the shared Chromium fixture
from tests.importers.conftest import Sources

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def console_base(imported: LocalStore) -> Iterator[str]:
    settings = Settings(store=imported.uri)
    with LiveServer(create_front(settings, ModelCache(imported, settings))) as url:
        yield url


def test_version_page_shows_where_an_imported_model_came_from(browser: object, console_base: str,
                                                              sources: Sources) -> None:
    console = Console(browser, console_base)
    page = console.open("#/models/iris/versions/1")
    text = page.locator("main").inner_text()
    digest = hashlib.sha256(sources["iris.onnx"].read_bytes()).hexdigest()
    assert "Imported from" in text and "iris.onnx (onnx)" in text
    assert digest[:16] in text and "onnxruntime" in text
    console.shot("imported-version")
    console.check()
