"""The model store: a small key/value interface with a local-folder and an S3 implementation.

Keys are relative POSIX paths such as ``models/digits-cnn/versions/3/manifest.json``. Writes of immutable
objects never overwrite (``put_new``); a version is published with ``publish``, which writes the commit
object (the manifest) last so a reader never sees a half-written version.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from functions.core.errors import AlreadyExistsError, NotFoundError, StoreUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Progress = Callable[[int], None]
"""Called with the number of bytes just transferred."""

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024

log = logging.getLogger("maas.store")

# Error messages name the key (relative to the store root) but never the store URI, bucket, endpoint or host
# path: those go to this module's log, so API error bodies built from the messages reveal nothing.


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root (absolute, '..', backslashes, NUL)."""
    path = PurePosixPath(key)
    if not key or "\x00" in key or "\\" in key or path.is_absolute() or ".." in path.parts:
        raise NotFoundError(f"invalid store key {key!r}")
    return key


class Store(Protocol):
    """What the rest of the project needs from a model store."""

    uri: str

    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes, or raise NotFoundError."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a mutable object (aliases), replacing any previous content."""

    def put_new(self, key: str, data: bytes) -> None:
        """Write an immutable object; raise AlreadyExistsError if the key exists."""

    def download(self, key: str, dest: Path) -> None:
        """Copy the object to a local file, or raise NotFoundError."""

    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    def list_children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix/`` (files and folders), sorted."""

    def publish(self, prefix: str, files: Mapping[str, Path], commit: str, progress: Progress | None = None) -> None:
        """Write ``files`` (relative name -> local path) under ``prefix`` without overwriting anything.

        ``commit`` names the file written last; its presence marks the tree as complete. On any failure
        nothing of this call remains visible.
        """


class LocalStore:
    """A store in a local folder; publishing stages into a temporary folder and renames it into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _not_found(self.uri, key) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.urandom(16).hex()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def put_new(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.urandom(16).hex()}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # atomic create-if-absent
        except FileExistsError:
            raise AlreadyExistsError(f"{key} already exists in {self.uri}") from None
        finally:
            tmp.unlink()

    def download(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise _not_found(self.uri, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        import shutil  # write and copy paths only: off the serving cold path

        shutil.copyfile(src, dest)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_children(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def publish(self, prefix: str, files: Mapping[str, Path], commit: str, progress: Progress | None = None) -> None:
        final = self._path(prefix)
        if final.exists():
            raise AlreadyExistsError(f"{prefix} already exists in {self.uri}")
        final.parent.mkdir(parents=True, exist_ok=True)
        import shutil
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
        try:
            for name, src in files.items():
                dest = staging / check_key(name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                if progress:
                    progress(src.stat().st_size)
            try:
                staging.rename(final)  # fails if `final` appeared meanwhile and is not empty
            except OSError:
                raise AlreadyExistsError(f"{prefix} already exists in {self.uri}") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging)


class S3Store:
    """A store under ``s3://bucket/prefix``: conditional puts for immutable objects, multipart for large files."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 client: S3Client | None = None, budget_seconds: float | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = client or _make_s3_client(endpoint_url, budget_seconds)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def get_bytes(self, key: str) -> bytes:
        with _translate_errors(self.uri, key):
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            return body

    def put_bytes(self, key: str, data: bytes) -> None:
        with _translate_errors(self.uri, key):
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_new(self, key: str, data: bytes) -> None:
        with _translate_errors(self.uri, key):
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")

    def download(self, key: str, dest: Path, if_match: str | None = None) -> None:
        """Stream the object to ``dest``; with ``if_match``, only the version with that ETag."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _translate_errors(self.uri, key):
            if if_match is None:
                self._client.download_file(self.bucket, self._key(key), str(dest))
                return
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key), IfMatch=if_match)["Body"]
            with dest.open("wb") as f:
                for block in body.iter_chunks(1 << 20):
                    f.write(block)

    def head(self, key: str) -> tuple[str, int]:
        """(ETag without quotes, size in bytes) of an object."""
        with _translate_errors(self.uri, key):
            response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return str(response["ETag"]).strip('"'), int(response["ContentLength"])

    def metadata(self, key: str) -> dict[str, str]:
        """An object's user metadata (``x-amz-meta-NAME`` as ``NAME``, lower-case)."""
        with _translate_errors(self.uri, key):
            response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}

    def upload_file(self, key: str, path: Path) -> None:
        """Write a mutable object from a file (managed multipart for large files)."""
        with _translate_errors(self.uri, key):
            self._client.upload_file(str(path), self.bucket, self._key(key))

    def delete(self, key: str) -> None:
        """Remove an object (missing objects are fine)."""
        with _translate_errors(self.uri, key):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        try:
            with _translate_errors(self.uri, key):
                self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return False
        return True

    def list_children(self, prefix: str) -> list[str]:
        base = self._key(prefix).rstrip("/") + "/"
        names: set[str] = set()
        paginator = self._client.get_paginator("list_objects_v2")
        with _translate_errors(self.uri, prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
                names.update(p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][len(base):] for o in page.get("Contents", []))
        return sorted(n for n in names if n and not n.startswith("."))

    def publish(self, prefix: str, files: Mapping[str, Path], commit: str, progress: Progress | None = None) -> None:
        if self.exists(f"{prefix}/{commit}"):
            raise AlreadyExistsError(f"{prefix} already exists in {self.uri}")
        ordered = sorted(files, key=lambda name: name == commit)  # the commit object goes last
        written: list[str] = []
        try:
            for name in ordered:
                key = f"{prefix}/{name}"
                self._upload_new(key, files[name], progress)
                written.append(key)
        except BaseException:
            for key in written:
                with contextlib.suppress(Exception):
                    self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
            raise

    def _upload_new(self, key: str, path: Path, progress: Progress | None) -> None:
        size = path.stat().st_size
        s3_key = self._key(key)
        with _translate_errors(self.uri, key):
            if size < MULTIPART_THRESHOLD:
                self._client.put_object(Bucket=self.bucket, Key=s3_key, Body=path.read_bytes(), IfNoneMatch="*",
                                        ChecksumAlgorithm="SHA256")
                if progress:
                    progress(size)
                return
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=s3_key)["UploadId"]
            try:
                parts: list[Any] = []
                with path.open("rb") as f:
                    for number, chunk in enumerate(iter(lambda: f.read(MULTIPART_CHUNK), b""), start=1):
                        part = self._client.upload_part(Bucket=self.bucket, Key=s3_key, UploadId=upload_id,
                                                        PartNumber=number, Body=chunk)
                        parts.append({"ETag": part["ETag"], "PartNumber": number})
                        if progress:
                            progress(len(chunk))
                self._client.complete_multipart_upload(Bucket=self.bucket, Key=s3_key, UploadId=upload_id,
                                                       MultipartUpload={"Parts": parts}, IfNoneMatch="*")
            except BaseException:
                with contextlib.suppress(Exception):
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=s3_key, UploadId=upload_id)
                raise


