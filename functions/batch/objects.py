"""Input objects named by S3 events, and the small bucket protocol the batch code needs from a data bucket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

INPUTS = "inputs/"


@dataclass(frozen=True)
class InputObject:
    """An object named by an S3 event."""

    bucket: str
    key: str
    etag: str
    size: int


class DataBucket(Protocol):
    """What the batch processor does with a data bucket (``S3Store`` is one)."""

    def exists(self, key: str) -> bool: ...

    def download(self, key: str, dest: Path, if_match: str | None = None) -> None: ...

    def head(self, key: str) -> tuple[str, int]: ...

    def metadata(self, key: str) -> dict[str, str]: ...

    def upload_file(self, key: str, path: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_new(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


BucketFactory = Callable[[str], DataBucket]


def data_bucket_factory(endpoint_url: str | None) -> BucketFactory:
    """An S3 data bucket per name, one client for all."""
    from functions.core.store import S3Store, make_s3_client

    client = make_s3_client(endpoint_url)
    buckets: dict[str, DataBucket] = {}

    def data(bucket: str) -> DataBucket:
        if bucket not in buckets:
            buckets[bucket] = S3Store(bucket, "", client=client)
        return buckets[bucket]

    return data
