"""SnapStart hooks, called locally: warm-up before the snapshot; new clients, aliases and seeds after a restore."""

from __future__ import annotations

import random

import numpy as np

from functions.api import snapstart
from functions.api.front import create_front
from functions.core import catalog
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore


def _front(store: LocalStore, preload: tuple[str, ...]):  # type: ignore[no-untyped-def]
    settings = Settings(store=store.uri, preload=preload, alias_ttl_seconds=3600)
    return create_front(settings, ModelCache(store, settings))


def test_before_snapshot_loads_and_warms_every_preload_model(serving_store: LocalStore) -> None:
    front = _front(serving_store, ("digits-cnn", "diabetes-mlp:1", "text-lstm@prod", "cancer-mlp"))
    warmed = snapstart.before_snapshot(front)
    assert [w.split(":")[0] for w in warmed] == ["digits-cnn", "diabetes-mlp", "text-lstm", "cancer-mlp"]
    assert {(m.name, m.version) for m in front.cache.loaded()} == {tuple(w.split(":")) for w in warmed}


def test_after_restore_recreates_the_store_rereads_aliases_and_reseeds(serving_store: LocalStore,
                                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    root = tmp_path / "store"
    shutil.copytree(serving_store.root, root)
    store = LocalStore(root)
    front = _front(store, ("cancer-mlp@prod",))
    snapstart.before_snapshot(front)
    assert front.cache.resolve("cancer-mlp", "prod") == "1"
    catalog.promote(store, "cancer-mlp", "2", "prod")  # moved while the snapshot slept
    assert front.cache.resolve("cancer-mlp", "prod") == "1"  # still the cached resolution
    old_store = front.cache.store
    random.seed(7)
    np.random.seed(7)
    before = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    snapstart.after_restore(front)
    assert front.cache.store is not old_store
    assert front.cache.resolve("cancer-mlp", "prod") == "2"
    assert (random.random(), np.random.random()) != before


def test_register_is_a_no_op_outside_lambda(serving_store: LocalStore) -> None:
    assert snapstart.register(_front(serving_store, ())) is False
