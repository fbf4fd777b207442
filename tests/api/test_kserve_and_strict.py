"""KServe v1 route aliases, unknown query parameters, truncated echoed names, strict v2 datatypes and binary
lengths (issue 17), on the fast front (the FastAPI app answers the same: see test_fast_front's corpus)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import httpx
import pytest

from tests.api.samples import CANCER_ROW, DIABETES_ROW, DIGIT_ZERO
from tests.api.test_bad_input import _tensor

DIABETES = list(DIABETES_ROW.values())


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def test_kserve_v1_predict_is_the_alias_route(http: httpx.Client) -> None:
    body = {"instances": [CANCER_ROW, CANCER_ROW]}
    kserve = http.post("/v1/models/cancer-mlp:predict", json=body)
    plain = http.post("/v1/models/cancer-mlp/predict", json=body)
    assert kserve.status_code == 200
    assert kserve.content == plain.content
    assert len(kserve.json()["predictions"]) == 2
    prod = http.post("/v1/models/cancer-mlp:predict?alias=prod", json=body)
    assert prod.json()["version"] == "1"


def test_unknown_query_parameters_are_422_naming_them(http: httpx.Client) -> None:
    answer = http.post("/v1/models/cancer-mlp/predict?version=2", json={"instances": [CANCER_ROW]})
    assert answer.status_code == 422
    assert answer.json()["code"] == "unknown_parameter"
    assert "'version'" in answer.json()["error"] and "versions/VERSION" in answer.json()["error"]
    for path in ("/v1/models/cancer-mlp/versions/1/predict?alias=prod", "/v2/models/diabetes-mlp/infer?x=1"):
        assert http.post(path, json={"instances": [CANCER_ROW], "inputs": [_tensor()]}).status_code == 422
    long_param = http.post("/v1/models/cancer-mlp/predict?" + "p" * 3000 + "=1", json={"instances": [CANCER_ROW]})
    assert long_param.status_code == 422 and len(long_param.content) < 300


def test_invalid_names_are_echoed_truncated(http: httpx.Client) -> None:
    answer = http.post("/v1/models/" + "a" * 5000 + "/predict", json={"instances": [CANCER_ROW]})
    assert answer.status_code == 404
    assert "'" + "a" * 64 + "...'" in answer.json()["error"]
    assert len(answer.content) < 300
    alias = http.post("/v1/models/cancer-mlp/predict?alias=" + "B" * 500, json={"instances": [CANCER_ROW]})
    assert "B" * 64 + "..." in alias.json()["error"] and len(alias.content) < 300


@pytest.mark.parametrize("datatype", ["FP64", "INT32", "FP16", "INT64"])
def test_v2_datatypes_are_strict_like_triton(http: httpx.Client, datatype: str) -> None:
    answer = http.post("/v2/models/diabetes-mlp/infer", json={"inputs": [_tensor(datatype=datatype)]})
    assert answer.status_code == 422
    assert answer.json()["error"] == f"input 'features' must have datatype FP32, got {datatype}"
    image = http.post("/v2/models/digits-cnn/infer", json={"inputs": [_tensor("image", (1, 8, 8), datatype,
                                                                               DIGIT_ZERO)]})
    assert image.status_code == 422
    assert http.post("/v2/models/diabetes-mlp/infer", json={"inputs": [_tensor()]}).status_code == 200


def _binary(tail: bytes) -> tuple[bytes, dict[str, str]]:
    raw = struct.pack(f"<{len(DIABETES)}f", *DIABETES)
    header = (b'{"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32", '
              b'"parameters": {"binary_data_size": %d}}]}' % len(raw))
    return header + raw + tail, {"content-type": "application/octet-stream",
                                 "inference-header-content-length": str(len(header))}


def test_trailing_bytes_after_binary_tensors_are_400(http: httpx.Client) -> None:
    body, headers = _binary(b"")
    assert http.post("/v2/models/diabetes-mlp/infer", content=body, headers=headers).status_code == 200
    for tail in (b"\x00", b"\x00" * 40):
        body, headers = _binary(tail)
        answer = http.post("/v2/models/diabetes-mlp/infer", content=body, headers=headers)
        assert answer.status_code == 400
        assert f"{len(tail)} bytes follow the binary tensors" in answer.json()["error"]


def test_json_tensor_with_a_binary_section_is_400(http: httpx.Client) -> None:
    header = b'{"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32", "data": %s}]}' % (
        str(DIABETES).encode())
    answer = http.post("/v2/models/diabetes-mlp/infer", content=header + b"junk",
                       headers={"content-type": "application/octet-stream",
                                "inference-header-content-length": str(len(header))})
    assert answer.status_code == 400


def test_413_names_the_jobs_endpoint(http: httpx.Client) -> None:
    answer = http.post("/v1/models/cancer-mlp/predict", content=b"[" + b"1," * 40000 + b"1]",
                       headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert "POST /v1/models/NAME/jobs" in answer.json()["error"]
