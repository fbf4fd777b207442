"""Signature inference on small hand-made graphs: float64 inputs served as float32, feature names from the
model's metadata or the input's doc string, a [batch] regressor output served as [batch, 1], and a label output
that contradicts the probabilities failing its gate (exit 4, nothing published)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from functions.core import catalog
from functions.core.errors import BuildFailedError, exit_code
from functions.core.inference import predict
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.importers.conftest import run_cli


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
    cache = ModelCache(store, Settings(store=store.uri))
    return predict(cache.get(name, "1"), instances)


def test_float64_input_is_served_as_float32_with_feature_names_from_metadata(tmp_path: Path) -> None:
    weights = np.array([[0.5], [-1.25], [2.0]], dtype=np.float64)
    source = _save(tmp_path / "double.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 1])],
                   [numpy_helper.from_array(weights, "w")], {"feature_names": '["a", "b", "c"]'})
    store = LocalStore(tmp_path / "store")
    code, out, err = run_cli("import", source, "--name", "double", "--task", "regression", "--quick",
                             "--store", store.uri)
    assert code == 0 and out.strip() == "double 1", err
    manifest = catalog.read_manifest(store, "double", "1")
    assert manifest.inputs[0].dtype == "float32" and manifest.inputs[0].shape == ["batch", 3]
    assert manifest.preprocessing.features == ["a", "b", "c"]  # type: ignore[union-attr]
    rows = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, 4.0]])
    (expected,) = ort.InferenceSession(str(source)).run(None, {"x": rows})
    served = _served(store, "double", [dict(zip("abc", row, strict=True)) for row in rows.tolist()])
    np.testing.assert_allclose([p["value"] for p in served], expected.reshape(-1), rtol=1e-6)


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
