"""A minimal reader of the ONNX protobuf wire format, enough to vet a model before onnxruntime parses it.

It walks every graph a model can hold: the main graph, subgraphs in node attributes (If/Loop/Scan), model-local
functions and training_info (initialization and algorithm graphs), and reports the operator types and
domains used, the domains of local functions and whether any tensor points at external data. It never decodes
tensor payloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# Field numbers from onnx.proto.
_MODEL_OPSET_IMPORT, _MODEL_GRAPH, _MODEL_FUNCTIONS, _MODEL_TRAINING_INFO = 8, 7, 25, 20
_TRAINING_INITIALIZATION, _TRAINING_ALGORITHM = 1, 2
_OPSET_DOMAIN = 1
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNCTION_NODE, _FUNCTION_OPSET_IMPORT, _FUNCTION_DOMAIN = 7, 9, 10
_DATA_LOCATION_EXTERNAL = 1

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireFormatError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass
class ModelFacts:
    """What the walk found."""

    node_domains: set[str] = field(default_factory=set)
    opset_domains: set[str] = field(default_factory=set)
    function_domains: set[str] = field(default_factory=set)
    op_types: set[str] = field(default_factory=set)
    external_tensors: int = 0
    nodes: int = 0


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """Yield (field number, wire type, value) for each field of a message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireFormatError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise WireFormatError("length-delimited field runs past the end")
            yield number, wire, buf[pos:pos + length]
            pos += length
        elif wire in (_I64, _I32):
            pos += 8 if wire == _I64 else 4
            if pos > end:
                raise WireFormatError("fixed-width field runs past the end")
        else:
            raise WireFormatError(f"unsupported wire type {wire}")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _text(value: memoryview | int) -> str:
    if isinstance(value, int):
        raise WireFormatError("expected a string")
    return bytes(value).decode("utf-8", errors="replace")


def _message(value: memoryview | int) -> memoryview:
    if isinstance(value, int):
        raise WireFormatError("expected a message")
    return value


def inspect_model(data: bytes) -> ModelFacts:
    """Walk a serialized ModelProto and collect operator domains and external-data references."""
    facts = ModelFacts()
    for number, _, value in _fields(memoryview(data)):
        if number == _MODEL_OPSET_IMPORT:
            facts.opset_domains.add(_opset_domain(_message(value)))
        elif number == _MODEL_GRAPH:
            _graph(_message(value), facts)
        elif number == _MODEL_FUNCTIONS:
            _function(_message(value), facts)
        elif number == _MODEL_TRAINING_INFO:
            _training_info(_message(value), facts)
    return facts


def _training_info(buf: memoryview, facts: ModelFacts) -> None:
    for number, _, value in _fields(buf):
        if number in (_TRAINING_INITIALIZATION, _TRAINING_ALGORITHM):
            _graph(_message(value), facts)


def _opset_domain(buf: memoryview) -> str:
    for number, _, value in _fields(buf):
        if number == _OPSET_DOMAIN:
            return _text(value)
    return ""


def _graph(buf: memoryview, facts: ModelFacts) -> None:
    for number, _, value in _fields(buf):
        if number == _GRAPH_NODE:
            _node(_message(value), facts)
        elif number == _GRAPH_INITIALIZER:
            _tensor(_message(value), facts)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse_tensor(_message(value), facts)


def _node(buf: memoryview, facts: ModelFacts) -> None:
    facts.nodes += 1
    domain = ""
    for number, _, value in _fields(buf):
        if number == _NODE_DOMAIN:
            domain = _text(value)
        elif number == _NODE_OP_TYPE:
            facts.op_types.add(_text(value))
        elif number == _NODE_ATTRIBUTE:
            _attribute(_message(value), facts)
    facts.node_domains.add(domain)


def _attribute(buf: memoryview, facts: ModelFacts) -> None:
    for number, _, value in _fields(buf):
        if number in (_ATTR_T, _ATTR_TENSORS):
            _tensor(_message(value), facts)
        elif number in (_ATTR_G, _ATTR_GRAPHS):
            _graph(_message(value), facts)
        elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
            _sparse_tensor(_message(value), facts)


def _tensor(buf: memoryview, facts: ModelFacts) -> None:
    for number, _, value in _fields(buf):
        if number == _TENSOR_EXTERNAL_DATA or (number == _TENSOR_DATA_LOCATION and value == _DATA_LOCATION_EXTERNAL):
            facts.external_tensors += 1
            return


def _sparse_tensor(buf: memoryview, facts: ModelFacts) -> None:
    for number, _, value in _fields(buf):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(_message(value), facts)


def _function(buf: memoryview, facts: ModelFacts) -> None:
    for number, _, value in _fields(buf):
        if number == _FUNCTION_NODE:
            _node(_message(value), facts)
        elif number == _FUNCTION_OPSET_IMPORT:
            facts.opset_domains.add(_opset_domain(_message(value)))
        elif number == _FUNCTION_DOMAIN:
            facts.function_domains.add(_text(value))
