"""Reports the console shows: drift reports stored next to a version, and recent batch outputs.

Nothing here takes a path from a request: drift reports are listed from the version's ``drift/`` folder and
batch outputs from the configured folder or bucket; callers only choose a model, a version and counts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from functions.core import catalog
from functions.core.errors import NotFoundError, StoreUnavailableError
from functions.core.store import Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DRIFT_FOLDER = "drift"
REPORT_FILE = "report.json"
ERRORS_FILE = "errors.jsonl"
MAX_REPORT_BYTES = 1024 * 1024
ERRORS_HEAD_BYTES = 64 * 1024
MAX_LISTED = 10_000
_REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\.json$")


def drift_reports(store: Store, name: str, version: str, limit: int = 10) -> list[dict[str, Any]]:
    """The latest drift reports of a version (by file name, newest first), parsed; unreadable ones say so."""
    if not store.exists(f"{catalog.version_prefix(name, version)}/manifest.json"):
        raise NotFoundError(f"model {name!r} has no version {version!r}")
    folder = f"{catalog.version_prefix(name, version)}/{DRIFT_FOLDER}"
    names = sorted((n for n in store.list_children(folder) if _REPORT_NAME.fullmatch(n)), reverse=True)
    reports = []
    for file in names[:limit]:
        try:
            data = store.get_bytes(f"{folder}/{file}")
            report = orjson.loads(data) if len(data) <= MAX_REPORT_BYTES else None
        except (NotFoundError, orjson.JSONDecodeError):
            report = None
        reports.append({"file": file, "report": report} if isinstance(report, dict)
                       else {"file": file, "report": None, "error": "not a readable JSON report"})
    return reports


class OutputSource(Protocol):
    """Where batch outputs are: a local folder or an S3 prefix."""

    def report_folders(self) -> list[tuple[str, float]]:
        """(folder relative to the source, last modified as epoch seconds) of every folder with a report."""

    def read(self, folder: str, file: str, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes`` of a file in a listed folder, or None if absent."""


@dataclass
class LocalOutputs:
    root: Path

    def report_folders(self) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        seen = 0
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            seen += 1 + len(files)
            if REPORT_FILE in files:
                path = Path(folder)
                found.append((path.relative_to(self.root).as_posix(), (path / REPORT_FILE).stat().st_mtime))
            if seen > MAX_LISTED:
                break
        return found

    def read(self, folder: str, file: str, max_bytes: int) -> bytes | None:
        path = self.root / folder / file
        if not path.is_file():
            return None
        with path.open("rb") as f:
            return f.read(max_bytes)


@dataclass
class S3Outputs:
    bucket: str
    prefix: str
    client: S3Client

    def report_folders(self) -> list[tuple[str, float]]:
        from botocore.exceptions import BotoCoreError, ClientError

        found: list[tuple[str, float]] = []
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, PaginationConfig={"MaxItems": MAX_LISTED})
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(base):]
                    if key == REPORT_FILE or key.endswith(f"/{REPORT_FILE}"):
                        found.append((key[: -len(REPORT_FILE)].rstrip("/"), item["LastModified"].timestamp()))
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailableError(f"batch outputs cannot be listed: {type(exc).__name__}") from None
        return found

    def read(self, folder: str, file: str, max_bytes: int) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = "/".join(part for part in (self.prefix, folder, file) if part)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{max_bytes - 1}")["Body"]
            data: bytes = body.read()
            return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "InvalidRange"):
                return None
            raise StoreUnavailableError(f"batch output cannot be read: {type(exc).__name__}") from None
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"batch output cannot be read: {type(exc).__name__}") from None


def open_outputs(uri: str, endpoint_url: str | None = None) -> OutputSource:
    """A folder (``PATH`` or ``file://PATH``) or ``s3://BUCKET[/PREFIX]`` holding batch outputs."""
    if uri.startswith("s3://"):
        import boto3
        from botocore.config import Config

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
        return S3Outputs(bucket, prefix.strip("/"), boto3.client("s3", endpoint_url=endpoint_url, config=config))
    return LocalOutputs(Path(uri.removeprefix("file://")).expanduser().resolve())


def recent_outputs(source: OutputSource, limit: int = 20, error_rows: int = 5) -> list[dict[str, Any]]:
    """The newest batch outputs: each folder's report and its first error rows."""
    folders = sorted(source.report_folders(), key=lambda item: item[1], reverse=True)[:limit]
    outputs = []
    for folder, _ in folders:
        raw = source.read(folder, REPORT_FILE, MAX_REPORT_BYTES)
        try:
            report = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            report = None
        errors, more = _head_rows(source.read(folder, ERRORS_FILE, ERRORS_HEAD_BYTES), error_rows)
        outputs.append({"folder": folder, "report": report if isinstance(report, dict) else None,
                        "first_errors": errors, "more_errors": more})
    return outputs


def _head_rows(data: bytes | None, count: int) -> tuple[list[Any], bool]:
    """The first ``count`` JSON lines of a (possibly truncated) errors file, and whether more follow."""
    if not data:
        return [], False
    lines = [line for line in data.split(b"\n") if line.strip()]
    rows: list[Any] = []
    for line in lines[:count]:
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            rows.append({"error": line[:200].decode("utf-8", "replace")})
    return rows, len(lines) > count
