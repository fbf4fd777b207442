"""What an imported ONNX graph says about itself (Triton-style auto-complete), and the served graph made from it.

``inspect_graph`` reads inputs, outputs (tensors, or ZipMap's sequence of maps), dtypes, the batch axis, the
class labels a classic-ML converter recorded (``classlabels_*`` attributes) and the operators that name the
task (``*Classifier``, ``*Regressor``, a final Softmax). ``write_served`` writes the graph maas serves: float
inputs as float32 (float64 ones cast back inside), the batch axis named ``batch``, one float32 output
(probabilities [batch, classes], values or vectors) under the task's output name, a ZipMap replaced by the
tensor it wraps, a Softmax appended to logits, nodes nothing reads any more removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from functions.core.errors import InvalidSourceError

FLOAT_TYPES = {"float32", "float64"}
CLASSIFIER_OPS = {"LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier", "TreeEnsemble"}
REGRESSOR_OPS = {"LinearRegressor", "TreeEnsembleRegressor", "SVMRegressor"}
BATCH = "batch"


@dataclass(frozen=True)
class Port:
    """A graph input or output: ``kind`` is "tensor", "sequence_map" (ZipMap) or "other"."""

    name: str
    kind: str
    dtype: str
    shape: list[int | str | None]


@dataclass
class GraphFacts:
    """What the graph tells about its signature and task."""

    inputs: list[Port]
    outputs: list[Port]
    op_types: set[str]
    class_values: list[str] | None = None
    """The class labels a converter recorded (ZipMap or classifier node), as strings, in column order."""
    zipmap_tensors: dict[str, str] = field(default_factory=dict)
    """ZipMap output -> the probability tensor it wraps."""
    softmax_outputs: set[str] = field(default_factory=set)
    feature_names: list[str] | None = None
    """From the model's metadata_props (``features`` / ``feature_names``: JSON list or comma-separated)."""

    @property
    def classifier(self) -> bool:
        return bool(self.op_types & CLASSIFIER_OPS) or bool(self.zipmap_tensors)

    @property
    def regressor(self) -> bool:
        return bool(self.op_types & REGRESSOR_OPS)


def _port(value: Any) -> Port:
    from onnx import helper

    kind = value.type.WhichOneof("value")
    if kind == "tensor_type":
        tensor = value.type.tensor_type
        dims: list[int | str | None] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        return Port(value.name, "tensor", np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name, dims)
    if kind == "sequence_type" and value.type.sequence_type.elem_type.WhichOneof("value") == "map_type":
        return Port(value.name, "sequence_map", "map", [None])
    return Port(value.name, "other", str(kind), [])


def inspect_graph(path: Path) -> GraphFacts:
    """The facts of the ONNX file at ``path`` (already vetted)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    facts = GraphFacts(inputs=[_port(v) for v in graph.input if v.name not in initializers],
                       outputs=[_port(v) for v in graph.output], op_types={n.op_type for n in graph.node})
    produced_by = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        labels = _class_labels(node)
        if labels is not None and (facts.class_values is None or node.op_type == "ZipMap"):
            facts.class_values = labels
        if node.op_type == "ZipMap":
            facts.zipmap_tensors[node.output[0]] = node.input[0]
    for port in facts.outputs:
        node = produced_by.get(port.name)
        while node is not None and node.op_type in ("Identity", "Cast"):
            node = produced_by.get(node.input[0])
        if node is not None and node.op_type == "Softmax":
            facts.softmax_outputs.add(port.name)
    for prop in model.metadata_props:
        if prop.key in ("features", "feature_names"):
            facts.feature_names = _names(prop.value)
    documented = [v.doc_string for v in graph.input if v.name not in initializers]
    if facts.feature_names is None and len(documented) == 1 and documented[0].lstrip().startswith("["):
        names = _names(documented[0])  # an input documented with a JSON list of its columns
        facts.feature_names = names if "[" not in "".join(names) else None
    return facts


def _class_labels(node: Any) -> list[str] | None:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name.startswith("classlabels_"):
            values = helper.get_attribute_value(attribute)
            return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
    return None


def _names(text: str) -> list[str]:
    import orjson

    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text.split(",")
    return [str(v).strip() for v in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class ServedPlan:
    """How the served graph is cut from the original."""

    output: str
    """The original graph output served (a ZipMap output is replaced by the tensor it wraps)."""
    name: str
    """The served output's name."""
    tail: tuple[int, ...]
    """The served output's shape after the batch axis: (classes,), (size,), (1,) or ()."""
    softmax: bool = False
    """Append a Softmax (the graph outputs logits)."""
    column: bool = False
    """Reshape a [batch] output to [batch, 1] (one value per row, as regressors are served)."""
    binary: bool = False
    """One score per row of a two-class classifier: served as [1 - p, p]."""
    sigmoid: bool = False
    """With ``binary``: the score is a logit (a Sigmoid gives p)."""


