"""minilm-embed built once per session (quick mode) into its own local store."""

from __future__ import annotations

import pytest

from functions.core.manifest import Manifest
from functions.core.store import LocalStore


@pytest.fixture(scope="session")
def minilm_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, Manifest]:
    from model_build.pretrained import build_pretrained
    from model_build.recipes import load_recipe

    store = LocalStore(tmp_path_factory.mktemp("minilm") / "store")
    manifest = build_pretrained(load_recipe("minilm-embed"), store, quick=True)  # type: ignore[arg-type]
    return store, manifest
