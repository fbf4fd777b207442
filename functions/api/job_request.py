"""The body and the submit routes of ``POST /v1/models/{name}/jobs``, shared by the local and the AWS jobs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.core.errors import InvalidInputError, RequestError

FORMATS = ("csv", "jsonl", "npy", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")
MAX_REQUEST_BYTES = 64 * 1024
ID_COLUMN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what an input key's "@id=COLUMN" suffix can carry
USAGE = ('body must be {"format": "csv|jsonl|npy|parquet", "bytes": N, "id_column": "..." (optional), '
         '"output_format": "jsonl|parquet" (optional, default jsonl)}')


@dataclass(frozen=True)
class JobRequest:
    """The input's format, its exact size in bytes (the upload may not exceed it), an optional id column and
    the predictions' format."""

    format: str
    bytes: int
    id_column: str | None = None
    output_format: str = "jsonl"

    @property
    def predictions_file(self) -> str:
        """The predictions' file name: predictions.jsonl or predictions.parquet."""
        return f"predictions.{self.output_format}"


def parse_job_request(body: bytes, max_bytes: int) -> JobRequest:
    """The request, or a 4xx naming the field that is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "malformed_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInputError(USAGE)
    unknown = sorted(set(data) - {"format", "bytes", "id_column", "output_format"})
    if unknown:
        raise InvalidInputError(f"unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; {USAGE}")
    fmt, size, id_column = data.get("format"), data.get("bytes"), data.get("id_column")
    output_format = data.get("output_format", "jsonl")
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}")
    if output_format not in OUTPUT_FORMATS:
        raise InvalidInputError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= max_bytes:
        raise InvalidInputError(f"bytes must be an integer from 1 to {max_bytes}")
    if id_column is not None:
        if fmt == "npy":
            raise InvalidInputError("id_column needs a csv, jsonl or parquet input (.npy rows have no columns)")
        if not isinstance(id_column, str) or not ID_COLUMN.fullmatch(id_column):
            raise InvalidInputError("id_column must be 1 to 64 letters, digits, '_', '.' or '-'")
    return JobRequest(fmt, size, id_column, output_format)


Submit = Callable[[Request, str, str | None, str | None], Awaitable[Response]]


def add_submit_routes(router: APIRouter, submit: Submit) -> None:
    """``POST /models/{name}/jobs`` (``?alias=``) and ``/models/{name}/versions/{version}/jobs`` on ``router``,
    both answered by ``submit(request, name, version, alias)``."""

    async def submit_alias(request: Request, name: str) -> Response:
        """Create a batch job on the version ``alias`` names: an upload URL and the status URL."""
        return await submit(request, name, None, request.query_params.get("alias"))

    async def submit_version(request: Request, name: str, version: str) -> Response:
        """Create a batch job on an explicit version."""
        return await submit(request, name, version, None)

    router.add_api_route("/models/{name}/jobs", submit_alias, methods=["POST"], status_code=201)
    router.add_api_route("/models/{name}/versions/{version}/jobs", submit_version, methods=["POST"],
                         status_code=201)
