"""The S3 store against moto's standalone server over HTTP."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from functions.core import store as store_module
from functions.core.errors import AlreadyExistsError, NotFoundError, StoreUnavailableError
from functions.core.store import S3Store


def _files(tmp_path: Path, sizes: dict[str, int]) -> dict[str, Path]:
    files = {}
    for name, size in sizes.items():
        path = tmp_path / name
        path.write_bytes(bytes(i % 251 for i in range(size)))
        files[name] = path
    return files


def test_put_new_is_conditional(s3_store: S3Store) -> None:
    s3_store.put_new("models/a/versions/1/x.bin", b"first")
    with pytest.raises(AlreadyExistsError):
        s3_store.put_new("models/a/versions/1/x.bin", b"second")
    assert s3_store.get_bytes("models/a/versions/1/x.bin") == b"first"


def test_publish_and_list(s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.publish("models/a/versions/1", _files(tmp_path, {"m.onnx": 10, "manifest.json": 2}), "manifest.json")
    assert s3_store.list_children("models") == ["a"]
    assert s3_store.list_children("models/a/versions") == ["1"]
    assert s3_store.list_children("models/a/versions/1") == ["m.onnx", "manifest.json"]
    with pytest.raises(AlreadyExistsError):
        s3_store.publish("models/a/versions/1", _files(tmp_path, {"m.onnx": 11, "manifest.json": 2}), "manifest.json")
    assert len(s3_store.get_bytes("models/a/versions/1/m.onnx")) == 10


def test_objects_live_under_the_store_prefix(s3_store: S3Store, moto_endpoint: str) -> None:
    s3_store.put_bytes("models/a/aliases/prod.json", b"{}")
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_endpoint)
            .list_objects_v2(Bucket=s3_store.bucket)["Contents"]]
    assert keys == ["team/store/models/a/aliases/prod.json"]


def test_multipart_upload_is_conditional_too(s3_store: S3Store, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(store_module, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    files = _files(tmp_path, {"big.onnx": 11 * 1024 * 1024, "manifest.json": 2})
    seen: list[int] = []
    s3_store.publish("models/a/versions/1", files, "manifest.json", progress=seen.append)
    assert s3_store.get_bytes("models/a/versions/1/big.onnx") == files["big.onnx"].read_bytes()
    assert sum(seen) == 11 * 1024 * 1024 + 2
    assert len(seen) == 4  # three parts and the manifest
    with pytest.raises(AlreadyExistsError):
        s3_store._upload_new("models/a/versions/1/big.onnx", files["big.onnx"], None)


def test_failed_publish_removes_what_it_wrote(s3_store: S3Store, tmp_path: Path) -> None:
    s3_store.put_new("models/a/versions/1/manifest.json.taken", b"")  # unrelated object survives
    files = _files(tmp_path, {"m.onnx": 10})
    files["manifest.json"] = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError):
        s3_store.publish("models/a/versions/2", files, "manifest.json")
    assert s3_store.list_children("models/a/versions") == ["1"]
    assert not s3_store.exists("models/a/versions/2/m.onnx")


def test_missing_key_and_missing_bucket(s3_store: S3Store, moto_endpoint: str) -> None:
    with pytest.raises(NotFoundError):
        s3_store.get_bytes("models/none/versions/1/manifest.json")
    assert not s3_store.exists("models/none/versions/1/manifest.json")
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        S3Store("no-such-bucket-here", endpoint_url=moto_endpoint).list_children("models")


def test_unreachable_endpoint_is_store_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        S3Store("bucket", endpoint_url=f"http://127.0.0.1:{port}").get_bytes("models/x")
