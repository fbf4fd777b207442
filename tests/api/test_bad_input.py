"""Bad input gets a 4xx with a JSON body naming the problem; never a 5xx; the server stays up."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.samples import CANCER_ROW, DIABETES_ROW, DIGIT_ZERO

JSON = {"content-type": "application/json"}
Case = tuple[str, str, dict[str, str], bytes, int, str, str]


def _predict(model: str, instances: Any, status: int = 422, fragment: str = "") -> Case:
    return ("POST", f"/v1/models/{model}/predict", JSON, json.dumps({"instances": instances}).encode(), status,
            "invalid_input", fragment)


def _raw(body: bytes, status: int, code: str, fragment: str = "", headers: dict[str, str] | None = None,
         path: str = "/v1/models/diabetes-mlp/predict") -> Case:
    return ("POST", path, headers if headers is not None else JSON, body, status, code, fragment)


def _infer(model: str, payload: Any, fragment: str, status: int = 422, code: str = "invalid_input") -> Case:
    return ("POST", f"/v2/models/{model}/infer", JSON, json.dumps(payload).encode(), status, code, fragment)


def _tensor(name: str = "features", shape: Any = (1, 10), datatype: str = "FP32", data: Any = None) -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "datatype": datatype,
            "data": list(DIABETES_ROW.values()) if data is None else data}


def _get(path: str, status: int, code: str, fragment: str = "") -> Case:
    return ("GET", path, {}, b"", status, code, fragment)


DIGIT_FLAT = [pixel for row in DIGIT_ZERO for pixel in row]
DIGIT_SHORT_ROW = [row[:] for row in DIGIT_ZERO]
DIGIT_SHORT_ROW[3] = DIGIT_SHORT_ROW[3][:7]

MALFORMED = [
    _raw(b"{", 400, "malformed_json", "not valid JSON"),
    _raw(b'{"instances": [1,]}', 400, "malformed_json"),
    _raw(b"{'instances': []}", 400, "malformed_json"),
    _raw(b'{"instances": [1]} trailing', 400, "malformed_json"),
    _raw(b'{"instances": [NaN]}', 400, "malformed_json"),
    _raw(b'{"instances": [Infinity]}', 400, "malformed_json"),
    _raw(b'{"instances": [1e999]}', 400, "malformed_json", "infinity"),
    _raw(b"", 400, "malformed_json", "empty"),
    _raw(b"\xff\xfe\x00{", 400, "malformed_json"),
    _raw(b'{"instances": ["\xc3\x28"]}', 400, "malformed_json", "UTF-8"),
    _raw(b'{"instances": ["\\ud800"]}', 400, "malformed_json"),
    _raw(b"[" * 5000 + b"]" * 5000, 400, "malformed_json", "depth"),
    _raw(b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, "malformed_json", "depth"),
    _raw(b"nul", 400, "malformed_json"),
    _raw(b'{"instances": [1]', 400, "malformed_json"),
    _raw(b"\x00\x00\x00", 400, "malformed_json"),
]
CONTENT_TYPE = [
    _raw(b'{"instances": []}', 415, "unsupported_media_type", "text/plain", {"content-type": "text/plain"}),
    _raw(b"instances=1", 415, "unsupported_media_type", "", {"content-type": "application/x-www-form-urlencoded"}),
    _raw(b'{"instances": []}', 415, "unsupported_media_type", "none", {}),
    _raw(b"<x/>", 415, "unsupported_media_type", "", {"content-type": "application/xml"}),
    _raw(b"--b--", 415, "unsupported_media_type", "", {"content-type": "multipart/form-data; boundary=b"}),
    _raw(b'{"instances": []}', 415, "unsupported_media_type", "", {"content-type": "application/jsonp"}),
    _raw(b'{"inputs": []}', 415, "unsupported_media_type", "", {"content-type": "text/csv"},
         path="/v2/models/diabetes-mlp/infer"),
]
TOO_LARGE = [
    _raw(json.dumps({"instances": ["x" * 70_000]}).encode(), 413, "too_large", "limit"),
    _raw(json.dumps({"inputs": [_tensor(data=[1.0] * 20_000)]}).encode(), 413, "too_large", "limit",
         path="/v2/models/diabetes-mlp/infer"),
]
ENVELOPE = [
    _raw(b"[]", 422, "invalid_input", "JSON object"),
    _raw(b'"instances"', 422, "invalid_input", "JSON object"),
    _raw(b"42", 422, "invalid_input", "JSON object"),
    _raw(b"null", 422, "invalid_input", "JSON object"),
    _raw(b"{}", 422, "invalid_input", "'instances' must be a list"),
    _raw(b'{"instances": {"age": 1}}', 422, "invalid_input", "must be a list"),
    _raw(b'{"instances": "abc"}', 422, "invalid_input", "must be a list"),
    _raw(b'{"instances": []}', 422, "invalid_input", "empty"),
    _raw(b'{"instances": [[1,2,3,4,5,6,7,8,9,10]], "extra": 1}', 422, "invalid_input", "unknown field"),
    _raw(json.dumps({"instances": [DIABETES_ROW] * 65}).encode(), 422, "invalid_input", "exceed the limit of 64"),
]
DIGITS = [
    _predict("digits-cnn", [DIGIT_ZERO[:7]], fragment="expected shape [8, 8]"),
    _predict("digits-cnn", [DIGIT_FLAT[:63]], fragment="expected shape [8, 8]"),
    _predict("digits-cnn", [[*DIGIT_FLAT, 0]], fragment="expected shape [8, 8]"),
    _predict("digits-cnn", [DIGIT_SHORT_ROW], fragment="expected numbers"),
    _predict("digits-cnn", [[[-1] * 8] * 8], fragment="pixel values must lie in [0, 16]"),
    _predict("digits-cnn", [[[17] * 8] * 8], fragment="pixel values must lie in [0, 16]"),
    _predict("digits-cnn", [[["a"] * 8] * 8], fragment="expected numbers"),
    _predict("digits-cnn", [None], fragment="expected numbers"),
    _predict("digits-cnn", ["0" * 64], fragment="expected numbers"),
    _predict("digits-cnn", [{"pixels": DIGIT_ZERO}], fragment="expected numbers"),
    _predict("digits-cnn", [DIGIT_ZERO, [[0] * 8] * 9], fragment="instance 1"),
    _predict("digits-cnn", [[[[0] * 8] * 8]], fragment="expected shape"),
    _predict("digits-cnn", [[]], fragment="expected shape"),
    _predict("digits-cnn", [[[None] * 8] * 8], fragment="expected numbers"),
]
CANCER = [
    _predict("cancer-mlp", [{"mean radius": 1.0}], fragment="missing features"),
    _predict("cancer-mlp", [CANCER_ROW[:29]], fragment="expected shape [30]"),
    _predict("cancer-mlp", [[*CANCER_ROW, 1.0]], fragment="expected shape [30]"),
    _predict("cancer-mlp", [[str(v) for v in CANCER_ROW]], fragment="expected numbers"),
    _predict("cancer-mlp", [[True] * 30], fragment="got booleans"),
    _predict("cancer-mlp", [42], fragment="expected shape [30]"),
    _predict("cancer-mlp", ["row"], fragment="expected numbers"),
]
DIABETES = [
    _predict("diabetes-mlp", [{**DIABETES_ROW, "height": 180}], fragment="unknown features ['height']"),
    _predict("diabetes-mlp", [{k: v for k, v in DIABETES_ROW.items() if k != "bmi"}],
             fragment="missing features ['bmi']"),
    _predict("diabetes-mlp", [{**DIABETES_ROW, "bmi": "27"}], fragment="feature 'bmi' must be a number"),
    _predict("diabetes-mlp", [{**DIABETES_ROW, "bmi": None}], fragment="feature 'bmi' must be a number"),
    _predict("diabetes-mlp", [{**DIABETES_ROW, "bmi": True}], fragment="feature 'bmi' must be a number"),
    _predict("diabetes-mlp", [{**DIABETES_ROW, "bmi": [27]}], fragment="feature 'bmi' must be a number"),
    _predict("diabetes-mlp", [{**DIABETES_ROW, "bmi": {"v": 1}}], fragment="feature 'bmi' must be a number"),
    _predict("diabetes-mlp", [{}], fragment="missing features"),
    _predict("diabetes-mlp", [DIABETES_ROW, {"AGE": 1}], fragment="instance 1"),
    _predict("diabetes-mlp", [list(DIABETES_ROW.values())[:9]], fragment="expected shape [10]"),
    _predict("diabetes-mlp", [[list(DIABETES_ROW.values())]], fragment="expected shape [10]"),
    _predict("diabetes-mlp", [[1e308] * 9 + ["x"]], fragment="expected numbers"),
]
TEXT = [
    _predict("text-lstm", [""], fragment="empty text"),
    _predict("text-lstm", ["   \n\t"], fragment="empty text"),
    _predict("text-lstm", [5], fragment="expected a string, got int"),
    _predict("text-lstm", [None], fragment="expected a string"),
    _predict("text-lstm", [["nested"]], fragment="expected a string"),
    _predict("text-lstm", [{"text": "hi"}], fragment="expected a string"),
    _predict("text-lstm", [True], fragment="expected a string"),
    _predict("text-lstm", ["a" * 2001], fragment="longer than 2000 characters"),
    _predict("text-lstm", ["fine", ""], fragment="instance 1"),
]
NAMES = [
    _get("/v1/models/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
    _get("/v1/models/%2e%2e", 404, "invalid_name"),
    _get("/v1/models/..", 404, "not_found"),
    _get("/v1/models/%00", 404, "invalid_name"),
    _get("/v1/models/digits-cnn%00", 404, "invalid_name"),
    _get("/v1/models/Digits-CNN", 404, "invalid_name"),
    _get("/v1/models/" + "a" * 200, 404, "invalid_name"),
    _get("/v1/models/%5C..%5Cetc", 404, "invalid_name"),
    _get("/v1/models/caf%C3%A9", 404, "invalid_name"),
    _get("/v1/models/no-such-model", 404, "not_found", "has no published version"),
    _get("/v1/models/digits-cnn?alias=..%2Fx", 404, "invalid_name"),
    _get("/v1/models/digits-cnn?alias=staging", 404, "not_found", "no alias 'staging'"),
    _get("/v1/models/digits-cnn?alias=", 404, "invalid_name"),
    _get("/v2/models/%2Fetc%2Fpasswd", 404, "not_found"),
    _get("/v2/models/no-such-model/ready", 404, "not_found"),
    _get("/v2/models/digits-cnn/versions/0", 404, "invalid_name"),
    _get("/v2/models/digits-cnn/versions/99", 404, "not_found"),
    _get("/no/such/route", 404, "not_found", "no route"),
    _get("/v1/models/digits-cnn/predict", 405, "method_not_allowed"),
    *[("POST", f"/v1/models/digits-cnn/versions/{v}/predict", JSON, json.dumps({"instances": [DIGIT_ZERO]}).encode(),
       404, code, "") for v, code in [("0", "invalid_name"), ("01", "invalid_name"), ("-1", "invalid_name"),
                                      ("1.0", "invalid_name"), ("latest", "invalid_name"),
                                      ("%2e%2e", "invalid_name"), ("1%00", "invalid_name"), ("99999", "not_found")]],
    ("POST", "/v1/models/no-such-model/predict", JSON, b'{"instances": [1]}', 404, "not_found", ""),
    ("POST", "/v1/models/%2E%2E%2Fsecrets/predict", JSON, b'{"instances": [1]}', 404, "not_found", ""),
]
OIP = [
    _infer("diabetes-mlp", {}, "'inputs' list"),
    _infer("diabetes-mlp", {"inputs": "x"}, "'inputs' list"),
    _infer("diabetes-mlp", [], "'inputs' list"),
    _infer("diabetes-mlp", {"inputs": []}, "exactly one input"),
    _infer("diabetes-mlp", {"inputs": [_tensor(), _tensor()]}, "exactly one input"),
    _infer("diabetes-mlp", {"inputs": [_tensor(name="x")]}, "unknown input 'x'"),
    _infer("diabetes-mlp", {"inputs": [_tensor(datatype="BYTES", data=["a"] * 10)]}, "must have datatype FP32"),
    _infer("diabetes-mlp", {"inputs": [_tensor(datatype="FP8")]}, "unsupported datatype"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape=(1, 9), data=[1.0] * 9)]}, "does not match"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape=(2, 10))]}, "10 elements for shape [2, 10]"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape=(10,))]}, "does not match"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape=(1, -10))]}, "non-negative integers"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape="1,10")]}, "non-negative integers"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape=(0, 10), data=[])]}, "has no rows"),
    _infer("diabetes-mlp", {"inputs": [_tensor(shape=(65, 10), data=[1.0] * 650)]}, "exceed the limit"),
    _infer("diabetes-mlp", {"inputs": [_tensor(data=["a"] * 10)]}, "must be numbers"),
    _infer("diabetes-mlp", {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32"}]}, "no 'data'"),
    _infer("diabetes-mlp", {"inputs": [_tensor(data=[None] * 10)]}, "must be numbers"),
    _infer("diabetes-mlp", {"inputs": [{**_tensor(), "parameters": {"binary_data_size": 40}}]},
           "exceeds the binary section"),
    _infer("diabetes-mlp", {"inputs": [_tensor()], "outputs": [{"name": "nope"}]}, "unknown output"),
    _infer("diabetes-mlp", {"inputs": [_tensor()], "outputs": "value"}, "'outputs' must be a list"),
    _infer("diabetes-mlp", {"inputs": ["features"]}, "each input must be an object"),
    _infer("text-lstm", {"inputs": [_tensor(name="text", shape=(1,), datatype="BYTES", data=[""])]}, "empty text"),
    _infer("text-lstm", {"inputs": [_tensor(name="text", shape=(1,), datatype="BYTES", data=[7])]},
           "BYTES elements must be strings"),
    _infer("text-lstm", {"inputs": [_tensor(name="text", shape=(2,), datatype="BYTES", data=["a"])]},
           "1 elements for shape [2]"),
    _infer("text-lstm", {"inputs": [_tensor(name="text", shape=(1,), datatype="FP32", data=[1.0])]},
           "must have datatype BYTES"),
    _infer("digits-cnn", {"inputs": [_tensor(name="image", shape=(1, 8, 8), data=[99.0] * 64)]},
           "pixel values must lie in"),
    _infer("digits-cnn", {"inputs": [_tensor(name="image", shape=(1, 64), data=[1.0] * 64)]}, "does not match"),
    _infer("no-such-model", {"inputs": [_tensor()]}, "has no published version", 404, "not_found"),
    ("POST", "/v2/models/diabetes-mlp/infer", {**JSON, "inference-header-content-length": "999999"},
     json.dumps({"inputs": [_tensor()]}).encode(), 400, "malformed_request", "Inference-Header-Content-Length"),
    ("POST", "/v2/models/diabetes-mlp/infer", JSON, b'{"inputs": [', 400, "malformed_json", ""),
]
CASES = MALFORMED + CONTENT_TYPE + TOO_LARGE + ENVELOPE + DIGITS + CANCER + DIABETES + TEXT + NAMES + OIP


def test_the_suite_is_large_enough() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize(("method", "path", "headers", "content", "status", "code", "fragment"), CASES,
                         ids=[f"{i:03d}-{c[1][:40]}" for i, c in enumerate(CASES)])
def test_bad_input_gets_a_named_4xx(client: httpx.Client, method: str, path: str, headers: dict[str, str],
                                    content: bytes, status: int, code: str, fragment: str) -> None:
    response = client.request(method, path, headers=headers, content=content)
    assert response.status_code < 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code, body
    assert fragment in body["error"], body


def test_the_server_still_serves_after_the_bad_input(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").status_code == 200
    ok = client.post("/v1/models/diabetes-mlp/predict", json={"instances": [DIABETES_ROW]})
    assert ok.status_code == 200
