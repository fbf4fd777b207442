"""The API-key gate: ASGI middleware in front of the prediction API, for ``maas serve --keys FILE`` and for the
API function of an ``auth: apiKey`` stage.

Each request but the health checks, the console's own files and a local job's upload needs a live key
(``x-api-key``, or ``Authorization: Bearer``) that covers the model in its path, within its consumer's rate limit
and daily quota; else it is answered 401, 403 or 429 (with ``Retry-After``) with the error table's JSON body,
before the body is read. Locally the gate looks keys up itself (``Keyring``); in Lambda it reads the authorizer's
verdict from the event. Every answered request of a known consumer is metered (``Meter``) after its answer.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

from functions.api.errors import reply_for
from functions.api.http import Message, Receive, Scope, Send, request_id
from functions.consumers.admission import DEFAULT_CACHE_SECONDS, Grant, Keyring, Limits, key_from_headers
from functions.consumers.jobs import use_meter
from functions.consumers.meter import Meter
from functions.consumers.store import keys_uri, open_store
from functions.consumers.usage import Usage
from functions.core.errors import KeyStoreUnavailableError, MaasError
from functions.core.request_facts import FACTS, RequestFacts
from functions.core.settings import ENV_AUTH, ENV_KEYS_CACHE_SECONDS
from functions.core.telemetry import log

PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/console", "/docs", "/openapi.json"})
"""Answered without a key: health checks, and pages and documents that hold no model data (the console's own
files, the API's description). The console asks for a key and sends it with every call it makes."""
PUBLIC_PREFIXES = ("/console/",)
_UPLOAD = re.compile(r"/v1/jobs/[0-9a-f]{32}/input")
"""``PUT``: a local job's input (``maas serve``). Its single-use token is its authorization, as a presigned S3 POST
is deployed; the job's consumer was fixed when it was submitted with a key."""
_MODEL_ROOTS = ("/v1/models/", "/v2/models/")


def model_in_path(path: str) -> str | None:
    """The model a path is about (``/v1/models/NAME...``, ``/v1/models/NAME:predict``, ``/v2/models/NAME...``)."""
    for root in _MODEL_ROOTS:
        if path.startswith(root):
            name = path[len(root):].split("/", 1)[0].split(":", 1)[0]
            return name or None
    return None


def authorizer_context(scope: Scope) -> dict[str, Any] | None:
    """The Lambda authorizer's context in the event Mangum keeps in the scope (HTTP API payload 2.0)."""
    event = scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    found = authorizer.get("lambda") if isinstance(authorizer, dict) else None
    return found if isinstance(found, dict) else None


class KeyGate:
    """ASGI middleware: authenticate, admit, meter; everything else is the wrapped app's."""

    def __init__(self, app: Any, limits: Limits, meter: Meter, keyring: Keyring | None = None,
                 offload: bool = False) -> None:
        self.app = app
        self.offload = offload
        """Check keys and limits on a worker thread (a remote store under ``maas serve``); in Lambda one request
        has the process to itself and the check runs inline."""
        self.limits = limits
        self.meter = meter
        self.keyring = keyring
        """None: trust the Lambda authorizer's verdict in the event (deployed)."""
        if hasattr(app, "api_keys"):
            app.api_keys = True  # the front's OpenAPI document declares the key

    def __getattr__(self, name: str) -> Any:  # the wrapped front's cache, service, settings
        return getattr(self.app, name)

    def _flushing(self, receive: Receive) -> Receive:
        """``receive`` that writes pending usage when the server announces its shutdown (SIGTERM included)."""
        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.meter.flush()
            return message
        return receiving

    def grant(self, scope: Scope, headers: dict[str, str]) -> Grant:
        """The request's grant, or its 401/403."""
        if self.keyring is not None:
            return self.keyring.authenticate(key_from_headers(headers))
        return Grant.from_context(authorizer_context(scope) or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._flushing(receive), send)
            return
        if scope["type"] != "http" or is_public(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = _path(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        try:
            if self.offload:  # a remote store (dynamodb://) under maas serve: never wait on the event loop
                grant = await asyncio.to_thread(self._admitted, scope, headers, model_in_path(path))
            else:
                grant = self._admitted(scope, headers, model_in_path(path))
        except GrantedError as refused:  # the key is good, the request is not (scope, rate, quota)
            await self._refuse(refused.error, path, scope, headers, send, refused.grant, started)
            return
        except MaasError as exc:
            await self._refuse(exc, path, scope, headers, send, None, started)
            return
        except Exception as exc:  # a store answering what no store should: the request is refused, not failed
            log("ERROR", "API key check failed", error=repr(exc), path=path)
            await self._refuse(KeyStoreUnavailableError("the key check failed"), path, scope, headers, send, None,
                               started)
            return
        # Usage is filed under the model and version that answered; requests no version answered (an unknown
        # model, a refusal) under "-": a name from the path never becomes a usage row by itself.
        facts = RequestFacts(grant.consumer, scope=None if grant.covers_all else grant.models)
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = FACTS.set(facts)
        try:
            await self.app(scope, receive, sending)
        finally:
            FACTS.reset(token)
            self.meter.add(Usage.answered(grant.consumer, facts.model, facts.version, status, facts.rows,
                                          (time.perf_counter() - started) * 1000))

    def _admitted(self, scope: Scope, headers: dict[str, str], model: str | None) -> Grant:
        """The request's grant once admitted; its 401/403 (MaasError) or, for a good key, GrantedError."""
        grant = self.grant(scope, headers)
        try:
            self.limits.admit(grant, model)
        except MaasError as exc:
            raise GrantedError(grant, exc) from None
        return grant

    async def _refuse(self, exc: MaasError, path: str, scope: Scope, headers: dict[str, str], send: Send,
                      grant: Grant | None, started: float) -> None:
        reply = reply_for(exc, path, request_id(scope, headers))
        await reply.send(send)
        if grant is not None:  # refusals of a good key are metered (under no model: see above)
            self.meter.add(Usage.answered(grant.consumer, None, None, reply.status, 0,
                                          (time.perf_counter() - started) * 1000))


class GrantedError(Exception):
    """A good key's request refused by its scope or limits (carries the grant, to meter the refusal)."""

    def __init__(self, grant: Grant, error: MaasError) -> None:
        super().__init__(error.message)
        self.grant = grant
        self.error = error


def is_public(scope: Scope) -> bool:
    """Requests that need no key: the health checks, the console's own files and the API's description (no model
    data behind them), and the upload of a local job's input."""
    path = _path(scope)
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) \
        or (scope.get("method") == "PUT" and _UPLOAD.fullmatch(path) is not None)


def _path(scope: Scope) -> str:
    path = str(scope.get("path", ""))
    root = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


def cache_seconds() -> float:
    """How long a key lookup is reused (``MAAS_KEYS_CACHE_SECONDS``, default 30)."""
    raw = os.environ.get(ENV_KEYS_CACHE_SECONDS)
    try:
        ttl = float(raw) if raw else DEFAULT_CACHE_SECONDS
    except ValueError:
        raise ValueError(f"{ENV_KEYS_CACHE_SECONDS} must be a number of seconds, got {raw!r}") from None
    if ttl < 0:
        raise ValueError(f"{ENV_KEYS_CACHE_SECONDS} must be >= 0, got {raw!r}")
    return ttl


def local_gate(app: Any, uri: str, ttl: float | None = None) -> KeyGate:
    """``maas serve --keys FILE``: keys looked up in the process, usage written by a thread."""
    store = open_store(uri)
    meter = Meter(store)
    use_meter(meter)  # the rows of the jobs this server runs count with its requests
    return KeyGate(app, Limits(store), meter, Keyring(store, cache_seconds() if ttl is None else ttl),
                   offload=uri.startswith("dynamodb://"))


def deployed_gate(app: Any) -> KeyGate:
    """The API function of an ``auth: apiKey`` stage: the authorizer's verdict, the table in ``MAAS_KEYS``, usage
    written after each response is posted."""
    store = open_store(keys_uri())
    meter = Meter(store)
    meter.install_after_post()
    return KeyGate(app, Limits(store), meter)


def api_key_auth() -> bool:
    """The stage authenticates with API keys (``MAAS_AUTH=apiKey``)."""
    return os.environ.get(ENV_AUTH, "").lower() == "apikey"
