"""Candidate variants of an exported model: optimized fp32, dynamic int8, static QDQ int8 and fp16; the same set
is made from a pruned model, named ``pruned-*``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt
import onnxruntime as ort

from functions.core.manifest import Target

STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm", "Gather", "MaxPool", "Relu", "Flatten", "Reshape", "Transpose", "Concat")
"""Operators the static quantizer may touch. Softmax is left out so probabilities keep full precision."""
PRUNED = "pruned-"
"""Name prefix of the variants made from a pruned model."""
SET = (("fp32", "fp32", "cpu"), ("int8-dynamic", "int8", "cpu"), ("int8-static", "int8", "cpu"),
       ("fp16", "fp16", "gpu"))
"""(name, precision, target) of each variant of a set, in order."""


@dataclass
class Candidate:
    """A variant file, or the reason it could not be produced."""

    name: str
    precision: str
    target: Target
    path: Path | None
    note: str


def candidate_set(src: Path, work: Path, input_name: str, calibration: npt.NDArray[Any], prefix: str = "",
                  static_int8: bool = True) -> list[Candidate]:
    """Every variant of one exported graph, as ``work/model.<prefix><variant>.onnx`` (static int8 recorded as
    skipped unless ``static_int8``: its calibration is the slowest step). Quantizers start from the exported
    graph: they run their own shape inference, which the value_info left by onnxruntime's offline optimizer can
    contradict."""
    static = quantize_static_int8(src, work / f"model.{prefix}int8-static.onnx", input_name, calibration) \
        if static_int8 else Candidate("int8-static", "int8", "cpu", None, "skipped: --quick builds calibrate "
                                      "static int8 for the unpruned model only")
    made = [optimize_fp32(src, work / f"model.{prefix}fp32.onnx"),
            quantize_dynamic_int8(src, work / f"model.{prefix}int8-dynamic.onnx"), static,
            convert_fp16(src, work / f"model.{prefix}fp16.onnx")]
    return [dataclasses.replace(c, name=prefix + c.name) for c in made]


def skipped_set(prefix: str, note: str) -> list[Candidate]:
    """A set of variants none of which could be made, each recorded with ``note``."""
    return [Candidate(prefix + name, precision, target, None, note) for name, precision, target in SET]  # type: ignore[arg-type]


def optimize_fp32(src: Path, dst: Path) -> Candidate:
    """Apply onnxruntime's hardware-independent (basic) graph optimizations offline."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return Candidate("fp32", "fp32", "cpu", dst, "exported graph with basic onnxruntime optimizations")


def quantize_dynamic_int8(src: Path, dst: Path) -> Candidate:
    """Weights to int8 ahead of time, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _Quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    if _session_fails(dst):  # ConvInteger has no kernel for signed int8 weights: fall back to uint8
        with _Quiet():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
        note = "dynamic int8 (uint8 weights: signed int8 weights have no kernel for this graph)"
    else:
        note = "dynamic int8 (int8 weights, activations quantized at run time)"
    if _session_fails(dst):
        return Candidate("int8-dynamic", "int8", "cpu", None, "skipped: dynamic int8 model cannot be loaded")
    if not _has_quantized_ops(dst):
        return Candidate("int8-dynamic", "int8", "cpu", None, "skipped: no operator of this graph has a "
                         "dynamic int8 form")
    return Candidate("int8-dynamic", "int8", "cpu", dst, note)


class _Calibration:
    """Feeds calibration batches of training inputs to the static quantizer."""

    def __init__(self, input_name: str, x: npt.NDArray[Any], batch: int = 32) -> None:
        self._batches: Iterator[dict[str, npt.NDArray[Any]]] = iter(
            [{input_name: x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, npt.NDArray[Any]] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - required by newer quantizer versions only
        return None


def quantize_static_int8(src: Path, dst: Path, input_name: str, calibration: npt.NDArray[Any]) -> Candidate:
    """QDQ int8 with activation ranges calibrated (MinMax) on training inputs."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    try:
        with _Quiet():
            quantize_static(str(src), str(dst), _Calibration(input_name, calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(STATIC_OP_TYPES))
    except Exception as exc:  # the quantizer raises many types for unsupported graphs
        return Candidate("int8-static", "int8", "cpu", None, f"skipped: static quantization failed ({exc})")
    if _session_fails(dst) or not _has_quantized_ops(dst):
        return Candidate("int8-static", "int8", "cpu", None, "skipped: no operator of this graph was quantized")
    return Candidate("int8-static", "int8", "cpu", dst,
                     f"static QDQ int8, per-channel weights, MinMax calibration on {len(calibration)} training rows")


def convert_fp16(src: Path, dst: Path) -> Candidate:
    """fp16 weights and activations for the GPU worker, keeping fp32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    try:
        with _Quiet():
            converted = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    except Exception as exc:  # the converter raises many types for unsupported graphs
        return Candidate("fp16", "fp16", "gpu", None, f"skipped: fp16 conversion failed ({exc})")
    if {n.op_type for n in converted.graph.node} - {"Cast"} <= set(DEFAULT_OP_BLOCK_LIST):
        return Candidate("fp16", "fp16", "gpu", None, "skipped: no operator of this graph has an fp16 form "
                         "(e.g. ai.onnx.ml operators)")
    onnx.save(converted, str(dst))
    if _session_fails(dst):
        return Candidate("fp16", "fp16", "gpu", None, "skipped: fp16 model cannot be loaded")
    return Candidate("fp16", "fp16", "gpu", dst, "fp16 for the CUDA execution provider (fp32 inputs and outputs); "
                     "accuracy measured here on the CPU, speed only on a GPU")


def _session_fails(path: Path) -> bool:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:
        return True
    return False


def _has_quantized_ops(path: Path) -> bool:
    import onnx

    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    return bool(ops & {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                       "DynamicQuantizeLSTM", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul"})


class _Quiet:
    """Silence the quantizer's logging chatter for the duration of a call."""

    def __enter__(self) -> None:
        self._level = logging.root.level
        logging.root.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.root.setLevel(self._level)
