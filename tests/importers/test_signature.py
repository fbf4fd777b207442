"""Signature inference on small hand-made graphs: float64 inputs served as float32, feature names from the
model's metadata or the input's doc string, a [batch] regressor output served as [batch, 1], and a label output
that contradicts the probabilities failing its gate (exit 4, nothing published)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from onnx import TensorProto, helper, numpy_helper

from functions.core import catalog
from functions.core.errors import BuildFailedError, exit_code
from functions.core.inference import predict
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.importers.conftest import run_cli
from tests.pinned import pin_variant


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], initializers: list[onnx.TensorProto] | None = None,
          metadata: dict[str, str] | None = None) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    helper.set_model_props(model, metadata or {})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _served(store: LocalStore, name: str, instances: list[object]) -> list[dict[str, object]]:
    pin_variant(store, "fp32", [name])  # whichever variant this machine's speed gate chose
    cache = ModelCache(store, Settings(store=store.uri))
    return predict(cache.get(name, "1"), instances)


def test_float64_input_is_served_as_float32_with_feature_names_from_metadata(tmp_path: Path) -> None:
    weights = np.array([[0.5], [-1.25], [2.0]], dtype=np.float64)
    source = _save(tmp_path / "double.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 1])],
                   [numpy_helper.from_array(weights, "w")], {"feature_names": '["a", "b", "c"]'})
    rng = np.random.default_rng(0)
    sample = tmp_path / "rows.jsonl"
    lines = [orjson.dumps({"c": c, "a": a, "b": b}) + b"\n" for a, b, c in rng.normal(size=(40, 3)).tolist()]
    sample.write_bytes(b"".join(lines))
    store = LocalStore(tmp_path / "store")
    code, out, err = run_cli("import", source, "--name", "double", "--task", "regression", "--sample", sample,
                             "--quick", "--store", store.uri)  # JSON-lines feature dicts, in any key order
    assert code == 0 and out.strip() == "double 1", err
    manifest = catalog.read_manifest(store, "double", "1")
    assert manifest.inputs[0].dtype == "float32" and manifest.inputs[0].shape == ["batch", 3]
    assert manifest.preprocessing.features == ["a", "b", "c"]  # type: ignore[union-attr]
    rows = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, 4.0]])
    (expected,) = ort.InferenceSession(str(source)).run(None, {"x": rows})
    served = _served(store, "double", [dict(zip("abc", row, strict=True)) for row in rows.tolist()])
    np.testing.assert_allclose([p["value"] for p in served], expected.reshape(-1), rtol=1e-6)
    assert {"profile.json", "background.npy"} <= {f.path for f in manifest.files}
    assert manifest.importance is not None and set(manifest.importance) == {"a", "b", "c"}


def test_a_batch_only_regressor_output_is_served_one_value_per_row(tmp_path: Path) -> None:
    source = _save(tmp_path / "sum.onnx", [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2], doc_string='["p", "q"]')],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
                   [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
    store = LocalStore(tmp_path / "store")
    code, _, err = run_cli("import", source, "--name", "sum", "--task", "regression", "--quick",
                           "--store", store.uri)  # feature names from the input's doc string
    assert code == 0, err
    assert catalog.read_manifest(store, "sum", "1").outputs[0].shape == ["batch", 1]
    assert _served(store, "sum", [[1.5, 2.0], {"p": -1.0, "q": 0.5}]) == [{"value": 3.5}, {"value": -0.5}]


def test_a_label_output_that_is_not_the_top_class_fails_the_import(tmp_path: Path) -> None:
    source = _save(tmp_path / "odd.onnx", [helper.make_node("Softmax", ["x"], ["probabilities"], axis=-1),
                                           helper.make_node("ArgMin", ["x"], ["label"], axis=1, keepdims=0)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                   [helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
                    helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3])])
    store = tmp_path / "store"
    code, out, err = run_cli("import", source, "--name", "odd", "--features", "a,b,c", "--quick",
                             "--store", f"file://{store}")
    assert code == exit_code(BuildFailedError("x")), err
    assert "label output = top class" in err and out == ""
    assert not (store / "models" / "odd").exists()


def test_tree_ensemble_classifier_with_string_labels_and_zipmap(tmp_path: Path) -> None:
    """What tree converters write (skl2onnx 1.19's own tree converters fail on onnx 1.23's stricter attributes,
    so the graph is written here): TreeEnsembleClassifier + ZipMap over string classes."""
    tree = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label", "scores"], domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0.0, 0.0], nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0], class_treeids=[0] * 6, class_nodeids=[1, 1, 1, 2, 2, 2],
        class_ids=[0, 1, 2, 0, 1, 2], class_weights=[0.7, 0.2, 0.1, 0.1, 0.3, 0.6],
        classlabels_strings=["cat", "dog", "fox"], post_transform="NONE")
    zipmap = helper.make_node("ZipMap", ["scores"], ["output_probability"], domain="ai.onnx.ml",
                              classlabels_strings=["cat", "dog", "fox"])
    scores = helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    graph = helper.make_graph([tree, zipmap], "trees",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
                               helper.make_value_info("output_probability", helper.make_sequence_type_proto(scores))])
    model = helper.make_model(graph, ir_version=9,
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    onnx.save(model, str(tmp_path / "trees.onnx"))
    store = LocalStore(tmp_path / "store")
    code, _, err = run_cli("import", tmp_path / "trees.onnx", "--name", "trees", "--features", "size,weight",
                           "--quick", "--store", store.uri)
    assert code == 0, err
    manifest = catalog.read_manifest(store, "trees", "1")
    assert manifest.task == "classification" and manifest.labels == ["cat", "dog", "fox"]
    served = _served(store, "trees", [[0.1, 3.0], {"size": 2.0, "weight": 0.0}])
    assert [p["label"] for p in served] == ["cat", "fox"]
    assert served[0]["probabilities"] == pytest.approx({"cat": 0.7, "dog": 0.2, "fox": 0.1})


def test_the_import_pipeline_loads_no_torch() -> None:
    """An .onnx import needs no PyTorch: the pipeline and the .onnx source kind never import it."""
    import os
    import subprocess
    import sys

    code = ("import sys, model_build.importers.pipeline, model_build.importers.onnx_file; "
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "False"


def test_one_logit_per_row_is_served_as_two_class_probabilities(tmp_path: Path) -> None:
    """A PyTorch binary classifier's single logit column (BCEWithLogits style): [1 - sigmoid, sigmoid]."""
    weights = np.array([[1.5], [-2.0]], dtype=np.float32)
    source = _save(tmp_path / "logit.onnx", [helper.make_node("MatMul", ["x", "w"], ["logit"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                   [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["n", 1])],
                   [numpy_helper.from_array(weights, "w")])
    store = LocalStore(tmp_path / "store")
    code, _, err = run_cli("import", source, "--name", "logit", "--labels", "stay,leave", "--features", "u,v",
                           "--quick", "--store", store.uri)
    assert code == 0, err
    manifest = catalog.read_manifest(store, "logit", "1")
    assert manifest.outputs[0].shape == ["batch", 2] and "Sigmoid" in manifest.description
    served = _served(store, "logit", [[1.0, 0.0], [0.0, 1.0]])
    leave = 1 / (1 + np.exp(-np.array([1.5, -2.0])))
    assert [p["label"] for p in served] == ["leave", "stay"]
    np.testing.assert_allclose([p["probabilities"]["leave"] for p in served], leave, rtol=1e-5)
    np.testing.assert_allclose([p["probabilities"]["stay"] for p in served], 1 - leave, rtol=1e-5)
