"""Lambda entry point of the fan-out state machine's steps, one function with a mode (docs/batch.md):

- ``split``: ``{"mode": "split", "route", "bucket", "key", "etag", "version", "part_bytes"}`` -> writes
  ``PREFIX/ranges.json`` (the array Distributed Map's ItemReader and the AWS Batch array children read) and
  returns ``{"ranges_key", "parts"}``;
- ``part``: one item (functions/batch/part.py) -> the part's summary;
- ``merge``: closes the input (functions/batch/merge.py) -> report.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from functions.batch.formats import input_format
from functions.batch.local import for_batch
from functions.batch.merge import RANGES_FILE, merge_s3, ranges_document, read_ranges
from functions.batch.objects import data_bucket_factory
from functions.batch.part import PartItem, process_part
from functions.batch.process import output_prefix, parse_key
from functions.batch.ranges import ByteRange, S3Source, split
from functions.core.errors import AlreadyExistsError, NotFoundError
from functions.core.model_cache import model_cache_from
from functions.core.names import check_version
from functions.core.settings import get_settings
from functions.core.telemetry import log

ARRAY_MIN = 2  # AWS Batch array jobs have at least two children


def split_step(data: Callable[[str], Any], event: dict[str, Any]) -> dict[str, Any]:
    """Split the object version into line-aligned ranges and write them write-once (a retry reuses them)."""
    bucket_name, key, etag = str(event["bucket"]), str(event["key"]), str(event["etag"]).strip('"')
    ref = parse_key(key)
    prefix = output_prefix(ref.name, check_version(str(event["version"])), ref.path, etag)
    ranges_key = f"{prefix}/{RANGES_FILE}"
    bucket = data(bucket_name)
    try:
        ranges = read_ranges(bucket.get_bytes(ranges_key))
    except NotFoundError:  # not written yet
        source = S3Source(bucket._client, bucket_name, key, etag, bucket.head(key)[1])
        ranges = split(source, input_format(key), int(event["part_bytes"]))
        if event.get("route") == "batch" and len(ranges) < ARRAY_MIN:
            last = ranges[-1]
            ranges.append(ByteRange(last.stop, last.stop, last.first_line, last.header))
        try:
            bucket.put_new(ranges_key, ranges_document(ranges))
        except AlreadyExistsError:
            ranges = read_ranges(bucket.get_bytes(ranges_key))
    return {"ranges_key": ranges_key, "parts": len(ranges), "prefix": prefix}


_settings = get_settings()
_settings = for_batch(_settings)
cache = model_cache_from(_settings)
data = data_bucket_factory(_settings.s3_endpoint_url)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Dispatch on ``mode``; a malformed event raises ValueError (the state machine does not retry it)."""
    mode = event.get("mode") if isinstance(event, dict) else None
    if mode == "split":
        return split_step(data, event)
    if mode == "part":
        result = process_part(cache, data, PartItem.from_event(event), out_of_time=_deadline(context))
        log("INFO", "batch part processed", key=event.get("key"), **result)
        return result
    if mode == "merge":
        return merge_s3(data, event)
    raise ValueError(f"unknown mode {mode!r}: expected split, part or merge")


def _deadline(context: Any) -> Callable[[], bool] | None:
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    margin = _settings.batch_safety_ms
    return lambda: bool(context.get_remaining_time_in_millis() < margin)
