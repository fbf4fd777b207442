"""The routes both the fast front and the FastAPI app answer with the same code: predict, infer, health.

Each handler takes the service, the request and its path parameters and returns a ``Reply``; ``answer`` turns
every error into its JSON error reply, so the two paths give byte-identical answers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from functions.api.codecs import v1_predict, v2_infer
from functions.api.errors import reply_for
from functions.api.http import Call, Reply, json_reply
from functions.core import request_facts
from functions.core.errors import MaasError, StoreTimeoutError
from functions.core.service import PredictionService
from functions.core.telemetry import emit_error_metric, log

READY_TTL_SECONDS = 5.0
ALIAS_QUERY = ("alias",)
KSERVE_PREDICT = ":predict"
Handler = Callable[[PredictionService, Call, dict[str, str]], Awaitable[Reply]]


async def predict_alias(service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    call.only_query(ALIAS_QUERY)
    return await v1_predict.predict(service, call, params["name"], None, call.query("alias"))


async def predict_version(service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    call.only_query(())
    return await v1_predict.predict(service, call, params["name"], params["version"], None)


async def infer_default(service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    call.only_query(())
    return await v2_infer.infer(service, call, params["name"], None)


async def infer_version(service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    call.only_query(())
    return await v2_infer.infer(service, call, params["name"], params["version"])


async def live(service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    """The process is up; never touches the store."""
    return json_reply({"live": True})


@dataclass
class _Readiness:
    ready: bool = False
    until: float = 0.0


_READINESS: dict[int, _Readiness] = {}


async def ready(service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    """The store answers; checked at most every few seconds, within the request budget. Says only that."""
    state = _READINESS.setdefault(id(service), _Readiness())
    now = time.monotonic()
    if state.until <= now:
        try:
            state.ready = await service.off_loop(service.ready)
        except StoreTimeoutError:
            state.ready = False
        state.until = time.monotonic() + READY_TTL_SECONDS
    return json_reply({"ready": True}) if state.ready else json_reply({"ready": False}, 503)


async def answer(handler: Handler, service: PredictionService, call: Call, params: dict[str, str]) -> Reply:
    """The handler's reply, or the JSON error reply for whatever it raised."""
    try:
        return await handler(service, call, params)
    except MaasError as exc:
        if call.served is not None:  # the dashboard's errors per version (a split's two sides, say)
            emit_error_metric(*call.served, exc.code, call.request_id)
            request_facts.served(*call.served, 0)  # metered against the version that refused the input
        return reply_for(exc, call.path, call.request_id, hidden_locations(service))
    except Exception as exc:  # a bug: logged with the request id, answered without details
        log("ERROR", "unhandled error", error=repr(exc), type=type(exc).__name__, path=call.path,
            request_id=call.request_id)
        if call.served is not None:
            emit_error_metric(*call.served, "internal", call.request_id)
        return json_reply({"error": "internal error", "code": "internal"}, 500)


def hidden_locations(service: PredictionService) -> tuple[str, ...]:
    """Strings an error body must never show: the store URI and root, the endpoint, the cache folder."""
    settings = service.settings
    store = service.cache.store
    return tuple(str(x) for x in (settings.store, settings.store.split("://", 1)[-1], settings.s3_endpoint_url,
                                  settings.cache_dir, getattr(store, "root", None), getattr(store, "bucket", None))
                 if x)


def match(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
    """The handler for a fast-path route, with its path parameters (Starlette's ``{param}`` semantics)."""
    parts = path.split("/")
    if method == "POST":
        n = len(parts)
        if n == 4 and parts[1] == "v1" and parts[2] == "models" and parts[0] == "" \
                and parts[3].endswith(KSERVE_PREDICT) and len(parts[3]) > len(KSERVE_PREDICT):
            return predict_alias, {"name": parts[3][:-len(KSERVE_PREDICT)]}  # KServe v1: /v1/models/NAME:predict
        if n == 5 and parts[2] == "models" and parts[3] and parts[0] == "":
            if parts[1] == "v1" and parts[4] == "predict":
                return predict_alias, {"name": parts[3]}
            if parts[1] == "v2" and parts[4] == "infer":
                return infer_default, {"name": parts[3]}
        elif n == 7 and parts[2] == "models" and parts[4] == "versions" and parts[3] and parts[5] and parts[0] == "":
            if parts[1] == "v1" and parts[6] == "predict":
                return predict_version, {"name": parts[3], "version": parts[5]}
            if parts[1] == "v2" and parts[6] == "infer":
                return infer_version, {"name": parts[3], "version": parts[5]}
    elif method == "GET":
        if path == "/v2/health/live":
            return live, {}
        if path == "/v2/health/ready":
            return ready, {}
    return None
