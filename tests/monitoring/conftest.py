"""A copy of the quick-built demo store with an extra cancer-mlp version built before profiles existed."""

from __future__ import annotations

import shutil

import orjson
import pytest

from functions.core import catalog
from functions.core.store import LocalStore

OLD_VERSION = "2"


@pytest.fixture(scope="session")
def monitor_store(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    root = tmp_path_factory.mktemp("monitor") / "store"
    shutil.copytree(built_store.root, root)
    versions = root / "models" / "cancer-mlp" / "versions"
    shutil.copytree(versions / "1", versions / OLD_VERSION)
    (versions / OLD_VERSION / "profile.json").unlink()
    manifest = orjson.loads((versions / OLD_VERSION / "manifest.json").read_bytes())
    manifest["version"] = OLD_VERSION
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "profile.json"]
    (versions / OLD_VERSION / "manifest.json").write_bytes(orjson.dumps(manifest))
    store = LocalStore(root)
    catalog.promote(store, "cancer-mlp", "1", "prod")  # the old version stays reachable by number
    return store
