"""The fast front (no FastAPI) and the FastAPI app answer every prediction request byte for byte alike."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import LiveServer
from tests.api.samples import CANCER_ROW, DIABETES_ROW, DIGIT_ZERO, INSTANCES, TEXTS
from tests.api.test_bad_input import CASES, JSON, _tensor

Request = tuple[str, str, dict[str, str], bytes]


def _post(path: str, payload: Any, headers: dict[str, str] | None = None) -> Request:
    return ("POST", path, JSON if headers is None else headers, json.dumps(payload).encode())


def _binary_infer(path: str, rows: list[list[float]], length: str | None = None, tail: bytes = b"") -> Request:
    raw = struct.pack(f"<{sum(map(len, rows))}f", *[v for row in rows for v in row]) + tail
    header = json.dumps({"inputs": [{"name": "features", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    headers = {"content-type": "application/octet-stream",
               "inference-header-content-length": length if length is not None else str(len(header))}
    return ("POST", path, headers, header + raw)


DIABETES = list(DIABETES_ROW.values())
GOOD: list[Request] = [
    *[_post(f"/v1/models/{name}/predict", {"instances": instances}) for name, instances in INSTANCES.items()],
    _post("/v1/models/digits-cnn/versions/1/predict", {"instances": [DIGIT_ZERO, DIGIT_ZERO]}),
    _post("/v1/models/cancer-mlp/predict?alias=prod", {"instances": [CANCER_ROW]}),
    _post("/v1/models/diabetes-mlp/predict", {"instances": [DIABETES_ROW]},
          {"content-type": "application/json; charset=utf-8"}),
    _post("/v2/models/diabetes-mlp/infer", {"inputs": [_tensor()]}),
    _post("/v2/models/diabetes-mlp/versions/1/infer",
          {"id": "r1", "inputs": [_tensor(shape=(2, 10), data=DIABETES * 2)]}),
    _post("/v2/models/text-lstm/infer",
          {"inputs": [_tensor("text", (2,), "BYTES", TEXTS)], "outputs": [{"name": "label"}]}),
    _post("/v2/models/digits-cnn/infer", {"inputs": [_tensor("image", (1, 8, 8), "FP32", DIGIT_ZERO)]}),
    _binary_infer("/v2/models/diabetes-mlp/infer", [DIABETES]),
    _post("/v1/models/cancer-mlp:predict", {"instances": [CANCER_ROW]}),
    _post("/v1/models/cancer-mlp:predict?alias=prod", {"instances": [CANCER_ROW]}),
    ("GET", "/v2/health/live", {}, b""),
    ("GET", "/v2/health/ready", {}, b""),
]
EXTRA_BAD: list[Request] = [
    _post("/v1/models/digits-cnn/predict?alias=BAD", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models/digits-cnn/predict?alias=staging&alias=prod", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models/digits-cnn/predict?alias=nope", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models/digits-cnn/predict/", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models//predict", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models/digits-cnn/versions//predict", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models/digits-cnn/versions/1/2/predict", {"instances": [DIGIT_ZERO]}),
    _post("/v1/models/cancer-mlp/versions/2/predict", {"instances": [CANCER_ROW]}),
    _post("/v2/models/cancer-mlp/versions/2/infer", {"inputs": [_tensor(data=CANCER_ROW, shape=(1, 30))]}),
    _post("/v2/models/no-such-model/versions/1/infer", {"inputs": [_tensor()]}),
    _post("/v2/models/digits-cnn/versions/x/infer", {"inputs": [_tensor()]}),
    _post("/v2/models/Digits/infer", {"inputs": [_tensor()]}),
    _post("/v2/models/diabetes-mlp/infer", {"inputs": [_tensor()]}, {"content-type": "text/plain"}),
    _post("/v2/models/diabetes-mlp/infer", {"inputs": [_tensor()]}, {}),
    _post("/v1/models/diabetes-mlp/predict", {"instances": [DIABETES_ROW]}, {"content-type": "APPLICATION/JSON"}),
    _binary_infer("/v2/models/diabetes-mlp/infer", [DIABETES], length="abc"),
    _binary_infer("/v2/models/diabetes-mlp/infer", [DIABETES], length="-1"),
    _binary_infer("/v2/models/diabetes-mlp/infer", [DIABETES], length="3"),
    _binary_infer("/v2/models/diabetes-mlp/infer", [DIABETES[:9]]),
    _binary_infer("/v2/models/diabetes-mlp/infer", [DIABETES], tail=b"\x00"),
    ("GET", "/v1/models/digits-cnn/predict", {}, b""),
    ("PUT", "/v2/models/digits-cnn/infer", JSON, b"{}"),
    ("POST", "/v2/health/live", JSON, b"{}"),
    ("GET", "/v2/health/live/", {}, b""),
    ("POST", "/v1/models/diabetes-mlp/predict", {**JSON, "x-request-id": "r-1"}, b'{"instances": [[]]}'),
    _post("/v1/models/cancer-mlp/predict?version=2", {"instances": [CANCER_ROW]}),
    _post("/v1/models/cancer-mlp/versions/1/predict?alias=prod", {"instances": [CANCER_ROW]}),
    _post("/v2/models/diabetes-mlp/infer?x=1", {"inputs": [_tensor()]}),
    _post("/v1/models/:predict", {"instances": [CANCER_ROW]}),
    _post("/v1/models/no-such:predict", {"instances": [CANCER_ROW]}),
    _post("/v1/models/cancer-mlp:explain", {"instances": [CANCER_ROW]}),
    _post("/v2/models/digits-cnn/infer", {"inputs": [_tensor("image", (1, 8, 8), "INT32", DIGIT_ZERO)]}),
    _post("/v2/models/diabetes-mlp/infer", {"inputs": [_tensor(datatype="FP64")]}),
    _post("/v1/models/" + "a" * 5000 + "/predict", {"instances": [CANCER_ROW]}),
]
REQUESTS = [*GOOD, *[(m, p, h, c) for m, p, h, c, *_ in CASES], *EXTRA_BAD]


def test_the_differential_corpus_is_large_enough() -> None:
    assert len(REQUESTS) - len(GOOD) >= 100


@pytest.fixture(scope="module")
def fastapi_url(fastapi_app: Any) -> Iterator[str]:
    with LiveServer(fastapi_app) as url:
        yield url


def _send(base: str, request: Request) -> httpx.Response:
    method, path, headers, content = request
    with httpx.Client(base_url=base, timeout=30) as http:
        return http.request(method, path, headers=headers, content=content)


@pytest.mark.parametrize("request_", REQUESTS, ids=[f"{i:03d}-{r[0]}-{r[1][:40]}" for i, r in enumerate(REQUESTS)])
def test_fast_front_and_fastapi_answer_alike(base_url: str, fastapi_url: str, request_: Request) -> None:
    fast, slow = _send(base_url, request_), _send(fastapi_url, request_)
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers.get("content-type") == slow.headers.get("content-type")
    assert fast.content == slow.content
    assert fast.status_code < 500 or fast.status_code == 503


def test_good_requests_succeed_on_the_fast_front(base_url: str) -> None:
    for request in GOOD:
        assert _send(base_url, request).status_code == 200, request[1]
