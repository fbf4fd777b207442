"""Open Inference Protocol (KServe v2 / Triton REST) tensors: JSON and the binary-data extension.

A request or response with binary data is a JSON header followed by raw tensor bytes; the header's length
is in the ``Inference-Header-Content-Length`` HTTP header and each binary tensor carries
``parameters.binary_data_size``. BYTES elements are 4-byte little-endian length prefixed.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from functions.api.http import RequestError
from functions.core.errors import InvalidInputError

HEADER_LENGTH = "inference-header-content-length"
NUMERIC_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


def split_request(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """The JSON header and the trailing binary section of an infer request."""
    if header_length is None:
        return _loads(body), b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise RequestError(400, "malformed_request", f"invalid Inference-Header-Content-Length {header_length!r}")
    cut = int(header_length)
    return _loads(body[:cut]), body[cut:]


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "malformed_json", f"request body is not valid JSON: {exc}") from None


def decode_tensor(tensor: Any, binary: bytes, offset: int) -> tuple[npt.NDArray[Any] | list[str], int]:
    """One input tensor as a numpy array (numeric) or a list of strings (BYTES); returns the new offset."""
    if not isinstance(tensor, dict):
        raise InvalidInputError("each input must be an object with name, shape, datatype and data")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidInputError("input tensors need a string 'name' and 'datatype'")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InvalidInputError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    count = int(np.prod(shape)) if shape else 1
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInputError(f"input {name!r}: binary_data_size {size!r} exceeds the binary section")
        raw, offset = binary[offset:offset + size], offset + size
        return _from_binary(name, datatype, shape, count, raw), offset
    if "data" not in tensor:
        raise InvalidInputError(f"input {name!r} has no 'data'")
    return _from_json(name, datatype, shape, count, tensor["data"]), offset


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any) -> npt.NDArray[Any] | list[str]:
    if datatype == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise InvalidInputError(f"input {name!r}: {len(flat)} elements for shape {shape}")
        if not all(isinstance(item, str) for item in flat):
            raise InvalidInputError(f"input {name!r}: BYTES elements must be strings")
        return [str(item) for item in flat]
    dtype = _numeric(name, datatype)
    try:
        raw = np.asarray(data)
    except ValueError:  # ragged nesting
        raise InvalidInputError(f"input {name!r}: data must be numbers for datatype {datatype}") from None
    if raw.dtype.kind not in ("b" if dtype == np.bool_ else "iuf"):
        raise InvalidInputError(f"input {name!r}: data must be numbers for datatype {datatype}")
    array = raw.astype(np.float64)
    if array.size != count:
        raise InvalidInputError(f"input {name!r}: {array.size} elements for shape {shape}")
    return array.reshape(shape)


def _from_binary(name: str, datatype: str, shape: list[int], count: int, raw: bytes) -> npt.NDArray[Any] | list[str]:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise InvalidInputError(f"input {name!r}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise InvalidInputError(f"input {name!r}: truncated BYTES element")
            try:
                items.append(raw[pos:pos + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInputError(f"input {name!r}: BYTES element {len(items)} is not UTF-8") from None
            pos += length
        if len(items) != count:
            raise InvalidInputError(f"input {name!r}: {len(items)} elements for shape {shape}")
        return items
    dtype = np.dtype(_numeric(name, datatype))
    if len(raw) != count * dtype.itemsize:
        raise InvalidInputError(f"input {name!r}: {len(raw)} bytes for shape {shape} of {datatype}")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(np.float64).reshape(shape)


def _numeric(name: str, datatype: str) -> Any:
    if datatype not in NUMERIC_TYPES:
        raise InvalidInputError(f"input {name!r}: unsupported datatype {datatype!r}")
    return NUMERIC_TYPES[datatype]


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


_END = object()


def encode_outputs(outputs: list[dict[str, Any]], binary: set[str], header: dict[str, Any]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when any output is sent as binary data."""
    tail: list[bytes] = []
    tensors = []
    for out in outputs:
        value = out.pop("value")
        if out["name"] in binary:
            raw = _to_binary(out["datatype"], value)
            out["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            out["data"] = value if isinstance(value, list) else value.reshape(-1).tolist()
        tensors.append(out)
    body = orjson.dumps({**header, "outputs": tensors})
    if not tail:
        return body, None
    return body + b"".join(tail), len(body)


def _to_binary(datatype: str, value: Any) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(encoded)) + encoded for encoded in (s.encode() for s in value))
    return np.ascontiguousarray(value, dtype=np.dtype(NUMERIC_TYPES[datatype]).newbyteorder("<")).tobytes()
