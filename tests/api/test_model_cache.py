"""The model cache over S3 (moto server): download once to the disk cache, re-verify, preload, LRU budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.core.errors import ModelUnavailableError
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore, S3Store


@pytest.fixture
def s3_with_models(built_store: LocalStore, s3_store: S3Store) -> S3Store:
    for name in ("diabetes-mlp", "text-lstm"):
        prefix = f"models/{name}/versions/1"
        folder = built_store.root / prefix
        s3_store.publish(prefix, {p.name: p for p in folder.iterdir()}, "manifest.json")
    return s3_store


def test_s3_models_are_cached_on_disk_and_reverified(s3_with_models: S3Store, tmp_path: Path) -> None:
    settings = Settings(store=s3_with_models.uri, cache_dir=str(tmp_path / "cache"))
    model = ModelCache(s3_with_models, settings).get("text-lstm")
    cached = {p.name for p in (tmp_path / "cache").iterdir()}
    entry = model.manifest.file(str(model.variant.file))
    assert entry.sha256 in cached
    assert model.manifest.file("vocab.json").sha256 in cached
    assert not any(name.endswith(".part") for name in cached)

    cache_file = tmp_path / "cache" / entry.sha256
    corrupted = bytearray(cache_file.read_bytes())
    corrupted[100] ^= 0xFF
    cache_file.write_bytes(bytes(corrupted))
    again = ModelCache(s3_with_models, settings).get("text-lstm")  # a new container with the same /tmp
    assert again.version == "1"
    assert cache_file.read_bytes() != bytes(corrupted)  # fetched again and replaced


def test_corrupted_object_in_s3_is_refused(s3_with_models: S3Store, tmp_path: Path) -> None:
    settings = Settings(store=s3_with_models.uri, cache_dir=str(tmp_path / "cache"))
    manifest = ModelCache(s3_with_models, settings).manifest("diabetes-mlp", "1")
    key = f"models/diabetes-mlp/versions/1/{manifest.variant(manifest.selected['cpu']).file}"
    data = s3_with_models.get_bytes(key)
    s3_with_models.put_bytes(key, data[:-1])
    with pytest.raises(ModelUnavailableError, match="size"):
        ModelCache(s3_with_models, settings).get("diabetes-mlp")
    sha = manifest.file(key.rsplit("/", 1)[1]).sha256
    assert [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(sha)] == []


def test_preload_and_memory_budget(built_store: LocalStore) -> None:
    cache = ModelCache(built_store, Settings(store=built_store.uri, model_memory_mb=1))
    cache.preload(("digits-cnn", "cancer-mlp:1", "diabetes-mlp@prod"))
    loaded = [m.name for m in cache.loaded()]
    assert loaded[-1] == "diabetes-mlp"
    assert sum(m.size_bytes for m in cache.loaded()) <= 1024 * 1024 or len(loaded) == 1
    first = cache.get("diabetes-mlp")
    assert cache.get("diabetes-mlp") is first  # one load per version per process


def test_a_remembered_load_failure_is_a_fresh_error_each_time(serving_store: LocalStore) -> None:
    """Re-raising one remembered exception would chain every request's frames onto its traceback."""
    from tests.api.conftest import CORRUPT_MODEL, CORRUPT_VERSION

    cache = ModelCache(serving_store, Settings(store=serving_store.uri))
    errors = []
    for _ in range(3):
        with pytest.raises(ModelUnavailableError) as caught:
            cache.get(CORRUPT_MODEL, CORRUPT_VERSION)
        errors.append(caught.value)
    assert len({id(e) for e in errors}) == 3
    assert len({e.message for e in errors}) == 1 and "cannot be loaded" in errors[0].message
    depths = []
    for error in errors:
        frames, tb = 0, error.__traceback__
        while tb is not None:
            frames, tb = frames + 1, tb.tb_next
        depths.append(frames)
    assert depths[0] == depths[1] == depths[2]  # nothing carried over from the earlier requests
