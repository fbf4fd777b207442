"""Asynchronous batch jobs on AWS: inputs go straight to the data bucket, never through the API.

``POST /v1/models/{name}/jobs`` (``?alias=`` or ``/versions/{v}/jobs``) with ``{"format", "bytes",
"id_column"?, "output_format"?}`` pins the model version, writes a job record (``jobs/ID.json``) and answers a
presigned POST for ``inputs/NAME:VERSION/jobs/ID@output=jsonl|parquet[@id=COLUMN].FORMAT`` (the suffixes the batch
side reads: functions/batch/process.py): it expires, its policy bounds the size to the declared
bytes and, when the bucket's key is configured, requires encryption with it. The upload's S3 event runs the
usual batch path (the batch function, AWS Batch or the fan-out by size). ``GET /v1/jobs/{id}`` derives the
status from the bucket: no input yet (pending, or failed once the upload URL expired), input but no report
(running), the report (succeeded, or failed with its error), with presigned download URLs for the outputs the
report lists (``predictions.parquet`` when the job asked for Parquet).

Submitted with an API key, the job belongs to its consumer (``functions.consumers.jobs``): the record names it,
the upload's policy fixes it as the input's metadata (``x-amz-meta-maas-consumer``, which the batch side counts
the job's rows to), and another consumer gets 404 for its status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.api.http import Call
from functions.api.job_request import MAX_REQUEST_BYTES, JobRequest, add_submit_routes, parse_job_request
from functions.batch.process import failure_report_key, output_prefix, parse_key
from functions.consumers.jobs import CONSUMER_FIELD, caller, visible_to
from functions.core.errors import NotFoundError
from functions.core.names import shown
from functions.core.service import ModelRef, PredictionService
from functions.core.settings import Settings
from functions.core.store import S3Store, make_s3_client

RECORDS = "jobs"
OUTPUT_FILES = ("predictions", "errors")
DEFAULT_FILES = {"predictions": "predictions.jsonl", "errors": "errors.jsonl"}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def check_job_id(job_id: str) -> str:
    """32 lowercase hex digits, or a 404 (the id names a key: nothing else may pass)."""
    if len(job_id) != 32 or not all(c in "0123456789abcdef" for c in job_id):
        raise NotFoundError(f"no job {shown(job_id)!r}")
    return job_id


def input_key(name: str, version: str, job_id: str, request: JobRequest) -> str:
    """Where the job's input is uploaded: an ordinary batch input pinned to the version. The output format is
    always named (``@output=jsonl`` too): the batch side's own default (``MAAS_BATCH_OUTPUT_FORMAT``) may be
    the other one, and the job's record, its status and ``maas jobs fetch`` go by what the job asked for."""
    suffix = f"@output={request.output_format}"
    suffix += f"@id={request.id_column}" if request.id_column else ""
    return f"inputs/{name}:{version}/jobs/{job_id}{suffix}.{request.format}"


