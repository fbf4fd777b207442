"""The scheduled drift job (EventBridge -> Lambda): a day of captured predictions per model version against the
version's reference profile; one JSON report per version into the store and EMF metrics on stdout.

Capture records sit in the data bucket under ``capture/NAME/VERSION/DAY/`` (Firehose's dynamic partitions,
plain or gzipped JSON lines). The day is the one before the event's time (the schedule runs after midnight
UTC), or ``{"day": "YYYY-MM-DD"}`` in the event. Reports go to ``models/NAME/versions/V/drift/DAY.json``.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from functions.core import catalog
from functions.core.errors import MaasError
from functions.core.profile import NO_REFERENCE, DriftTracker, read_profile
from functions.core.settings import get_settings
from functions.core.store import Store, open_store
from functions.drift.records import RecordFeeder

ENV_DATA_BUCKET = "MAAS_DATA_BUCKET"
CAPTURE_PREFIX = "capture"
NAMESPACE = "maas"
_METRICS = [{"Name": "MaxPsi", "Unit": "None"}, {"Name": "DriftScore", "Unit": "None"},
            {"Name": "FeaturesOverThreshold", "Unit": "Count"}, {"Name": "PredictionPsi", "Unit": "None"},
            {"Name": "CapturedRecords", "Unit": "Count"}]


@dataclass
class CaptureBucket:
    """The data bucket's capture records, read as streams of lines."""

    bucket: str
    client: Any

    def children(self, prefix: str) -> list[str]:
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/", Delimiter="/"):
            names += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    def keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=prefix.rstrip("/") + "/"):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def lines(self, key: str) -> Iterator[bytes]:
        """The object's lines, streamed (gzip detected by its magic bytes)."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        chunks = body.iter_chunks(1 << 20)
        first = next(chunks, b"")
        inflate = zlib.decompressobj(wbits=31) if first[:2] == b"\x1f\x8b" else None
        pending = b""
        for chunk in _chain(first, chunks):
            data = inflate.decompress(chunk) if inflate else chunk
            pending += data
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def window_day(event: dict[str, Any]) -> str:
    """The day to check: ``event["day"]``, else the day before the event's time (else before now)."""
    if isinstance(event.get("day"), str):
        return date.fromisoformat(event["day"]).isoformat()
    when = datetime.now(UTC)
    if isinstance(event.get("time"), str):
        when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    return (when.date() - timedelta(days=1)).isoformat()


def check_version_day(store: Store, bucket: CaptureBucket, name: str, version: str, day: str) -> dict[str, Any]:
    """The drift report of one version for one day of capture."""
    manifest = catalog.read_manifest(store, name, version)
    base = {"model": name, "version": version, "day": day,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    profile = read_profile(store, manifest)
    if profile is None:
        return {**base, **NO_REFERENCE}
    tracker = DriftTracker(profile)
    feeder = RecordFeeder(tracker, manifest.preprocessing, name, version)
    for key in bucket.keys(f"{CAPTURE_PREFIX}/{name}/{version}/{day}"):
        feeder.add_lines(bucket.lines(key))
    return {**base, "source": f"s3://{bucket.bucket}/{CAPTURE_PREFIX}/{name}/{version}/{day}/",
            "records": feeder.records, "skipped_records": feeder.skipped, **tracker.report()}


def run(store: Store, bucket: CaptureBucket, day: str) -> list[dict[str, Any]]:
    """Check every captured model version of ``day``; a broken version is reported, the others still run."""
    summaries: list[dict[str, Any]] = []
    for name in bucket.children(CAPTURE_PREFIX):
        for version in bucket.children(f"{CAPTURE_PREFIX}/{name}"):
            if day not in bucket.children(f"{CAPTURE_PREFIX}/{name}/{version}"):
                continue
            try:
                report = check_version_day(store, bucket, name, version, day)
                key = catalog.put_drift_report(store, name, version, day,
                                               orjson.dumps(report, option=orjson.OPT_INDENT_2))
            except MaasError as exc:
                summaries.append({"model": name, "version": version, "status": "error", "error": exc.message})
                continue
            emit_drift_metrics(report)
            summaries.append({"model": name, "version": version, "status": str(report["status"]),
                              "max_psi": report.get("max_psi"), "report": key})
    return summaries


def emit_drift_metrics(report: dict[str, Any]) -> None:
    """One EMF record per version: by model and version, and stage-wide (no dimension) for the alarm."""
    if report.get("status") in ("no_reference", "no_data"):
        return
    prediction = report.get("prediction") or {}
    record = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [
        {"Namespace": NAMESPACE, "Dimensions": [["model", "version"], []], "Metrics": _METRICS}]},
        "model": report["model"], "version": report["version"], "MaxPsi": report.get("max_psi") or 0.0,
        "DriftScore": report.get("max_excess") or 0.0,
        "FeaturesOverThreshold": len(report.get("features_over_threshold", [])),
        "PredictionPsi": prediction.get("psi") or 0.0, "CapturedRecords": report.get("records", 0)}
    sys.stdout.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE).decode())


def _clients() -> tuple[Store, CaptureBucket]:
    import boto3

    settings = get_settings()
    store = open_store(settings.store, endpoint_url=settings.s3_endpoint_url)
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    return store, CaptureBucket(os.environ[ENV_DATA_BUCKET], client)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge scheduled event in, a summary per model version out."""
    store, bucket = _clients()
    day = window_day(event if isinstance(event, dict) else {})
    return {"day": day, "versions": run(store, bucket, day)}
