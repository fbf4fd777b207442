"""Corrupted artifacts are refused before any parser sees them."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from functions.core.errors import IntegrityError
from functions.core.integrity import verify_bytes, verify_model_bytes
from functions.core.manifest import FileEntry
from functions.core.settings import DEFAULT_ALLOWED_OP_DOMAINS


def _onnx_bytes(domain: str = "", external: bool = False) -> bytes:
    weight = numpy_helper.from_array(np.arange(256, dtype=np.float32), "w")
    if external:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value="weights.bin")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], domain=domain)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256])], initializer=[weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _entry(data: bytes) -> FileEntry:
    return FileEntry(path="model.onnx", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def test_intact_model_passes() -> None:
    data = _onnx_bytes()
    verify_model_bytes(data, _entry(data), DEFAULT_ALLOWED_OP_DOMAINS)


def test_truncated_file_is_refused() -> None:
    data = _onnx_bytes()
    with pytest.raises(IntegrityError, match="size"):
        verify_model_bytes(data[:-10], _entry(data), DEFAULT_ALLOWED_OP_DOMAINS)


def test_one_flipped_bit_is_refused() -> None:
    data = _onnx_bytes()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(IntegrityError, match="sha256"):
        verify_model_bytes(bytes(flipped), _entry(data), DEFAULT_ALLOWED_OP_DOMAINS)


def test_wrong_size_in_manifest_is_refused() -> None:
    data = _onnx_bytes()
    entry = dataclasses.replace(_entry(data), bytes=len(data) + 1)
    with pytest.raises(IntegrityError, match="size"):
        verify_bytes(data, entry)


def test_external_data_reference_is_refused_even_with_a_matching_checksum() -> None:
    data = _onnx_bytes(external=True)
    with pytest.raises(IntegrityError, match="external data"):
        verify_model_bytes(data, _entry(data), DEFAULT_ALLOWED_OP_DOMAINS)


def test_custom_operator_domain_is_refused() -> None:
    data = _onnx_bytes(domain="com.example.custom")
    with pytest.raises(IntegrityError, match=r"com\.example\.custom"):
        verify_model_bytes(data, _entry(data), DEFAULT_ALLOWED_OP_DOMAINS)


def test_garbage_with_matching_checksum_is_refused() -> None:
    data = b"\xff" * 100
    with pytest.raises(IntegrityError, match="not a well-formed"):
        verify_model_bytes(data, _entry(data), DEFAULT_ALLOWED_OP_DOMAINS)


def test_checker_agrees_the_fixture_is_valid_onnx() -> None:
    onnx.checker.check_model(onnx.load_from_string(_onnx_bytes()))