@dataclass
class S3Jobs:
    """Job records, presigned uploads and statuses in one data bucket."""

    bucket: S3Store
    client: Any
    upload_seconds: int = 900
    download_seconds: int = 3600
    max_bytes: int = 5 * 1024**3
    key_arn: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Jobs:
        assert settings.data_bucket is not None
        client = make_s3_client(settings.s3_endpoint_url)
        return cls(S3Store(settings.data_bucket, "", client=client), client, settings.jobs_upload_seconds,
                   settings.jobs_download_seconds, settings.jobs_max_bytes, settings.data_key_arn)

    def create(self, name: str, version: str, request: JobRequest, base_url: str,
               consumer: str | None = None) -> dict[str, Any]:
        """Write the job record and presign the upload (blocking: call off the event loop). With a consumer,
        the record names it and the upload must carry it as the input's metadata."""
        job_id = os.urandom(16).hex()
        key = input_key(name, version, job_id, request)
        expires = _now() + timedelta(seconds=self.upload_seconds)
        record = {"id": job_id, "model": name, "version": version, "format": request.format,
                  "output_format": request.output_format, "bytes": request.bytes, "id_column": request.id_column,
                  "input_key": key,
                  "created_at": _iso(_now()), "upload_expires_at": _iso(expires), "consumer": consumer}
        self.bucket.put_new(f"{RECORDS}/{job_id}.json", orjson.dumps(record))
        fields: dict[str, str] = {}
        if self.key_arn:
            fields.update({"x-amz-server-side-encryption": "aws:kms",
                           "x-amz-server-side-encryption-aws-kms-key-id": self.key_arn})
        if consumer is not None:
            fields[CONSUMER_FIELD] = consumer
        conditions: list[Any] = [["content-length-range", 1, request.bytes]]
        conditions += [{name_: value} for name_, value in fields.items()]  # exact values: the uploader keeps them
        post = self.client.generate_presigned_post(self.bucket.bucket, key, Fields=fields or None,
                                                   Conditions=conditions, ExpiresIn=self.upload_seconds)
        return {"job_id": job_id, "status": "pending", "model": name, "version": version,
                "output_format": request.output_format, "status_url": f"{base_url}/v1/jobs/{job_id}",
                "upload": {"method": "POST", "url": post["url"], "fields": post["fields"],
                           "max_bytes": request.bytes, "expires_at": record["upload_expires_at"]}}

    def status(self, job_id: str, consumer: str | None = None) -> dict[str, Any]:
        """pending, running, succeeded or failed, from what the bucket holds (blocking); 404, as for an unknown
        job, when the job belongs to a consumer other than ``consumer``."""
        record = self._record(check_job_id(job_id))
        if not visible_to(record.get("consumer"), consumer):
            raise NotFoundError(f"no job {job_id!r}")
        answer: dict[str, Any] = {k: record.get(k) for k in ("id", "model", "version", "format", "created_at")}
        answer["output_format"] = record.get("output_format") or "jsonl"
        key = str(record["input_key"])
        try:
            etag, size = self.bucket.head(key)
        except NotFoundError:
            expired = _now() >= datetime.fromisoformat(str(record["upload_expires_at"]))
            if expired:
                return {**answer, "status": "failed",
                        "error": "no input was uploaded before the upload URL expired; submit a new job"}
            return {**answer, "status": "pending", "upload_expires_at": record["upload_expires_at"]}
        answer["input"] = {"bytes": size, "etag": etag}
        ref = parse_key(key)
        prefix = output_prefix(ref.name, str(record["version"]), ref.path, etag)
        report = self._json(f"{prefix}/report.json") or self._json(failure_report_key(key, etag))
        if report is None:
            plan = self._json(f"{prefix}/plan.json") or {}  # an array job leaves no dispatch.json, only its plan
            on_batch = plan.get("route") == "batch" or self.bucket.exists(f"{prefix}/dispatch.json")
            return {**answer, "status": "running", "runner": "aws-batch" if on_batch else "lambda"}
        answer.update(rows=report.get("rows"), error=report.get("error"))
        answer["status"] = "succeeded" if report.get("status") == "ok" else "failed"
        answer["outputs"] = self._downloads(prefix, report)
        return answer

    def _downloads(self, prefix: str, report: dict[str, Any]) -> dict[str, Any]:
        """Presigned GET URLs: report, and predictions/errors (one pair per part when the input was fanned out),
        named as the report lists them (predictions.jsonl or predictions.parquet)."""
        outputs: dict[str, Any] = {"report": self._presign(f"{prefix}/report.json")}
        written = report.get("outputs") or {}
        parts = (report.get("parts") or {}).get("total")
        if not written:
            return outputs
        files = {**DEFAULT_FILES, **{name: str(file) for file in written for name in OUTPUT_FILES
                                     if str(file).startswith(f"{name}.")}}
        if parts:
            failed = {p.get("part") for p in (report.get("parts") or {}).get("failed") or [] if isinstance(p, dict)}
            outputs["parts"] = [{name: self._presign(f"{prefix}/parts/{part:05d}/{files[name]}")
                                 for name in OUTPUT_FILES} for part in range(int(parts)) if part not in failed]
        else:
            outputs.update({name: self._presign(f"{prefix}/{files[name]}") for name in OUTPUT_FILES})
        return outputs

    def _presign(self, key: str) -> str:
        url: str = self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket.bucket, "Key": key},
                                                      ExpiresIn=self.download_seconds)
        return url

    def _record(self, job_id: str) -> dict[str, Any]:
        try:
            record: dict[str, Any] = orjson.loads(self.bucket.get_bytes(f"{RECORDS}/{job_id}.json"))
        except NotFoundError:
            raise NotFoundError(f"no job {job_id!r}") from None
        return record

    def _json(self, key: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = orjson.loads(self.bucket.get_bytes(key))
        except NotFoundError:
            return None
        return data


def make_router(service: PredictionService, jobs: S3Jobs) -> APIRouter:
    """The job routes of the deployed API (the same paths as ``maas serve``'s local jobs)."""
    router = APIRouter(prefix="/v1", tags=["jobs"], include_in_schema=False)  # documented in docs/api.md

    def reply(body: dict[str, Any], status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def submit(request: Request, name: str, version: str | None, alias: str | None) -> Response:
        call = Call.of(request.scope, request.receive)
        call.only_query(("alias",) if version is None else ())
        job = parse_job_request(await call.body(MAX_REQUEST_BYTES), jobs.max_bytes)
        ref = ModelRef.checked(name, version, alias)
        pinned = version or await service.off_loop(service.cache.resolve, ref.name, ref.alias)
        await service.off_loop(service.cache.manifest, ref.name, pinned)  # 404 for a version that is not there
        base = str(request.base_url).rstrip("/")
        return reply(await service.off_loop(jobs.create, ref.name, pinned, job, base, caller()), 201)

    add_submit_routes(router, submit)

    @router.get("/jobs/{job_id}")
    async def status(request: Request, job_id: str) -> Response:
        """pending, running, succeeded or failed; row counts and presigned download URLs once done."""
        Call.of(request.scope, request.receive).only_query(())
        return reply(await service.off_loop(jobs.status, job_id, caller()))  # the executor has no contextvars

    return router
