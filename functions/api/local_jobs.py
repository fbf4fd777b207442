"""Asynchronous batch jobs for a local file store (``maas serve``): the deployed flow's routes, without AWS.

``POST /v1/models/{name}/jobs`` (``?alias=`` or ``/versions/{v}/jobs``) with ``{"format", "bytes",
"id_column"?, "output_format"?}`` answers a job id, an upload URL on this server
(``PUT /v1/jobs/{id}/input?token=...``: the token is single-use and the body may not exceed the declared size)
and a status URL. The upload runs the batch runner in a background thread; ``GET /v1/jobs/{id}`` answers
pending, running, succeeded or failed, the report's row counts and download URLs
(``GET /v1/jobs/{id}/files/{predictions.jsonl|predictions.parquet|errors.jsonl|report.json}``).
Jobs live in a folder beside the model cache and last as long as it.

Behind ``--keys`` a job belongs to the consumer that submitted it (``functions.consumers.jobs``): other
consumers get 404 for its status and files, and its ok rows count to its consumer's usage when it finishes.
The upload needs no key: its single-use token is its authorization (as S3's presigned POST is, deployed).
"""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from functions.api.http import Call
from functions.api.job_request import MAX_REQUEST_BYTES, add_submit_routes, parse_job_request
from functions.consumers.jobs import caller, count_job_rows, visible_to
from functions.core.errors import NotFoundError, RequestError
from functions.core.names import shown
from functions.core.service import ModelRef, PredictionService

MAX_JOB_BYTES = 10 * 1024**3
OUTPUTS = ("predictions.jsonl", "predictions.parquet", "errors.jsonl", "report.json")
MEDIA_TYPES = {"json": "application/json", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class LocalJobs:
    """Job records as JSON files under ``root``/ID/, with the input and the runner's outputs beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()

    def folder(self, job_id: str) -> Path:
        if len(job_id) != 32 or not all(c in "0123456789abcdef" for c in job_id):
            raise NotFoundError(f"no job {shown(job_id)!r}")
        folder = self.root / job_id
        if not (folder / "job.json").is_file():
            raise NotFoundError(f"no job {job_id!r}")
        return folder

    def read(self, job_id: str) -> dict[str, Any]:
        record: dict[str, Any] = orjson.loads((self.folder(job_id) / "job.json").read_bytes())
        return record

    def read_own(self, job_id: str, consumer: str | None) -> dict[str, Any]:
        """The record of a job ``consumer`` may read; 404, as for an unknown job, for another consumer's."""
        record = self.read(job_id)
        if not visible_to(record.get("consumer"), consumer):
            raise NotFoundError(f"no job {job_id!r}")
        return record

    def write(self, record: dict[str, Any]) -> None:
        folder = self.root / record["id"]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "job.json.tmp"
        tmp.write_bytes(orjson.dumps(record))
        tmp.replace(folder / "job.json")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def make_router(service: PredictionService, jobs: LocalJobs) -> APIRouter:
    # Left out of the OpenAPI document (documented in docs/api.md): local-only routes of `maas serve`.
    router = APIRouter(prefix="/v1", tags=["jobs (local)"], include_in_schema=False)

    async def submit(request: Request, name: str, version: str | None, alias: str | None) -> Response:
        call = Call.of(request.scope, request.receive)
        call.only_query(("alias",) if version is None else ())
        job = parse_job_request(await call.body(MAX_REQUEST_BYTES), MAX_JOB_BYTES)
        ref = ModelRef.checked(name, version, alias)
        resolved = version or await service.off_loop(service.cache.resolve, ref.name, ref.alias)
        job_id, token = os.urandom(16).hex(), os.urandom(16).hex()
        jobs.write({"id": job_id, "status": "pending", "model": name, "version": resolved, "format": job.format,
                    "output_format": job.output_format, "bytes": job.bytes, "id_column": job.id_column,
                    "token": token, "consumer": caller()})
        base = _base(request)
        return _json({"job_id": job_id, "status": "pending", "model": name, "version": resolved,
                      "output_format": job.output_format, "status_url": f"{base}/v1/jobs/{job_id}",
                      "upload": {"method": "PUT", "url": f"{base}/v1/jobs/{job_id}/input?token={token}",
                                 "max_bytes": job.bytes}}, 201)

    add_submit_routes(router, submit)

    @router.put("/jobs/{job_id}/input")
    async def upload(request: Request, job_id: str) -> Response:
        """The job's input (once, with the upload token, at most the declared bytes); starts the run."""
        call = Call.of(request.scope, request.receive)
        with jobs.lock:
            record = jobs.read(job_id)
            token = call.query("token") or ""
            if record["status"] != "pending" or not hmac.compare_digest(token.encode(), str(record["token"]).encode()):
                raise RequestError(403, "forbidden", "the upload token is wrong or was already used")
            record["status"] = "uploading"
            jobs.write(record)
        try:
            data = await call.body(record["bytes"])
        except RequestError:
            record["status"] = "pending"
            jobs.write(record)
            raise
        source = jobs.folder(job_id) / f"input.{record['format']}"
        source.write_bytes(data)
        record["status"] = "running"
        jobs.write(record)
        threading.Thread(target=_run, args=(service, jobs, record, source), daemon=True,
                         name=f"maas-job-{job_id[:8]}").start()
        return _json({"job_id": job_id, "status": "running"}, 202)

    @router.get("/jobs/{job_id}")
    async def status(request: Request, job_id: str) -> Response:
        """pending, running, succeeded or failed; row counts and download URLs once done."""
        record = jobs.read_own(job_id, caller())
        answer = {k: record.get(k) for k in ("id", "status", "model", "version", "format", "rows", "error")}
        answer["output_format"] = record.get("output_format") or "jsonl"
        if record["status"] == "succeeded":
            base = f"{_base(request)}/v1/jobs/{job_id}/files"
            answer["outputs"] = {"predictions": f"{base}/predictions.{answer['output_format']}",
                                 "errors": f"{base}/errors.jsonl", "report": f"{base}/report.json"}
        return _json(answer)

    @router.get("/jobs/{job_id}/files/{file}")
    async def output(job_id: str, file: str) -> Response:
        """An output file of a succeeded job."""
        jobs.read_own(job_id, caller())
        path = jobs.folder(job_id) / "out" / file
        if file not in OUTPUTS or not path.is_file():
            raise NotFoundError(f"no output {shown(file)!r} for job {job_id}")
        return FileResponse(path, media_type=MEDIA_TYPES[file.rsplit(".", 1)[-1]])

    return router


def _run(service: PredictionService, jobs: LocalJobs, record: dict[str, Any], source: Path) -> None:
    """The batch runner on the uploaded input (the same code as ``maas batch``); the outcome in the record."""
    from functions.batch.local import run_local
    from functions.core.errors import MaasError

    try:
        stats = run_local(service.cache, record["model"], source, source.parent / "out", record["version"],
                          id_column=record["id_column"], output_format=record.get("output_format") or "jsonl")
        record.update(status="succeeded", rows={"in": stats.rows_in, "ok": stats.rows_ok,
                                                "failed": stats.rows_failed})
    except MaasError as exc:
        record.update(status="failed", error=exc.message)
    except Exception as exc:  # a bug: the job fails with its type, the server goes on
        record.update(status="failed", error=f"internal error ({type(exc).__name__})")
    if record["status"] == "succeeded" and record.get("consumer"):  # counted before the status says succeeded
        count_job_rows(record["consumer"], record["model"], record["version"], record["rows"]["ok"])
    jobs.write(record)
