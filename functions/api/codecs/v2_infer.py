"""The v2 infer codec (Open Inference Protocol, KServe / Triton REST): typed tensors in and out.

Tensors are the model's natural inputs: raw features ``[N, F]`` (FP32) for tabular models,
``[N, 8, 8]`` FP32 images, ``[N]`` BYTES strings for text models. Outputs: ``probabilities`` (FP32) and
``label`` (BYTES) for classifiers, ``value`` (FP32) for regressors, ``embedding`` for encoders.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from functions.api.codecs.v2_tensors import HEADER_LENGTH, decode_tensor, encode_outputs, split_request
from functions.api.http import Call, Reply, RequestError
from functions.core.errors import InvalidInputError
from functions.core.inference import class_labels
from functions.core.manifest import ImagePreprocessing, Manifest, TabularPreprocessing
from functions.core.model_cache import LoadedModel
from functions.core.names import shown
from functions.core.service import ModelRef, Output, PredictionService

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
        width = manifest.outputs[0].shape[-1]
        return [{"name": "probabilities", "datatype": "FP32",
                 "shape": [-1, len(manifest.labels) if manifest.labels else width if isinstance(width, int) else -1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    if manifest.task == "regression":
        return [{"name": "value", "datatype": "FP32", "shape": [-1, 1]}]
    return [{"name": "embedding", "datatype": "FP32", "shape": [-1, manifest.outputs[0].shape[-1]]}]


async def infer(service: PredictionService, call: Call, name: str, version: str | None) -> Reply:
    """Inference on an explicit version, or on the default one (prod alias, else latest)."""
    started = time.perf_counter()
    content_type = call.content_type("application/json")
    if content_type not in INFER_TYPES:
        raise RequestError(415, "unsupported_media_type", "content type must be application/json or "
                           f"application/octet-stream, got {content_type!r}")
    body = await call.body(service.settings.max_body_bytes)
    header, binary = split_request(body, call.headers.get(HEADER_LENGTH))
    ref = ModelRef.checked(name, version)
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInputError("body must be an object with an 'inputs' list")
    model, shadow = await service.routed(ref, call.routing_key)
    call.served = (model.name, model.version)
    expected = natural_inputs(model.manifest)[0]
    if len(header["inputs"]) != 1:
        raise InvalidInputError(f"expected exactly one input tensor {expected['name']!r}, "
                                f"got {len(header['inputs'])}")
    tensor = header["inputs"][0]
    values, end = decode_tensor(tensor, binary, 0)
    if end != len(binary):
        raise RequestError(400, "malformed_request", f"{len(binary) - end} bytes follow the binary tensors; "
                           "binary_data_size must account for the whole binary section")
    _check_tensor(tensor, values, expected, service.settings.max_instances)

    def decode(loaded: LoadedModel, output: Output) -> tuple[bytes, int | None]:
        outputs = _outputs(loaded.manifest, output)
        requested, binary_names = _requested(header, outputs)
        response_header: dict[str, Any] = {"model_name": loaded.name, "model_version": loaded.version}
        if isinstance(header.get("id"), str):
            response_header["id"] = header["id"]
        return encode_outputs([o for o in outputs if o["name"] in requested], binary_names, response_header)

    content, header_length = await service.predict(model, list(values), decode, call.request_id, started, shadow)
    if header_length is None:
        return Reply(200, content)
    return Reply(200, content, "application/octet-stream", {"Inference-Header-Content-Length": str(header_length)})


def _check_tensor(tensor: dict[str, Any], values: Any, expected: dict[str, Any], max_instances: int) -> None:
    if tensor["name"] != expected["name"]:
        raise InvalidInputError(f"unknown input {tensor['name']!r}; this model takes {expected['name']!r}")
    if tensor["datatype"] != expected["datatype"]:  # strict, as Triton: no silent casts
        raise InvalidInputError(f"input {expected['name']!r} must have datatype {expected['datatype']}, "
                                f"got {shown(str(tensor['datatype']))}")
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
        labels = class_labels(manifest, output.shape[1])
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
