"""``maas import`` of .onnx files (a PyTorch export, skl2onnx converters with and without ZipMap), served like
built models: v1, KServe v1, v2, explain, batch, drift, console; predictions checked against the originals'."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from functions.api.front import create_front
from functions.core import catalog
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer
from tests.importers.conftest import IRIS_FEATURES, IRIS_LABELS, Sources, run_cli, torch_logits


@pytest.fixture(scope="module")
def settings(imported: LocalStore) -> Settings:
    return Settings(store=imported.uri, alias_ttl_seconds=30)


@pytest.fixture(scope="module")
def cache(imported: LocalStore, settings: Settings) -> ModelCache:
    return ModelCache(imported, settings)


@pytest.fixture(scope="module")
def http(cache: ModelCache, settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_front(settings, cache)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def _original(path: Path, x: np.ndarray) -> list[object]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_zipmap_classifier_serves_the_originals_labels_and_probabilities(http: httpx.Client,
                                                                         sources: Sources) -> None:
    rows = sources.iris_x[::7]
    labels, maps = _original(sources["iris.onnx"], rows)
    instances = [dict(zip(IRIS_FEATURES, map(float, row), strict=True)) for row in rows]
    answer = http.post("/v1/models/iris/predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    for prediction, label, probabilities in zip(predictions, labels, maps, strict=True):  # type: ignore[call-overload]
        assert prediction["label"] == IRIS_LABELS[int(label)]
        served = [prediction["probabilities"][name] for name in IRIS_LABELS]
        np.testing.assert_allclose(served, [probabilities[i] for i in range(3)], atol=1e-5)
    kserve = http.post("/v1/models/iris:predict", json={"instances": instances})
    assert kserve.json()["predictions"] == predictions


def test_v2_infer_returns_the_probability_tensor(http: httpx.Client, sources: Sources) -> None:
    rows = sources.iris_x[:5]
    _, maps = _original(sources["iris.onnx"], rows)
    body = {"inputs": [{"name": "X", "shape": [5, 4], "datatype": "FP32", "data": rows.ravel().tolist()}]}
    answer = http.post("/v2/models/iris/infer", json=body)
    assert answer.status_code == 200, answer.text
    output, label = answer.json()["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [5, 3]
    expected = [[m[i] for i in range(3)] for m in maps]  # type: ignore[attr-defined]
    np.testing.assert_allclose(np.reshape(output["data"], (5, 3)), expected, atol=1e-5)
    assert label["data"] == ["setosa"] * 5
    metadata = http.get("/v2/models/iris").json()
    assert metadata["inputs"][0]["shape"] == [-1, 4]


def test_tensor_classifier_without_zipmap_and_without_sample(http: httpx.Client, sources: Sources) -> None:
    rows = sources.cancer_x[:12]
    labels, probabilities = _original(sources["cancer.onnx"], rows)
    answer = http.post("/v1/models/cancer/predict", json={"instances": rows.tolist()})
    assert answer.status_code == 200, answer.text
    for prediction, label, row in zip(answer.json()["predictions"], labels, probabilities, strict=True):  # type: ignore[call-overload]
        assert prediction["label"] == str(int(label))
        np.testing.assert_allclose([prediction["probabilities"]["0"], prediction["probabilities"]["1"]], row,
                                   atol=1e-5)
    v2 = http.post("/v2/models/cancer/infer", json={"inputs": [
        {"name": "X", "shape": [2, 30], "datatype": "FP32", "data": rows[:2].ravel().tolist()}]})
    assert v2.status_code == 200 and v2.json()["outputs"][1]["data"] == [str(int(v)) for v in labels[:2]]  # type: ignore[index]
    explain = http.post("/v1/models/cancer/explain", json={"instances": rows[:1].tolist()})
    assert explain.status_code == 422
    assert explain.json()["code"] == "no_background"
    assert "--sample" in explain.json()["error"]


def test_pytorch_export_serves_softmax_of_the_modules_logits(http: httpx.Client, sources: Sources,
                                                            imported: LocalStore) -> None:
    rows = sources.cancer_x[:16]
    logits = torch_logits(sources["mlp.onnx"], rows)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    answer = http.post("/v1/models/mlp/predict", json={"instances": rows.tolist()})
    assert answer.status_code == 200, answer.text
    for prediction, row in zip(answer.json()["predictions"], expected, strict=True):
        assert prediction["label"] == ["no", "yes"][int(row.argmax())]
        np.testing.assert_allclose([prediction["probabilities"]["no"], prediction["probabilities"]["yes"]], row,
                                   atol=1e-4)
    manifest = catalog.read_manifest(imported, "mlp", "1")
    assert manifest.selected.get("gpu") == "fp16"  # the GPU worker's variant, gated against the original too
    assert "Softmax" in manifest.description


def test_explain_answers_with_the_sample_as_background(http: httpx.Client, sources: Sources) -> None:
    instance = dict(zip(IRIS_FEATURES, map(float, sources.iris_x[60]), strict=True))
    answer = http.post("/v1/models/iris/explain", json={"instances": [instance]})
    assert answer.status_code == 200, answer.text
    (explained,) = answer.json()["explanations"]
    assert set(explained["attributions"]) == set(IRIS_FEATURES)


def test_batch_and_drift_use_the_same_predictions(http: httpx.Client, sources: Sources, imported: LocalStore,
                                                   tmp_path: Path) -> None:
    code, _, err = run_cli("batch", "iris", "--input", sources["iris.csv"], "--output", tmp_path / "out",
                           "--store", imported.uri)
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 150
    first = dict(zip(IRIS_FEATURES, map(float, sources.iris_x[0]), strict=True))
    served = http.post("/v1/models/iris/predict", json={"instances": [first]}).json()["predictions"][0]
    assert lines[0]["label"] == served["label"]
    assert lines[0]["probabilities"] == pytest.approx(served["probabilities"], abs=1e-6)
    code, out, _ = run_cli("drift", "iris", "--input", sources["iris.csv"], "--json", "--store", imported.uri)
    assert code == 0 and json.loads(out)["status"] != "no_reference"
    np.save(tmp_path / "cancer.npy", sources.cancer_x[:50])
    code, out, _ = run_cli("drift", "cancer", "--input", tmp_path / "cancer.npy", "--json", "--store", imported.uri)
    assert code == 0 and json.loads(out)["status"] == "no_reference"


def test_card_console_and_manifest_name_the_source(http: httpx.Client, sources: Sources,
                                                   imported: LocalStore) -> None:
    digest = hashlib.sha256(sources["iris.onnx"].read_bytes()).hexdigest()
    summary = http.get("/v1/models/iris/versions/1").json()
    assert summary["provenance"]["imported_from"]["sha256"] == digest
    assert summary["provenance"]["imported_from"]["kind"] == "onnx"
    card = http.get("/v1/models/iris/versions/1/card").text
    assert f"imported from: `iris.onnx` (onnx), sha256 {digest}" in card
    assert "| versicolor |" in card  # per-class precision/recall/F1 from --eval
    manifest = catalog.read_manifest(imported, "iris", "1")
    assert manifest.evaluation is not None and manifest.evaluation["macro"]["f1"] > 0.9
    assert manifest.labels == IRIS_LABELS
    skipped = {v.name: v.reason for v in manifest.variants if v.file is None}
    assert "no operator of this graph has an fp16 form" in skipped["fp16"]  # ai.onnx.ml only: skipped, no crash
    assert set(skipped) >= {"int8-dynamic", "int8-static"}
    assert {g.name for g in manifest.gates} >= {"parity", "label output = top class"}


def test_imported_versions_may_share_session_runs(cache: ModelCache) -> None:
    for name in ("iris", "cancer", "mlp", "cnn", "diabetes"):
        model = cache.get(name, "1")
        assert model.joinable, name  # batch axis named on every input and output: rows are independent


def test_image_model_serves_the_modules_predictions(http: httpx.Client, sources: Sources,
                                                    imported: LocalStore) -> None:
    images = np.load(sources["digits.npy"])[:6]
    logits = torch_logits(sources["cnn.onnx"], images[:, None])
    answer = http.post("/v1/models/cnn/predict", json={"instances": images.tolist()})
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == [str(i) for i in logits.argmax(axis=1)]
    manifest = catalog.read_manifest(imported, "cnn", "1")
    assert manifest.preprocessing.kind == "image" and manifest.preprocessing.shape == [8, 8]
    assert manifest.preprocessing.value_range == (0.0, 255.0)  # what the sample's values imply


def test_regressor_serves_values_and_reports_mae_and_r2(http: httpx.Client, sources: Sources,
                                                        imported: LocalStore) -> None:
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes()
    rows = diabetes.data[:5].astype(np.float32)
    (expected,) = _original(sources["diabetes.onnx"], rows)
    instances = [dict(zip(diabetes.feature_names, map(float, row), strict=True)) for row in rows]
    answer = http.post("/v1/models/diabetes/predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    served = [p["value"] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(served, np.asarray(expected).reshape(-1), rtol=1e-5)
    manifest = catalog.read_manifest(imported, "diabetes", "1")
    assert manifest.task == "regression" and manifest.metric_name == "rmse"
    assert manifest.evaluation is not None and set(manifest.evaluation) == {"mae", "r2"}
    assert manifest.evaluation["r2"] > 0.4


def test_manifests_without_a_source_still_load_and_round_trip(imported: LocalStore) -> None:
    from functions.core.manifest import Manifest

    document = catalog.read_manifest(imported, "iris", "1").to_dict()
    assert document["provenance"]["imported_from"]["kind"] == "onnx"
    del document["provenance"]["imported_from"]  # as every manifest written before maas import
    built = Manifest.from_dict(document)
    assert built.provenance.imported_from is None
    assert "imported_from" not in built.to_dict()["provenance"]
