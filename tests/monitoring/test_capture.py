"""Prediction capture through the real app (uvicorn on loopback and the Lambda handler): masking checked on the
bytes written, sampling, records usable by ``maas drift``, and sinks that fail without touching the answer."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from mangum import Mangum

from functions.api.app import create_app
from functions.core import capture
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from model_build.recipes import load_recipe
from tests.api.conftest import LiveServer
from tests.api.samples import DIABETES_ROW, DIGIT_ZERO, TEXTS
from tests.events import LambdaContext, http_api_event

MASKS = json.dumps({"diabetes-mlp": {"drop": ["bmi"], "hash": ["age"]}, "*": {"drop": []}})


@pytest.fixture(scope="module")
def server(monitor_store: LocalStore) -> Iterator[str]:
    settings = Settings(store=monitor_store.uri)
    with LiveServer(create_app(settings, ModelCache(monitor_store, settings))) as url:
        yield url


@pytest.fixture(autouse=True)
def capture_off() -> Iterator[None]:
    yield
    capture.configure(env={})


def _captured(root: Path) -> bytes:
    state = capture.state()
    assert isinstance(state.sink, capture.DirectorySink)
    state.sink.flush()
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*.jsonl")))


def test_masked_fields_and_raw_text_never_reach_the_bytes_written(server: str, tmp_path: Path) -> None:
    capture.configure(rate=1.0, directory=tmp_path, masks=MASKS, env={"MAAS_CAPTURE_HASH_KEY": "secret"})
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.post("/v1/models/diabetes-mlp/predict", json={"instances": [DIABETES_ROW]},
                           headers={"x-request-id": "req-1"}).status_code == 200
        oip = {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32",
                           "data": list(DIABETES_ROW.values())}]}
        assert client.post("/v2/models/diabetes-mlp/infer", json=oip).status_code == 200
        assert client.post("/v1/models/text-lstm/predict", json={"instances": TEXTS}).status_code == 200
        assert client.post("/v1/models/digits-cnn/predict", json={"instances": [DIGIT_ZERO]}).status_code == 200
    written = _captured(tmp_path)
    assert b'"bmi"' not in written and b"27.5" not in written  # dropped
    assert b'"age":50' not in written and written.count(b'"age":"hmac:') == 2  # hashed, v1 dicts and v2 arrays
    assert b"striker" not in written and b"rain" not in written.lower()  # raw text is not kept by default
    records = [orjson.loads(line) for line in written.splitlines()]
    assert {(r["model"], r["version"]) for r in records} == {("diabetes-mlp", "1"), ("text-lstm", "1"),
                                                             ("digits-cnn", "1")}
    first = next(r for r in records if r.get("request_id") == "req-1")
    assert first["maas_capture"] == 1 and first["time"].startswith(first["day"])
    assert set(first["inputs"][0]) == {"age", "sex", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}
    assert isinstance(first["outputs"][0]["value"], float)
    text = next(r for r in records if r["model"] == "text-lstm")
    assert set(text["inputs"][0]) == {"tokens", "unknown_rate"} and text["outputs"][0]["label"]
    day = first["day"]
    assert (tmp_path / "diabetes-mlp" / "1" / f"{day}.jsonl").is_file()


def test_raw_text_is_kept_only_when_allowed(server: str, tmp_path: Path) -> None:
    capture.configure(rate=1.0, directory=tmp_path, masks=json.dumps({"text-lstm": {"raw_text": True}}))
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.post("/v1/models/text-lstm/predict", json={"instances": TEXTS}).status_code == 200
    assert b"striker scored twice" in _captured(tmp_path)


def test_sampling_keeps_about_the_rate(monitor_store: LocalStore, tmp_path: Path) -> None:
    from functions.core.inference import run_model

    capture.configure(rate=0.25, directory=tmp_path)
    model = ModelCache(monitor_store, Settings(store=monitor_store.uri)).get("diabetes-mlp", None, None)
    output = run_model(model, [DIABETES_ROW])
    random.seed(0)
    for i in range(400):
        capture.record(model, [DIABETES_ROW], output, f"r{i}")
    assert 60 <= capture.state().captured <= 140
    assert len(_captured(tmp_path).splitlines()) == capture.state().captured


def test_capture_off_writes_nothing(monitor_store: LocalStore, capsys: pytest.CaptureFixture[str]) -> None:
    state = capture.configure(env={})
    model = ModelCache(monitor_store, Settings(store=monitor_store.uri)).get("diabetes-mlp", None, None)
    capture.record(model, [DIABETES_ROW], np.zeros((1, 1)), "r")
    assert state.rate == 0.0 and state.captured == 0 and "maas_capture" not in capsys.readouterr().out


class _BrokenSink:
    def write(self, record: dict[str, Any], line: bytes) -> None:
        raise OSError("sink is gone")


def test_dead_sinks_still_answer_200(server: str, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the capture folder should be")
    state = capture.configure(rate=1.0, directory=blocked)
    with httpx.Client(base_url=server, timeout=30) as client:
        for _ in range(3):
            response = client.post("/v1/models/diabetes-mlp/predict", json={"instances": [DIABETES_ROW]})
            assert response.status_code == 200 and "value" in response.json()["predictions"][0]
        assert isinstance(state.sink, capture.DirectorySink)
        state.sink.flush()
        assert state.sink.failed == 3 and state.sink.written == 0
        state.sink = _BrokenSink()
        response = client.post("/v2/models/diabetes-mlp/infer", json={"inputs": [
            {"name": "features", "shape": [1, 10], "datatype": "FP32", "data": list(DIABETES_ROW.values())}]})
        assert response.status_code == 200 and state.dropped == 1


def test_lambda_writes_one_marked_log_line_per_captured_request(monitor_store: LocalStore,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    capture.configure(env={"AWS_LAMBDA_FUNCTION_NAME": "maas-api", "MAAS_CAPTURE_RATE": "1",
                           "MAAS_CAPTURE_MASK": MASKS})
    settings = Settings(store=monitor_store.uri)
    handler = Mangum(create_app(settings, ModelCache(monitor_store, settings)), lifespan="off")
    event = http_api_event("POST", "/v1/models/diabetes-mlp/predict", orjson.dumps({"instances": [DIABETES_ROW]}))
    response = handler(event, LambdaContext())
    assert response["statusCode"] == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"maas_capture"' in line]
    assert len(lines) == 1 and lines[0]["model"] == "diabetes-mlp" and "bmi" not in lines[0]["inputs"][0]
    assert lines[0]["request_id"] == LambdaContext().aws_request_id


def test_bad_capture_settings_fail_at_start_up() -> None:
    for env in ({"MAAS_CAPTURE_RATE": "2", "AWS_LAMBDA_FUNCTION_NAME": "f"}, {"MAAS_CAPTURE_MASK": "[1]"},
                {"MAAS_CAPTURE_MASK": '{"m": {"drop": "bmi"}}'}, {"MAAS_CAPTURE_MASK": '{"m": {"strip": []}}'}):
        with pytest.raises(capture.CaptureConfigError):
            capture.configure(env=env)


def test_captured_folder_feeds_maas_drift(server: str, tmp_path: Path, monitor_store: LocalStore) -> None:
    from maas.drift import drift_report

    capture.configure(rate=1.0, directory=tmp_path / "capture")
    data = load_recipe("cancer-mlp").load_data(True)
    rows = np.asarray(data.x_test).tolist()
    with httpx.Client(base_url=server, timeout=30) as client:
        for start in range(0, len(rows), 20):
            assert client.post("/v1/models/cancer-mlp/versions/1/predict",
                               json={"instances": rows[start:start + 20]}).status_code == 200
    _captured(tmp_path / "capture")
    report = drift_report("cancer-mlp", str(tmp_path / "capture"), "1", None, monitor_store.uri)
    assert report["records"] == (len(rows) + 19) // 20 and report["rows"] == len(rows)
    assert report["features_over_threshold"] == [] and report["prediction"]["psi"] < 0.05


def test_the_fast_line_is_the_records_json(monitor_store: LocalStore) -> None:
    """The line ``record`` writes is byte for byte ``make_record``'s document as JSON (the format the drift job
    and Firehose's partitioning read)."""
    settings = Settings(store=monitor_store.uri)
    cache = ModelCache(monitor_store, settings)
    state = capture.configure(env={"MAAS_CAPTURE_MASK": MASKS})
    for name, instances in (("diabetes-mlp", [DIABETES_ROW, DIABETES_ROW]), ("text-lstm", ["a b c"])):
        model = cache.get(name)
        output = np.zeros((len(instances), len(model.manifest.labels or [0])), dtype=np.float32) + 0.25
        where, line = capture._line(model, instances, output, 'r-"1"', state)
        document = capture.make_record(model, instances, output, 'r-"1"', state)
        document["time"] = orjson.loads(line)["time"]  # the two calls read the clock apart
        assert line == orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
        assert where == {"model": name, "version": document["version"], "day": document["day"]}
        where["day"] = "changed by a sink"  # each record gets its own copy of the cached fields
        assert capture._line(model, instances, output, "r", state)[0]["day"] == document["day"]
