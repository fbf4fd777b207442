"""The local-folder store: immutable writes, atomic publishing, no escape from the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.core.errors import AlreadyExistsError, NotFoundError
from functions.core.store import LocalStore, open_store


def _files(tmp_path: Path, **contents: bytes) -> dict[str, Path]:
    files = {}
    for name, data in contents.items():
        path = tmp_path / f"src-{name}"
        path.write_bytes(data)
        files[name.replace("_", ".")] = path
    return files


def test_put_new_refuses_to_overwrite(local_store: LocalStore) -> None:
    local_store.put_new("models/a/x.bin", b"first")
    with pytest.raises(AlreadyExistsError):
        local_store.put_new("models/a/x.bin", b"second")
    assert local_store.get_bytes("models/a/x.bin") == b"first"


def test_publish_writes_all_files_and_refuses_a_second_publish(local_store: LocalStore, tmp_path: Path) -> None:
    files = _files(tmp_path, model_onnx=b"m", manifest_json=b"{}")
    local_store.publish("models/a/versions/1", files, "manifest.json")
    assert local_store.list_children("models/a/versions/1") == ["manifest.json", "model.onnx"]
    other = _files(tmp_path, model_onnx=b"other", manifest_json=b"{}")
    with pytest.raises(AlreadyExistsError):
        local_store.publish("models/a/versions/1", other, "manifest.json")
    assert local_store.get_bytes("models/a/versions/1/model.onnx") == b"m"


def test_failed_publish_leaves_nothing_behind(local_store: LocalStore, tmp_path: Path) -> None:
    files = _files(tmp_path, model_onnx=b"m")
    files["manifest.json"] = tmp_path / "missing-file"
    with pytest.raises(FileNotFoundError):
        local_store.publish("models/a/versions/1", files, "manifest.json")
    assert local_store.list_children("models/a/versions") == []
    assert list((local_store.root / "models/a/versions").iterdir()) == []


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "models/../../x", "a\x00b", "a\\..\\b", ""])
def test_keys_cannot_escape_the_root(local_store: LocalStore, key: str) -> None:
    with pytest.raises(NotFoundError):
        local_store.get_bytes(key)


def test_missing_key_is_not_found(local_store: LocalStore) -> None:
    with pytest.raises(NotFoundError):
        local_store.get_bytes("models/none/manifest.json")
    assert local_store.list_children("models") == []


def test_open_store_parses_uris(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/s")
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "s").resolve()
