"""Open Inference Protocol v2 (KServe / Triton REST): health, metadata, readiness and typed-tensor inference.

Tensors are the model's natural inputs: raw features ``[N, F]`` (FP32/FP64/INT*) for tabular models,
``[N, 8, 8]`` images, ``[N]`` BYTES strings for text models. Outputs: ``probabilities`` (FP32) and
``label`` (BYTES) for classifiers, ``value`` (FP32) for regressors.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from functions.api.body import read_body
from functions.api.errors import RequestError
from functions.api.oip_codec import HEADER_LENGTH, decode_tensor, encode_outputs, split_request
from functions.api.schemas import ERROR_RESPONSES, OipInferResponse
from functions.api.telemetry import emit_prediction_metrics
from functions.api.v1 import json_response, request_id
from functions.core import catalog
from functions.core.errors import InvalidInputError, MaasError
from functions.core.inference import run_model
from functions.core.manifest import ImagePreprocessing, Manifest, TabularPreprocessing
from functions.core.model_cache import ModelCache
from functions.core.names import check_model_name
from functions.core.settings import Settings

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "title": "Version"}}
INFER_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/OipInferRequest"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "Binary tensor extension (Inference-Header-Content-Length)"}}}}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": OipInferResponse}, **ERROR_RESPONSES}
INFER_TYPES = ("application/json", "application/octet-stream")


def natural_inputs(manifest: Manifest) -> list[dict[str, Any]]:
    """The OIP input tensor a model takes."""
    spec = manifest.preprocessing
    if isinstance(spec, TabularPreprocessing):
        return [{"name": manifest.inputs[0].name, "datatype": "FP32", "shape": [-1, len(spec.features)]}]
    if isinstance(spec, ImagePreprocessing):
        return [{"name": manifest.inputs[0].name, "datatype": "FP32", "shape": [-1, *spec.shape]}]
    return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def natural_outputs(manifest: Manifest) -> list[dict[str, Any]]:
    """The OIP output tensors a model returns."""
    if manifest.task == "classification":
        return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(manifest.labels or [])]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    if manifest.task == "regression":
        return [{"name": "value", "datatype": "FP32", "shape": [-1, 1]}]
    return [{"name": "embedding", "datatype": "FP32", "shape": [-1, manifest.outputs[0].shape[-1]]}]


def make_router(cache: ModelCache, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])

    @router.get("")
    async def server_metadata() -> Response:
        """Server name, version and protocol extensions."""
        return json_response({"name": "maas", "version": _version(), "extensions": ["binary_tensor_data"]})

    @router.get("/health/live")
    async def live() -> Response:
        """The process is up."""
        return json_response({"live": True})

    @router.get("/health/ready")
    async def ready() -> Response:
        """The process can serve: the store answers."""
        try:
            catalog.list_models(cache.store)
        except MaasError as exc:
            return json_response({"ready": False, "error": exc.message}, 503)
        return json_response({"ready": True})

    async def _metadata(name: str, version: str | None) -> Response:
        check_model_name(name)
        version = version or cache.resolve(name)
        manifest = cache.manifest(name, version)
        return json_response({"name": name, "versions": catalog.list_versions(cache.store, name),
                              "platform": "onnxruntime_onnx", "inputs": natural_inputs(manifest),
                              "outputs": natural_outputs(manifest)})

    @router.get("/models/{name}", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_metadata(name: str) -> Response:
        """Inputs and outputs of the default version."""
        return await _metadata(name, None)

    @router.get("/models/{name}/versions/{version}", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_version_metadata(name: str, version: str) -> Response:
        """Inputs and outputs of a version."""
        return await _metadata(name, version)

    async def _ready(name: str, version: str | None) -> Response:
        model = cache.get(name, version)
        return json_response({"name": name, "version": model.version, "ready": True})

    @router.get("/models/{name}/ready", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_ready(name: str) -> Response:
        """200 once the default version is loaded; 503 if it cannot be."""
        return await _ready(name, None)

    @router.get("/models/{name}/versions/{version}/ready", responses={k: ERROR_RESPONSES[k] for k in (404, 503)})
    async def model_version_ready(name: str, version: str) -> Response:
        """200 once the version is loaded; 503 if it cannot be."""
        return await _ready(name, version)

    async def _infer(request: Request, name: str, version: str | None) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type not in INFER_TYPES:
            raise RequestError(415, "unsupported_media_type", "content type must be application/json or "
                               f"application/octet-stream, got {content_type!r}")
        body = await read_body(request, settings.max_body_bytes)
        header, binary = split_request(body, request.headers.get(HEADER_LENGTH))
        check_model_name(name)
        if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
            raise InvalidInputError("body must be an object with an 'inputs' list")
        model = cache.get(name, version)
        expected = natural_inputs(model.manifest)[0]
        if len(header["inputs"]) != 1:
            raise InvalidInputError(f"expected exactly one input tensor {expected['name']!r}, "
                                    f"got {len(header['inputs'])}")
        tensor = header["inputs"][0]
        values, _ = decode_tensor(tensor, binary, 0)
        _check_tensor(tensor, values, expected, settings.max_instances)
        output = run_model(model, list(values))
        outputs = _outputs(model.manifest, output)
        requested, binary_names = _requested(header, outputs)
        response_header: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if isinstance(header.get("id"), str):
            response_header["id"] = header["id"]
        content, header_length = encode_outputs([o for o in outputs if o["name"] in requested], binary_names,
                                                response_header)
        model.requests += 1
        emit_prediction_metrics(model.name, model.version, model.variant.name, (time.perf_counter() - started) * 1000,
                                len(values), model.load_ms if model.requests == 1 else None, request_id(request))
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})

    @router.post("/models/{name}/infer", openapi_extra={**INFER_BODY, "parameters": [_NAME]},
                 responses=INFER_RESPONSES)
    async def infer(request: Request) -> Response:
        """Inference on the default version (prod alias, else latest)."""
        return await _infer(request, request.path_params["name"], None)

    @router.post("/models/{name}/versions/{version}/infer",
                 openapi_extra={**INFER_BODY, "parameters": [_NAME, _VERSION]}, responses=INFER_RESPONSES)
    async def infer_version(request: Request) -> Response:
        """Inference on an explicit version."""
        params = request.path_params
        return await _infer(request, params["name"], params["version"])

    return router


def _check_tensor(tensor: dict[str, Any], values: Any, expected: dict[str, Any], max_instances: int) -> None:
    if tensor["name"] != expected["name"]:
        raise InvalidInputError(f"unknown input {tensor['name']!r}; this model takes {expected['name']!r}")
    is_bytes = tensor["datatype"] == "BYTES"
    if is_bytes != (expected["datatype"] == "BYTES"):
        raise InvalidInputError(f"input {expected['name']!r} must have datatype {expected['datatype']}")
    shape = tensor["shape"]
    if len(shape) != len(expected["shape"]) or shape[1:] != expected["shape"][1:]:
        raise InvalidInputError(f"input {expected['name']!r}: shape {shape} does not match {expected['shape']}")
    if shape[0] == 0:
        raise InvalidInputError(f"input {expected['name']!r} has no rows")
    if shape[0] > max_instances:
        raise InvalidInputError(f"{shape[0]} rows exceed the limit of {max_instances} per request")


def _outputs(manifest: Manifest, output: Any) -> list[dict[str, Any]]:
    described = natural_outputs(manifest)
    rows = len(output)
    if manifest.task == "classification":
        labels = manifest.labels or []
        return [{**described[0], "shape": [rows, output.shape[1]], "value": output.astype(np.float32)},
                {**described[1], "shape": [rows], "value": [labels[int(i)] for i in output.argmax(axis=1)]}]
    return [{**described[0], "shape": [rows, output.shape[1]], "value": output.astype(np.float32)}]


def _requested(header: dict[str, Any], outputs: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """Names of the outputs to return, and which of them as binary data."""
    names = {o["name"] for o in outputs}
    parameters = header.get("parameters") if isinstance(header.get("parameters"), dict) else {}
    binary_all = bool(parameters.get("binary_data_output", False)) if parameters else False
    asked = header.get("outputs")
    if asked is None:
        return names, names if binary_all else set()
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise InvalidInputError("'outputs' must be a list of objects with a 'name'")
    unknown = [o["name"] for o in asked if o["name"] not in names]
    if unknown:
        raise InvalidInputError(f"unknown output(s) {unknown}; this model returns {sorted(names)}")
    binary = {o["name"] for o in asked
              if isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data", binary_all)}
    return {o["name"] for o in asked}, binary


def _version() -> str:
    try:
        return metadata.version("maas")
    except metadata.PackageNotFoundError:
        return "0"
