"""Process one part (a byte range) of an input with the batch runner, and publish it write-once.

The event a child receives, from Step Functions Distributed Map (ItemSelector) or built from the ranges file
by an AWS Batch array child (docs/batch.md)::

    {"mode": "part", "bucket": "...", "key": "inputs/NAME/file.csv", "etag": "...", "version": "3",
     "part": 7, "range": {"start": 1048576, "stop": 2097152, "first_line": 20481, "header": 42}}

Outputs go to ``PREFIX/parts/NNNNN/`` (predictions.jsonl, errors.jsonl, report.json written last with a
conditional put): a duplicate or retried delivery finds report.json and changes nothing. Problems retrying
cannot fix (unreadable range, replaced object, out of time) give a part report with status ``failed`` and the
range; anything else raises so the state machine retries this part alone.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from functions.batch.formats import UnreadableInputError, input_format, read_chunks
from functions.batch.local import output_files, predictions_sink
from functions.batch.process import id_column_of, output_format_of, output_prefix, parse_key
from functions.batch.ranges import ByteRange, ByteSource, S3Source, materialize, renumber
from functions.batch.report import make_report, model_info
from functions.batch.runner import RunStats, run_batch
from functions.core.errors import AlreadyExistsError, DeadlineError, InvalidNameError, NotFoundError
from functions.core.model_cache import LoadedModel, ModelCache
from functions.core.names import check_version
from functions.core.store import S3Store

PART_FILES = ("predictions.jsonl", "errors.jsonl")


@dataclass(frozen=True)
class PartItem:
    """One item of a fan-out: which object version, which model version, which part and range."""

    bucket: str
    key: str
    etag: str
    version: str
    part: int
    range: ByteRange

    @classmethod
    def from_event(cls, event: Any) -> PartItem:
        """Parse the documented item shape; ValueError names what is missing."""
        if not isinstance(event, dict):
            raise ValueError("a part event is a JSON object")
        missing = [name for name in ("bucket", "key", "etag", "version", "part", "range") if name not in event]
        if missing:
            raise ValueError(f"part event lacks {', '.join(missing)}")
        part = event["part"]
        if isinstance(part, bool) or not isinstance(part, int) or part < 0:
            raise ValueError("part must be a non-negative integer")
        try:
            version = check_version(str(event["version"]))
        except InvalidNameError as exc:
            raise ValueError(exc.message) from None
        return cls(str(event["bucket"]), str(event["key"]), str(event["etag"]).strip('"'), version, part,
                   ByteRange.from_dict(event["range"]))

    def as_event(self) -> dict[str, Any]:
        return {"mode": "part", "bucket": self.bucket, "key": self.key, "etag": self.etag, "version": self.version,
                "part": self.part, "range": self.range.as_dict()}


def part_folder(prefix: str, part: int) -> str:
    return f"{prefix}/parts/{part:05d}"


def run_part(model: LoadedModel, source: ByteSource, fmt: str, part: ByteRange, work: Path,
             chunk_rows: int, max_line_bytes: int, out_of_time: Callable[[], bool] | None = None,
             on_chunk: Callable[[int], None] | None = None, lanes: int = 1,
             id_column: str | None = None, bucketing: bool = True, output_format: str = "jsonl",
             host_processes: int = 0) -> RunStats:
    """The runner over one range: ``work``/predictions.jsonl (or .parquet) and errors.jsonl with whole-file line
    numbers; ``host_processes`` as ``run_batch``'s (an AWS Batch array child on a GPU has them, as the worker)."""
    local = work / f"part{fmt}"
    with local.open("wb") as f:
        offset = materialize(source, fmt, part, f)
    files = output_files(output_format)
    with predictions_sink(work / files[0], model, output_format, id_column is not None) as predictions, \
            (work / files[1]).open("wb") as errors:
        chunks = read_chunks(local, fmt, model.manifest.preprocessing, chunk_rows, max_line_bytes, id_column)
        stats = run_batch(model, renumber(chunks, offset), predictions, errors, out_of_time, on_chunk,
                          lanes=lanes, bucketing=bucketing, host_processes=host_processes)
    local.unlink()
    return stats


def process_part(cache: ModelCache, data: Callable[[str], Any], item: PartItem, size: int | None = None,
                 out_of_time: Callable[[], bool] | None = None, job_id: str | None = None) -> dict[str, Any]:
    """Run one part against S3 and publish it; returns ``{"part", "status", "rows"?}`` (status ok, duplicate
    or failed). Raises on transient problems."""
    ref = parse_key(item.key)
    fmt = input_format(item.key)
    prefix = output_prefix(ref.name, item.version, ref.path, item.etag)
    folder = part_folder(prefix, item.part)
    bucket = data(item.bucket)
    summary: dict[str, Any] = {"part": item.part}
    if bucket.exists(f"{folder}/report.json"):
        return {**summary, "status": "duplicate"}
    source_info = {"bucket": item.bucket, "key": item.key, "etag": item.etag, "part": item.part,
                   "range": item.range.as_dict()}
    model = cache.get(ref.name, item.version)
    if size is None:
        try:
            size = bucket.head(item.key)[1]
        except NotFoundError:
            return _failed(bucket, folder, source_info, summary, "the input object no longer exists", job_id)
    source = S3Source(bucket._client, item.bucket, item.key, item.etag, size)
    settings = cache.settings
    with tempfile.TemporaryDirectory(prefix="maas-part-") as tmp:
        work = Path(tmp)
        output_format = output_format_of(item.key) or settings.batch_output_format
        try:
            stats = run_part(model, source, fmt, item.range, work, settings.batch_chunk_rows,
                             settings.batch_max_line_bytes, out_of_time, lanes=settings.batch_lanes,
                             id_column=id_column_of(item.key), bucketing=settings.batch_bucketing,
                             output_format=output_format, host_processes=settings.batch_host_processes or 0)
        except (UnreadableInputError, DeadlineError) as exc:
            return _failed(bucket, folder, source_info, summary, exc.message, job_id)
        except Exception as exc:
            if _replaced(exc):
                return _failed(bucket, folder, source_info, summary,
                               "the input object was replaced by a newer version", job_id)
            raise
        outputs = {name: f"{folder}/{name}" for name in output_files(output_format)[:2]}
        for name, key in outputs.items():
            bucket.upload_file(key, work / name)
        report = make_report("ok", source_info, model_info(model), stats, outputs, job_id=job_id)
    try:
        bucket.put_new(f"{folder}/report.json", report)
    except AlreadyExistsError:
        return {**summary, "status": "duplicate"}
    return {**summary, "status": "ok", "rows": {"in": stats.rows_in, "ok": stats.rows_ok,
                                                "failed": stats.rows_failed}}


def _failed(bucket: S3Store, folder: str, source: dict[str, Any], summary: dict[str, Any], reason: str,
            job_id: str | None) -> dict[str, Any]:
    with contextlib.suppress(AlreadyExistsError):
        bucket.put_new(f"{folder}/report.json", make_report("failed", source, error=reason, job_id=job_id))
    return {**summary, "status": "failed", "error": reason}


def _replaced(exc: Exception) -> bool:
    """A ranged GET with If-Match answered 412 or 404: the object version is gone."""
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return code in {"PreconditionFailed", "412", "NoSuchKey", "404"} or isinstance(exc, NotFoundError)


def part_report(bucket: S3Store, prefix: str, part: int) -> dict[str, Any] | None:
    """A part's report, or None if it never finished."""
    try:
        return dict(orjson.loads(bucket.get_bytes(f"{part_folder(prefix, part)}/report.json")))
    except NotFoundError:
        return None
