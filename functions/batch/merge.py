"""Close a fanned-out input: merge the part reports into one report.json, written last and write-once.

rows in = ok + failed over the parts that finished; a part without a report (it kept failing after its
retries) or with a failed report is listed with its range and reason, and the report's status is
``partial`` instead of ``ok``. The merge event (the state machine's last step, docs/batch.md)::

    {"mode": "merge", "bucket": "...", "key": "inputs/NAME/file.csv", "etag": "...", "version": "3"}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from functions.batch.part import part_folder, part_report
from functions.batch.process import count_input_usage, output_prefix, parse_key
from functions.batch.ranges import ByteRange
from functions.batch.report import make_report
from functions.batch.runner import RunStats
from functions.core.errors import AlreadyExistsError, NotFoundError

RANGES_FILE = "ranges.json"
PLAN_FILE = "plan.json"
NO_REPORT = "no part report: the part kept failing after its retries"


def ranges_document(ranges: Sequence[ByteRange]) -> bytes:
    """The JSON array Distributed Map's ItemReader and the array children read: ``[{"part", "range"}]``."""
    return orjson.dumps([{"part": i, "range": r.as_dict()} for i, r in enumerate(ranges)])


def read_ranges(document: bytes) -> list[ByteRange]:
    return [ByteRange.from_dict(entry["range"]) for entry in orjson.loads(document)]


def merge_reports(ranges: Sequence[ByteRange], reports: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Counts over every part: ``stats`` (a RunStats), ``failed_parts`` and ``model`` (of the first part)."""
    stats = RunStats()
    failed: list[dict[str, Any]] = []
    model = None
    for number, (part, report) in enumerate(zip(ranges, reports, strict=True)):
        if report is None or report.get("status") != "ok":
            error = NO_REPORT if report is None else str(report.get("error"))
            failed.append({"part": number, "range": part.as_dict(), "error": error})
            continue
        rows = report["rows"]
        stats.rows_in += rows["in"]
        stats.rows_ok += rows["ok"]
        stats.rows_failed += rows["failed"]
        stats.seconds_total += report["timings_s"]["total"]
        stats.seconds_inference += report["timings_s"]["inference"]
        model = model or report.get("model")
    return {"stats": stats, "failed_parts": failed, "model": model}


def merged_report(source: dict[str, Any], ranges: Sequence[ByteRange], reports: Sequence[dict[str, Any] | None],
                  outputs: dict[str, Any], **extra: Any) -> bytes:
    merged = merge_reports(ranges, reports)
    failed = merged["failed_parts"]
    return make_report("partial" if failed else "ok", source, merged["model"], merged["stats"], outputs,
                       error=f"{len(failed)} of {len(ranges)} parts failed" if failed else None,
                       parts={"total": len(ranges), "ok": len(ranges) - len(failed), "failed": failed}, **extra)


def merge_s3(data: Callable[[str], Any], event: dict[str, Any]) -> dict[str, Any]:
    """The merge step against S3: reads ranges.json and every part report, writes report.json once."""
    bucket_name, key, etag, version = (str(event[k]) for k in ("bucket", "key", "etag", "version"))
    ref = parse_key(key)
    prefix = output_prefix(ref.name, version, ref.path, etag.strip('"'))
    bucket = data(bucket_name)
    if bucket.exists(f"{prefix}/report.json"):
        return {"status": "duplicate", "prefix": prefix}
    try:
        ranges = read_ranges(bucket.get_bytes(f"{prefix}/{RANGES_FILE}"))
    except NotFoundError:
        ranges = []
    reports = [part_report(bucket, prefix, part) for part in range(len(ranges))]
    names = next((list(r["outputs"]) for r in reports if r and r.get("outputs")),  # predictions.parquet or .jsonl
                 ["predictions.jsonl", "errors.jsonl"])
    outputs = {name: f"{part_folder(prefix, 0).rsplit('/', 1)[0]}/NNNNN/{name}" for name in names}
    source = {"bucket": bucket_name, "key": key, "etag": etag.strip('"')}
    if not ranges:
        body = make_report("failed", source, error=f"no {RANGES_FILE}: the split step did not finish")
    else:
        body = merged_report(source, ranges, reports, outputs, job_id=event.get("job_id"))
    try:
        bucket.put_new(f"{prefix}/report.json", body)
    except AlreadyExistsError:
        return {"status": "duplicate", "prefix": prefix}
    report = orjson.loads(body)
    if report["status"] in ("ok", "partial"):
        count_input_usage(bucket, key, ref.name, version, int(report["rows"]["ok"]))
    return {"status": report["status"], "prefix": prefix, "rows": report["rows"]}
