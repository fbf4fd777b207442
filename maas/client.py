"""A small Python client for the maas prediction API; ``maas predict`` uses the same code.

    from maas.client import Client

    client = Client("https://abc123.execute-api.eu-west-1.amazonaws.com")   # signed with SigV4
    client.predict("iris-mlp", [{"sepal_length": 5.1, ...}])["predictions"]
    Client("https://api.example.com", token="eyJ...").predict("iris-mlp", [[5.1, 3.5, 1.4, 0.2]], alias="prod")

Authentication (``auth``):

- ``"auto"`` (default): a bearer ``token`` when one is given; else SigV4 when the URL is an AWS endpoint
  (``*.execute-api.REGION.amazonaws.com``: service ``execute-api``; ``*.lambda-url.REGION.on.aws``: service
  ``lambda``); else nothing (``maas serve`` on loopback).
- ``"iam"``: always SigV4, with credentials from the standard AWS chain (environment, profile, SSO, instance
  role) through botocore; the region comes from the host name, else the AWS configuration.
- ``"none"``: send no credentials.

An API key (``api_key``, default ``$MAAS_API_KEY``; an ``auth: apiKey`` stage or ``maas serve --keys FILE``) goes
in the ``x-api-key`` header, beside whatever ``auth`` sends; with a key, ``"auto"`` does not sign. It is sent only
to the API's own origin (never to presigned S3 links) and never appears in an error message.

A 4xx raises ``ApiRejectedError``: 401/403 ``ApiRefusedError`` (exit 16; it says how to authenticate), 429
``ApiLimitedError`` (exit 17, with the ``Retry-After`` seconds); a 5xx ``ApiFailedError``, a connection failure
``ApiUnreachableError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

from functions.core.errors import (
    ApiFailedError,
    ApiLimitedError,
    ApiRefusedError,
    ApiRejectedError,
    ApiUnreachableError,
    MaasError,
)

Auth = Literal["auto", "iam", "none"]
_AWS_HOSTS = (
    (re.compile(r"^[^.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$"), "execute-api"),
    (re.compile(r"^[^.]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$"), "lambda"),
)
AUTH_HINT = ("the API wants credentials: for the IAM default pass --auth iam (or use its AWS URL) with AWS "
             "credentials allowed to invoke it (execute-api:Invoke / lambda:InvokeFunctionUrl); for JWT, pass "
             "--token or set MAAS_TOKEN; for API keys, pass --api-key or set MAAS_API_KEY")
ENV_API_KEY = "MAAS_API_KEY"
KEY_CODES = ("unauthenticated", "forbidden")
"""The API-key gate's 401/403 codes: its message says what is wrong, no hint needed."""


def aws_endpoint(url: str) -> tuple[str, str] | None:
    """(service, region) when ``url`` is an API Gateway HTTP API or Lambda Function URL, else None."""
    host = urllib.parse.urlsplit(url).hostname or ""
    for pattern, service in _AWS_HOSTS:
        found = pattern.match(host)
        if found:
            return service, found.group(1)
    return None


