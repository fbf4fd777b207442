"""A tiny classifier version built with the onnx helper API (no torch, no training) and ways to mutate it."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import onnx
import orjson
from onnx import TensorProto, helper, numpy_helper

from functions.core.manifest import MANIFEST_FILE

MODEL_FILE = "model.fp32.onnx"


def graph(nodes: list[onnx.NodeProto] | None = None, initializers: list[onnx.TensorProto] | None = None,
          name: str = "g") -> onnx.GraphProto:
    """x [batch, 2] -> MatMul(W) -> Softmax -> y [batch, 2], plus any extra nodes (which must not touch x/y)."""
    weights = numpy_helper.from_array(np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=np.float32), "W")
    core = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    return helper.make_graph([*core, *(nodes or [])], name,
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
                             [weights, *(initializers or [])])


def model_bytes(g: onnx.GraphProto | None = None, functions: list[onnx.FunctionProto] | None = None,
                training: list[onnx.TrainingInfoProto] | None = None,
                extra_opsets: dict[str, int] | None = None) -> bytes:
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in (extra_opsets or {}))]
    model = helper.make_model(g or graph(), opset_imports=opsets, functions=functions or [], ir_version=8)
    for info in training or []:
        model.training_info.append(info)
    return model.SerializeToString()


def manifest(name: str, data: bytes, **changes: Any) -> dict[str, Any]:
    """The manifest document of version 1 of ``name`` shipping ``data`` as its fp32 file."""
    digest = hashlib.sha256(data).hexdigest()
    doc: dict[str, Any] = {
        "schema_version": 1, "name": name, "version": "1", "created_at": "2026-01-01T00:00:00+00:00",
        "task": "classification", "description": "mutation matrix",
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 2]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 2]}],
        "preprocessing": {"kind": "tabular", "features": ["a", "b"], "mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "labels": ["left", "right"], "metric_name": "accuracy", "latency_batch": 256, "baselines": {},
        "variants": [{"name": "fp32", "file": MODEL_FILE, "precision": "fp32", "target": "cpu", "sha256": digest,
                      "bytes": len(data), "metrics": None, "passed": True, "reason": "only one"}],
        "selected": {"cpu": "fp32"}, "selection_reason": "only one", "gates": [], "reference_stats": {},
        "files": [{"path": MODEL_FILE, "sha256": digest, "bytes": len(data)}],
        "provenance": {"recipe": name, "git_commit": None, "libraries": {}, "data_sha256": digest, "seed": 0,
                       "quick": True, "build_seconds": 0.0},
    }
    doc.update(changes)
    return doc


def version_files(name: str, data: bytes, **changes: Any) -> dict[str, bytes]:
    """Store objects (relative to the version folder) of a sealed version: the manifest hashes ``data``."""
    return {MODEL_FILE: data, MANIFEST_FILE: orjson.dumps(manifest(name, data, **changes))}