@dataclass(frozen=True)
class CallBounds:
    """Socket timeouts and attempts of one S3 call (botocore standard retry mode)."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int

    @property
    def worst_case_seconds(self) -> float:
        """The longest one call can take: every attempt waits out both timeouts, plus the retry backoffs."""
        return self.max_attempts * (self.connect_timeout + self.read_timeout) + (self.max_attempts - 1) * MAX_BACKOFF


MAX_ATTEMPTS = 2
"""First try and one retry: a retry inside the request budget is worth one, more only delay the 503."""
MAX_BACKOFF = 1.0
"""Upper bound of botocore's standard-mode backoff before the second attempt (random in [0, 1) s)."""
UNBOUNDED = CallBounds(connect_timeout=5, read_timeout=60, max_attempts=5)
"""Long-running tools (build, publish, CLI): patient, nobody waits on a request timeout."""


def call_bounds(budget_seconds: float) -> CallBounds:
    """Timeouts that keep one store call within ``budget_seconds`` (see docs/reliability.md).

    connect = min(2, budget / 10); read = (budget - backoff) / attempts - connect, so that
    attempts x (connect + read) + backoff = budget. With the default 20 s budget: connect 2 s, read 7.5 s,
    2 attempts, worst case 20 s, inside the API function's 29 s timeout with 9 s for the rest of the request.
    """
    connect = min(2.0, budget_seconds / 10)
    read = max(0.1, (budget_seconds - MAX_BACKOFF) / MAX_ATTEMPTS - connect)
    return CallBounds(connect_timeout=connect, read_timeout=read, max_attempts=MAX_ATTEMPTS)


def _make_s3_client(endpoint_url: str | None, budget_seconds: float | None = None) -> S3Client:
    import boto3
    from botocore.config import Config

    bounds = UNBOUNDED if budget_seconds is None else call_bounds(budget_seconds)
    config = Config(retries={"mode": "standard", "max_attempts": bounds.max_attempts},
                    connect_timeout=bounds.connect_timeout, read_timeout=bounds.read_timeout)
    client: S3Client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
    return client


def _not_found(uri: str, key: str) -> NotFoundError:
    log.info("not found: %s in %s", key, uri)
    return NotFoundError(f"{key} not found")


@contextlib.contextmanager
def _translate_errors(uri: str, key: str) -> Any:
    """Map botocore errors onto the project's error types."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            raise _not_found(uri, key) from None
        if code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
            raise AlreadyExistsError(f"{key} already exists") from None
        log.warning("store error %s on %s in %s: %s", code, key, uri, error.get("Message", exc))
        if code in {"NoSuchBucket"}:
            raise StoreUnavailableError("the store's bucket does not exist") from None
        raise StoreUnavailableError(f"store error {code or 'unknown'} on {key}") from None
    except BotoCoreError as exc:
        log.warning("store %s unreachable on %s: %s", uri, key, exc)
        raise StoreUnavailableError(f"store unreachable ({type(exc).__name__})") from None


def open_store(uri: str, endpoint_url: str | None = None, budget_seconds: float | None = None) -> Store:
    """Open ``file://PATH`` or ``s3://BUCKET[/PREFIX]``; with ``budget_seconds``, every S3 call is bounded by it."""
    if uri.startswith("file://"):
        return LocalStore(Path(uri.removeprefix("file://")))
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise StoreUnavailableError(f"no bucket in store URI {uri!r}")
        return S3Store(bucket, prefix, endpoint_url=endpoint_url, budget_seconds=budget_seconds)
    raise StoreUnavailableError(f"unsupported store URI {uri!r}: use file://PATH or s3://BUCKET/PREFIX")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_s3_client(endpoint_url: str | None) -> S3Client:
    """The S3 client stores use (timeouts, retries), for callers that address several buckets with one client."""
    return _make_s3_client(endpoint_url)
