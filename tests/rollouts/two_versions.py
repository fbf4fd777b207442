"""A store with two versions of one small tabular classifier that disagree on known rows.

Version 1 answers ``a`` when f0 > f1, else ``b``; version 2 adds 1 to the ``b`` logit, so it answers ``b`` on
the rows where f1 < f0 < f1 + 1 (``disagrees``) and agrees everywhere else. Both are imported with ``maas
import``'s pipeline from hand-written ONNX graphs, like a user's own files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from functions.core import catalog
from functions.core.store import LocalStore

MODEL = "pair"
LIVE, CANDIDATE = "1", "2"
FEATURES = ("f0", "f1")


def disagrees(row: dict[str, float]) -> bool:
    """Whether the two versions give ``row`` different labels."""
    return row["f1"] < row["f0"] < row["f1"] + 1


def graph(bias_b: float) -> bytes:
    """probabilities = Softmax(x @ I + [0, bias_b]) over inputs x[batch, 2]."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")
    bias = numpy_helper.from_array(np.array([0.0, bias_b], dtype=np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    model = helper.make_model(
        helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
                          [weights, bias]),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def rows(count: int, seed: int = 0) -> list[dict[str, float]]:
    """Rows spread so that about a fifth fall where the versions disagree."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-3, 3, size=(count, 2)).round(3)
    return [{"f0": float(a), "f1": float(b)} for a, b in values]


def add_pair(root: Path) -> LocalStore:
    """Import both versions into the store at ``root``; prod points at version 1."""
    from model_build.importers.pipeline import import_model
    from model_build.importers.source import ImportOptions

    store = LocalStore(root)
    with tempfile.TemporaryDirectory(prefix="maas-pair-") as tmp:
        sample = Path(tmp) / "sample.csv"
        sample.write_text("f0,f1\n" + "\n".join(f"{r['f0']},{r['f1']}" for r in rows(200, seed=1)) + "\n")
        for bias in (0.0, 1.0):
            source = Path(tmp) / "pair.onnx"
            source.write_bytes(graph(bias))
            import_model(source, ImportOptions(name=MODEL, labels=("a", "b"), sample=sample, quick=True), store)
    catalog.promote(store, MODEL, LIVE, "prod")
    return store
