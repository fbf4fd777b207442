"""The v1 predict codec: ``{"instances": [...]}`` in, ``{"model", "version", "variant", "predictions"}`` out."""

from __future__ import annotations

import time

import orjson

from functions.api.body import instances_of, read_json
from functions.api.http import Call, Reply
from functions.core.inference import shape_predictions
from functions.core.service import ModelRef, PredictionService
from functions.core.telemetry import log


async def predict(service: PredictionService, call: Call, name: str, version: str | None,
                  alias: str | None) -> Reply:
    """Predict with an explicit version, or with the version an alias (default prod, else latest) names."""
    started = time.perf_counter()
    settings = service.settings
    payload = await read_json(call, settings.max_body_bytes)
    ref = ModelRef.checked(name, version, alias)
    instances = instances_of(payload, settings.max_instances)
    model, shadow = await service.routed(ref, call.routing_key)
    call.served = (model.name, model.version)
    predictions = await service.predict(model, instances, shape_predictions, call.request_id, started, shadow)
    if settings.log_payloads:
        log("DEBUG", "prediction", request_id=call.request_id, instances=instances, predictions=predictions)
    return Reply(200, orjson.dumps({"model": model.name, "version": model.version, "variant": model.variant.name,
                                    "predictions": predictions}))
