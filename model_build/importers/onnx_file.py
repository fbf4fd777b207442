"""The ``.onnx`` source kind: a graph from any exporter (PyTorch, tf2onnx, classic-ML converters).

The file is vetted before any parser sees it (well-formed protobuf, no external data, operator domains in the
allow-list), then checked by onnx's checker and loaded by onnxruntime. The reference every variant is gated
against is onnxruntime fp32 on the user's own file, unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.errors import InvalidSourceError
from functions.core.integrity import refusal
from functions.core.onnx_wire import WireFormatError, inspect_model
from functions.core.settings import ENV_ALLOWED_OP_DOMAINS, get_settings
from model_build.importers.source import Feeds, ImportedSource, ImportOptions, file_sha256

INLINE_HINT = ("inline it: m = onnx.load(path, load_external_data=True); "
               "onnx.save(m, 'model.onnx', save_as_external_data=False)")


def load(path: Path, options: ImportOptions, work_dir: Path) -> ImportedSource:
    """Vet and load ``path``; the reference runs the original file with onnxruntime fp32 on the CPU."""
    import onnx
    import onnxruntime as ort

    data = path.read_bytes()
    vet(data, path.name)
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ... for broken files
        raise InvalidSourceError(f"{path.name}: not a valid ONNX model ({_first_line(exc)})") from None
    copy = work_dir / "source.onnx"
    shutil.copyfile(path, copy)
    options_ = ort.SessionOptions()
    options_.log_severity_level = 4
    try:
        session = ort.InferenceSession(data, options_, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise InvalidSourceError(f"{path.name}: onnxruntime cannot load it ({_first_line(exc)})") from None
    maps = _map_classes(model)
    types = {i.name: _np_dtype(i.type) for i in session.get_inputs()}

    def reference(feeds: Feeds) -> list[npt.NDArray[Any]]:
        fed = {name: np.asarray(value).astype(types.get(name, np.float32), copy=False) for name, value in feeds.items()}
        outputs = session.run(None, fed)
        return [_as_array(out, maps.get(o.name)) for out, o in zip(outputs, session.get_outputs(), strict=True)]

    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    return ImportedSource(
        kind="onnx", path=path, sha256=file_sha256(path), onnx_path=copy, reference=reference,
        reference_runtime=f"onnxruntime {ort.__version__} fp32 on the original file (CPU)",
        notes=[f"exported by {producer}" if producer else "exporter not recorded in the file"])


def vet(data: bytes, label: str) -> None:
    """Refuse bytes that are not an ONNX model maas may load: corrupt, external data, foreign operator domains."""
    try:
        facts = inspect_model(data)
    except WireFormatError as exc:
        raise InvalidSourceError(f"{label}: not a well-formed ONNX file, truncated or corrupt ({exc})") from None
    allowed = get_settings().allowed_op_domains
    problem = refusal(facts, allowed)
    if problem is None:
        return
    if facts.external_tensors:
        problem += f"; {INLINE_HINT}"
    elif facts.nodes:
        problem += f" (allow-list: {', '.join(repr(d) for d in allowed)}; set by {ENV_ALLOWED_OP_DOMAINS})"
    raise InvalidSourceError(f"{label}: {problem}")


def _map_classes(model: Any) -> dict[str, list[Any]]:
    """ZipMap output name -> its keys in column order."""
    from onnx import helper

    classes = {}
    for node in model.graph.node:
        if node.op_type == "ZipMap":
            for attribute in node.attribute:
                if attribute.name.startswith("classlabels_"):
                    values = helper.get_attribute_value(attribute)
                    classes[node.output[0]] = [v.decode() if isinstance(v, bytes) else v for v in values]
    return classes


def _as_array(value: Any, classes: list[Any] | None) -> npt.NDArray[Any]:
    """A tensor output as is; a sequence of maps (ZipMap) as [batch, classes] in the map's class order."""
    if isinstance(value, np.ndarray):
        return value
    rows = list(value)
    if rows and isinstance(rows[0], dict):
        keys = classes if classes is not None else list(rows[0])
        return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)
    return np.asarray(rows)


def _np_dtype(onnx_type: str) -> Any:
    name = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": np.float32, "double": np.float64, "float16": np.float16, "int64": np.int64,
            "int32": np.int32}.get(name, np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