def write_served(src: Path, dst: Path, facts: GraphFacts, plan: ServedPlan) -> None:
    """Write the served graph of ``src`` to ``dst`` (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src), load_external_data=False)
    graph = model.graph
    tensor = facts.zipmap_tensors.get(plan.output, plan.output)
    nodes = list(graph.node)
    for port in facts.inputs:  # every input float32 (the preprocessors' dtype), cast back where it was not
        if port.dtype == "float64":
            cast_name = f"{port.name}__maas_cast"
            for node in nodes:
                for i, name in enumerate(node.input):
                    if name == port.name:
                        node.input[i] = cast_name
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(port.dtype))
            nodes.insert(0, helper.make_node("Cast", [port.name], [cast_name], to=elem, name=cast_name))
    renamed = f"{plan.name}__maas_in"  # the served name may already name a tensor inside (e.g. skl2onnx's)
    for node in nodes:
        node.input[:] = [renamed if name == plan.name else name for name in node.input]
        node.output[:] = [renamed if name == plan.name else name for name in node.output]
    last = renamed if tensor == plan.name else tensor
    if plan.softmax:
        nodes.append(helper.make_node("Softmax", [last], [f"{plan.name}__maas_softmax"], axis=-1))
        last = f"{plan.name}__maas_softmax"
    if plan.column:
        shape = f"{plan.name}__maas_shape"
        graph.initializer.append(helper.make_tensor(shape, TensorProto.INT64, [2], [-1, 1]))
        nodes.append(helper.make_node("Reshape", [last, shape], [f"{plan.name}__maas_column"]))
        last = f"{plan.name}__maas_column"
    if plan.binary:
        nodes.append(helper.make_node("Cast", [last], [f"{plan.name}__maas_score"], to=TensorProto.FLOAT))
        last = f"{plan.name}__maas_score"
        if plan.sigmoid:
            nodes.append(helper.make_node("Sigmoid", [last], [f"{plan.name}__maas_sigmoid"]))
            last = f"{plan.name}__maas_sigmoid"
        one = f"{plan.name}__maas_one"
        graph.initializer.append(helper.make_tensor(one, TensorProto.FLOAT, [], [1.0]))
        nodes.append(helper.make_node("Sub", [one, last], [f"{plan.name}__maas_negative"]))
        nodes.append(helper.make_node("Concat", [f"{plan.name}__maas_negative", last],
                                      [f"{plan.name}__maas_pair"], axis=1))
        last = f"{plan.name}__maas_pair"
    nodes.append(helper.make_node("Cast", [last], [plan.name], to=TensorProto.FLOAT, name=f"{plan.name}__maas_output"))
    needed = _reachable(nodes, plan.name)
    inputs = []
    ports = {p.name: p for p in facts.inputs}
    for value in graph.input:
        if value.name not in ports:
            inputs.append(value)  # an initializer listed as an input (older exporters)
            continue
        given = ports[value.name]
        elem = TensorProto.FLOAT if given.dtype in FLOAT_TYPES else value.type.tensor_type.elem_type
        inputs.append(helper.make_tensor_value_info(given.name, elem, [BATCH, *given.shape[1:]]))
    out_shape: list[int | str | None] = [BATCH, *plan.tail]
    served = helper.make_graph([n for n in nodes if any(o in needed for o in n.output)], graph.name, inputs,
                               [helper.make_tensor_value_info(plan.name, TensorProto.FLOAT, out_shape)],
                               initializer=[t for t in graph.initializer if t.name in needed],
                               sparse_initializer=[t for t in graph.sparse_initializer if t.values.name in needed])
    versions: dict[str, int] = {}
    for opset in model.opset_import:  # one entry per domain (skl2onnx can list "" twice; quantizers refuse that)
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        versions[domain] = max(versions.get(domain, 0), opset.version)
    versions.setdefault("", 17)
    opsets = [helper.make_opsetid(domain, version) for domain, version in versions.items()]
    out = helper.make_model(served, opset_imports=opsets, producer_name="maas import",
                            ir_version=model.ir_version, functions=list(model.functions))
    out.metadata_props.extend(model.metadata_props)
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise InvalidSourceError(f"the served graph cut from {src.name} is not valid: "
                                 f"{str(exc).splitlines()[0]}") from None
    onnx.save(out, str(dst))


def _reachable(nodes: list[Any], output: str) -> set[str]:
    """Tensor names the ``output`` depends on."""
    produced_by = {out: node for node in nodes for out in node.output}
    needed, stack = set(), [output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = produced_by.get(name)
        if node is not None:
            stack.extend(i for i in node.input if i)
            for attribute in node.attribute:  # subgraphs read outer-scope names
                for sub in [attribute.g, *attribute.graphs]:
                    stack.extend(i for n in sub.node for i in n.input if i)
    return needed
