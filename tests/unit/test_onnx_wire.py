"""The wire-format walker against models written by the onnx library itself."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from functions.core.onnx_wire import WireFormatError, inspect_model


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto] | None = None,
           extra_opsets: list[onnx.OperatorSetIdProto] | None = None,
           functions: list[onnx.FunctionProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              initializer=initializers or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *(extra_opsets or [])],
                             functions=functions or [])


def test_plain_model_uses_only_the_default_domain() -> None:
    facts = inspect_model(_model([helper.make_node("Relu", ["x"], ["y"])]).SerializeToString())
    assert facts.node_domains == {""}
    assert facts.external_tensors == 0
    assert facts.nodes == 1


def test_custom_domain_node_is_reported() -> None:
    model = _model([helper.make_node("Evil", ["x"], ["y"], domain="com.example.custom")],
                   extra_opsets=[helper.make_opsetid("com.example.custom", 1)])
    facts = inspect_model(model.SerializeToString())
    assert "com.example.custom" in facts.node_domains


def test_custom_domain_inside_a_subgraph_is_reported() -> None:
    branch = helper.make_graph([helper.make_node("Evil", ["x"], ["z"], domain="com.example.hidden")], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    facts = inspect_model(_model([node], [cond]).SerializeToString())
    assert "com.example.hidden" in facts.node_domains


def test_external_data_reference_is_reported() -> None:
    weight = numpy_helper.from_array(np.ones(4, dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../etc/passwd")
    facts = inspect_model(_model([helper.make_node("Add", ["x", "w"], ["y"])], [weight]).SerializeToString())
    assert facts.external_tensors == 1


def test_local_function_domains_are_collected() -> None:
    body = helper.make_function("my.functions", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                [helper.make_opsetid("", 17)])
    model = _model([helper.make_node("Twice", ["x"], ["y"], domain="my.functions")], functions=[body],
                   extra_opsets=[helper.make_opsetid("my.functions", 1)])
    facts = inspect_model(model.SerializeToString())
    assert facts.function_domains == {"my.functions"}
    assert facts.node_domains == {"", "my.functions"}


@pytest.mark.parametrize("cut", [1, 7, -3])
def test_truncated_bytes_raise(cut: int) -> None:
    weight = numpy_helper.from_array(np.ones(64, dtype=np.float32), "w")
    data = _model([helper.make_node("Add", ["x", "w"], ["y"])], [weight]).SerializeToString()
    with pytest.raises(WireFormatError):
        inspect_model(data[:cut])