class Client:
    """Calls a maas API: predictions, explanations and batch jobs, signed or with a bearer token."""

    def __init__(self, url: str, auth: Auth = "auto", token: str | None = None, timeout: float = 60.0,
                 region: str | None = None, routing_key: str | None = None, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.auth = auth
        self.token = token
        self.api_key = (os.environ.get(ENV_API_KEY) if api_key is None else api_key) or None
        """Sent as ``x-api-key`` to the API's own origin (default ``$MAAS_API_KEY``)."""
        self.routing_key = routing_key
        """Sent as ``x-maas-routing-key``: an alias's A/B split gives the same key the same version."""
        self.timeout = timeout
        endpoint = aws_endpoint(self.url)
        self.service = endpoint[0] if endpoint else "execute-api"
        self.region = region or (endpoint[1] if endpoint else None)
        self.sign = auth == "iam" or (auth == "auto" and token is None and self.api_key is None
                                      and endpoint is not None)

    def predict(self, name: str, instances: list[Any], version: str | None = None,
                alias: str | None = None) -> dict[str, Any]:
        """``POST /v1/models/NAME[/versions/V]/predict`` with ``{"instances": ...}``; the JSON answer."""
        return self.call("POST", self.model_path(name, "predict", version, alias), {"instances": instances})

    def explain(self, name: str, instances: list[Any], version: str | None = None,
                alias: str | None = None) -> dict[str, Any]:
        """``POST /v1/models/NAME[/versions/V]/explain`` (where the API offers explanations)."""
        return self.call("POST", self.model_path(name, "explain", version, alias), {"instances": instances})

    def submit_job(self, name: str, fmt: str, size: int, id_column: str | None = None,
                   version: str | None = None, alias: str | None = None,
                   output_format: str | None = None) -> dict[str, Any]:
        """``POST /v1/models/NAME/jobs``: a job id, an upload URL for the input and a status URL.
        ``output_format``: jsonl (the server's default) or parquet."""
        body: dict[str, Any] = {"format": fmt, "bytes": size}
        if id_column:
            body["id_column"] = id_column
        if output_format:
            body["output_format"] = output_format
        return self.call("POST", self.model_path(name, "jobs", version, alias), body)

    def upload(self, upload: dict[str, Any], data: bytes | Path) -> None:
        """Send a job's input (bytes, or a file streamed from disk) to the upload ``submit_job`` answered: a PUT
        to ``maas serve`` or a presigned POST form to S3. The URL carries its own authorization."""
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        headers = {str(k): str(v) for k, v in (upload.get("headers") or {}).items()}
        method = str(upload.get("method", "PUT")).upper()
        with contextlib.ExitStack() as stack:
            stream: Any = data if isinstance(data, bytes) else stack.enter_context(data.open("rb"))
            if method == "POST":  # S3 POST object: the policy's fields first, the file last
                boundary = os.urandom(16).hex()
                head = b"".join(_form_field(boundary, str(k), str(v)) for k, v in (upload.get("fields") or {}).items())
                head += (f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="input"\r\n'
                         "content-type: application/octet-stream\r\n\r\n").encode()
                tail = f"\r\n--{boundary}--\r\n".encode()
                headers["content-type"] = f"multipart/form-data; boundary={boundary}"
                stream = _chain(head, stream, tail)
                size += len(head) + len(tail)
            headers["content-length"] = str(size)
            headers.update(self.key_header(str(upload["url"])))
            self._send(urllib.request.Request(str(upload["url"]), data=stream, method=method, headers=headers))

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/ID``: status, row counts and download URLs once done."""
        return self.call("GET", f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}")

    def fetch(self, url: str, into: BinaryIO | None = None) -> bytes:
        """The bytes at a download URL a job status named (presigned: sent without credentials); with ``into``,
        streamed into that file instead (and b"" returned)."""
        return self._send(urllib.request.Request(url, method="GET", headers=self.key_header(url)), into)

    @staticmethod
    def model_path(name: str, verb: str, version: str | None = None, alias: str | None = None) -> str:
        """The route of a model verb, by explicit version or by alias."""
        quoted = urllib.parse.quote(name, safe="")
        if version:
            return f"/v1/models/{quoted}/versions/{urllib.parse.quote(version, safe='')}/{verb}"
        return f"/v1/models/{quoted}/{verb}" + (f"?alias={urllib.parse.quote(alias, safe='')}" if alias else "")

    def send(self, method: str, path: str, payload: Any = None) -> bytes:
        """Send one request (signed or with the token); the raw answer body."""
        body = None if payload is None else json.dumps(payload).encode()
        url = self.url + path
        headers = {"content-type": "application/json"} if body is not None else {}
        if self.routing_key:
            headers["x-maas-routing-key"] = self.routing_key
        headers.update(self.key_header(url))
        headers.update(self.auth_headers(method, url, body, headers))
        return self._send(urllib.request.Request(url, data=body, method=method, headers=headers))

    def call(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        """Send one request and return the decoded JSON answer."""
        result = json.loads(self.send(method, path, payload))
        if not isinstance(result, dict):
            raise ApiFailedError(200, f"expected a JSON object from {path}, got {type(result).__name__}")
        return result

    def auth_headers(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        """The Authorization (and, signed, X-Amz-*) headers for one request."""
        if self.token is not None and self.auth != "none" and not self.sign:
            return {"authorization": f"Bearer {self.token}"}
        if not self.sign:
            return {}
        return sigv4_headers(method, url, body, headers, self.service, self.region)

    def key_header(self, url: str) -> dict[str, str]:
        """``x-api-key`` for a URL on the API's own origin (a job's upload or download on ``maas serve``); nothing
        for another origin (a presigned S3 link carries its own authorization)."""
        if self.api_key is None or _origin(url) != _origin(self.url):
            return {}
        return {"x-api-key": self.api_key}

    def _send(self, request: urllib.request.Request, into: BinaryIO | None = None) -> bytes:
        for name in ("X-api-key", "Authorization"):  # credentials never follow a redirect (to any origin)
            value = request.headers.pop(name, None)
            if value is not None:
                request.add_unredirected_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if into is not None:
                    shutil.copyfileobj(response, into, 1 << 20)
                    return b""
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if self.api_key:  # the gate never echoes a key; this makes sure nothing else can
                text = text.replace(self.api_key, "[api key]")
            raise self.refusal(exc.code, text, exc.headers.get("Retry-After"),
                               "x-api-key" in {k.lower() for k, _ in request.header_items()}) from None
        except urllib.error.URLError as exc:
            raise ApiUnreachableError(f"cannot reach {self.url}: {exc.reason}") from None
        except TimeoutError:
            raise ApiUnreachableError(f"no answer from {self.url} within {self.timeout:g} s") from None

    @staticmethod
    def refusal(status: int, text: str, retry_after: str | None, key_sent: bool) -> ApiRejectedError:
        """The error for an HTTP error answer: 401/403 refused (exit 16), 429 limited (exit 17), other 4xx
        rejected (8), 5xx failed (9)."""
        code, said = _error_fields(text)
        if status in (401, 403):
            if code in KEY_CODES:
                advice = "" if key_sent or code != "unauthenticated" else " (pass --api-key KEY or set MAAS_API_KEY)"
                return ApiRefusedError(status, f"HTTP {status} {code}: {said}{advice}")
            return ApiRefusedError(status, f"HTTP {status}: {text}\nhint: {AUTH_HINT}")
        if status == 429:
            seconds = int(retry_after) if retry_after and retry_after.strip().isdigit() else None
            wait = f"retry after {seconds} s" if seconds is not None else "retry later"
            return ApiLimitedError(status, f"HTTP 429 {code or 'throttled'}: {said}; {wait}", seconds)
        message = f"HTTP {status}: {text}"
        if status == 413:
            message += "\nhint: send large inputs as a job: maas jobs submit NAME --input FILE"
        return (ApiRejectedError if status < 500 else ApiFailedError)(status, message)


def _error_fields(text: str) -> tuple[str | None, str]:
    """(code, message) of an error body: the API's ``{"error", "code"}``, API Gateway's ``{"message"}``, else
    (None, the text itself)."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, text.strip()[:500] or "(no body)"
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return (str(body["code"]) if isinstance(body.get("code"), str) else None), body["error"]
        if isinstance(body.get("message"), str):
            return None, body["message"]
    return None, text.strip()[:500]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _form_field(boundary: str, name: str, value: str) -> bytes:
    return f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def _chain(head: bytes, body: bytes | BinaryIO, tail: bytes) -> Iterator[bytes]:
    """A multipart body sent in pieces: the file is read 1 MiB at a time, never whole."""
    yield head
    if isinstance(body, bytes):
        yield body
    else:
        while piece := body.read(1 << 20):
            yield piece
    yield tail


def sigv4_headers(method: str, url: str, body: bytes | None, headers: dict[str, str], service: str,
                  region: str | None) -> dict[str, str]:
    """SigV4 headers from botocore's signer and the standard credential chain."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    session = Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise MaasError("no AWS credentials found for signing (environment, profile, SSO or role); "
                        "configure them, or pass --token for a JWT-protected API")
    region = region or session.get_config_variable("region")
    if not region:
        raise MaasError("no AWS region for signing: set AWS_REGION or use the API's AWS URL")
    request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() not in {h.lower() for h in headers}}
