"""Signature inference for an imported graph: its input (preprocessing, features), its task, the output maas
serves and the labels. Explicit options win; what the graph or the source makes unambiguous is taken; otherwise
the import stops with an ``InvalidSourceError`` that names the option to pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.errors import InvalidSourceError
from functions.core.manifest import ImagePreprocessing, Preprocessing, TabularPreprocessing, Task
from model_build.contracts import OUTPUT_NAMES
from model_build.importers import rows
from model_build.importers.graph import FLOAT_TYPES, GraphFacts, Port, ServedPlan
from model_build.importers.source import ImportedSource, ImportOptions

PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Served:
    """What the served graph outputs and how it is read."""

    task: Task
    plan: ServedPlan
    labels: list[str] | None
    label_output: str | None
    """The original's own label output, checked against the argmax of the probabilities."""
    class_values: list[str] | None
    """The original's class values (what its label output holds), in probability column order."""


def input_spec(facts: GraphFacts, source: ImportedSource, options: ImportOptions) -> tuple[Preprocessing, str]:
    """The preprocessing spec and the input the preprocessor feeds."""
    if source.preprocessing is not None:
        names = getattr(source.preprocessing, "inputs", None) or [facts.inputs[0].name]
        return source.preprocessing, str(names[0])
    if len(facts.inputs) != 1:
        raise InvalidSourceError(
            f"the graph has {len(facts.inputs)} inputs ({', '.join(p.name for p in facts.inputs)}); maas serves one "
            "tensor input (tabular rows or single-channel images) or a tokenizer's inputs (import the Hugging "
            "Face folder)")
    port = facts.inputs[0]
    kind = options.input_kind or source.input_kind
    if kind == "text" or (port.kind == "tensor" and port.dtype not in FLOAT_TYPES):
        raise InvalidSourceError(
            f"input {port.name!r} ({port.dtype} {_shape(port)}) needs a tokenizer: import text models as a Hugging "
            "Face folder (config.json, weights, tokenizer.json)")
    if port.kind != "tensor" or not port.shape:
        raise InvalidSourceError(f"input {port.name!r} is not a tensor with a batch axis: a shape maas cannot serve")
    if isinstance(port.shape[0], int):
        raise InvalidSourceError(f"input {port.name!r} has a fixed batch size of {port.shape[0]} ({_shape(port)}); "
                                 "export the model with a dynamic batch axis (dim 0)")
    dims = port.shape[1:]
    if len(dims) == 1 and isinstance(dims[0], int) and kind in (None, "tabular"):
        return TabularPreprocessing(features=_features(dims[0], facts, source, options),
                                    mean=[0.0] * dims[0], std=[1.0] * dims[0]), port.name
    if len(dims) == 3 and dims[0] == 1 and all(isinstance(d, int) for d in dims[1:]) and kind in (None, "image"):
        return ImagePreprocessing(shape=[int(dims[1] or 0), int(dims[2] or 0)], value_range=(0.0, 1.0),
                                  scale=1.0), port.name
    raise InvalidSourceError(
        f"input {port.name!r} has shape {_shape(port)}: a shape maas cannot serve"
        + (f" as {kind}" if kind else "") + " (tabular [batch, features] or single-channel images [batch, 1, H, W])")


def _shape(port: Port) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in port.shape) + "]"


def _features(width: int, facts: GraphFacts, source: ImportedSource, options: ImportOptions) -> list[str]:
    candidates: list[tuple[str, list[str] | None]] = [
        ("--features", list(options.features) if options.features else None),
        ("the source", source.features), ("the graph's metadata", facts.feature_names),
        (f"--sample {options.sample.name}" if options.sample else "--sample",
         rows.columns(options.sample, options.target) if options.sample else None)]
    for where, names in candidates:
        if names is None:
            continue
        if len(names) != width:
            raise InvalidSourceError(f"{where} names {len(names)} features, the model's input takes {width}"
                                     + ("" if where == "--features" else
                                        "; pass --features" + (" (or --target for a label column)"
                                                               if where.startswith("--sample") else "")))
        if len(set(names)) != len(names):
            raise InvalidSourceError(f"{where} names a feature twice")
        return names
    raise InvalidSourceError(f"the model takes {width} features but nothing names them: pass --features F1,...,"
                             f"F{width} (or a --sample CSV with a header)")


def with_value_range(spec: Preprocessing, sample: Any) -> Preprocessing:
    """An image spec whose value range is the one the sample implies."""
    if isinstance(spec, ImagePreprocessing) and sample is not None:
        return ImagePreprocessing(shape=spec.shape, value_range=rows.value_range(np.asarray(sample)), scale=1.0)
    return spec


def serve(facts: GraphFacts, source: ImportedSource, options: ImportOptions,
          reference: list[npt.NDArray[Any]]) -> Served:
    """Task, served output, labels and the label output, from the options, the source, the graph and the
    original's outputs on the check rows (``reference``, in graph output order)."""
    outputs = {p.name: (p, out) for p, out in zip(facts.outputs, reference, strict=True)}
    task = options.task or source.task or _task(facts, outputs, options)
    floats = [name for name, (p, out) in outputs.items()
              if (p.kind == "sequence_map" or p.dtype in FLOAT_TYPES) and np.asarray(out).dtype.kind == "f"]
    label_output = next((name for name, (p, out) in outputs.items() if p.kind == "tensor" and name not in floats
                         and np.asarray(out).ndim == 1), None) if task == "classification" else None
    if task == "classification":
        maps = [name for name in floats if outputs[name][0].kind == "sequence_map"]
        floats = maps or floats
    if len(floats) > 1:
        soft = [name for name in floats if name in facts.softmax_outputs]
        floats = soft if len(soft) == 1 else floats
    if len(floats) != 1:
        found = ", ".join(f"{p.name} ({p.dtype})" for p, _ in outputs.values())
        raise InvalidSourceError(f"cannot tell which output to serve as the {task} output among: {found}; "
                                 "maas serves one float output")
    name = floats[0]
    out = np.asarray(outputs[name][1])
    if out.ndim > 2 or out.ndim == 0:
        raise InvalidSourceError(f"output {name!r} has shape {list(out.shape)}: a shape maas cannot serve "
                                 "(one value, or one vector, per instance)")
    tail = tuple(out.shape[1:])
    if task == "classification":
        return _classifier(facts, source, options, name, out, label_output)
    if task == "regression" and out.ndim == 2 and out.shape[1] != 1:
        raise InvalidSourceError(f"output {name!r} has {out.shape[1]} values per instance; a regressor served by "
                                 "maas returns one (pass --task embedding for vectors)")
    if task == "embedding" and out.ndim != 2:
        raise InvalidSourceError(f"output {name!r} has shape {list(out.shape)}: an embedding is one vector per "
                                 "instance")
    if options.labels:
        raise InvalidSourceError(f"--labels is for classifiers; this model is imported as {task}")
    column = task == "regression" and out.ndim == 1
    return Served(task, ServedPlan(name, OUTPUT_NAMES[task], (1,) if column else tail, column=column), None, None,
                  None)


def _task(facts: GraphFacts, outputs: dict[str, tuple[Port, Any]], options: ImportOptions) -> Task:
    if facts.classifier or any(name in facts.softmax_outputs for name in outputs) or options.labels:
        return "classification"
    if facts.regressor:
        return "regression"
    shapes = ", ".join(f"{p.name} {list(np.asarray(out).shape[1:])}" for p, out in outputs.values())
    raise InvalidSourceError(f"cannot tell the task from the graph (outputs per instance: {shapes}); pass "
                             "--task classification|regression|embedding")


def _classifier(facts: GraphFacts, source: ImportedSource, options: ImportOptions, name: str,
                out: npt.NDArray[Any], label_output: str | None) -> Served:
    binary = out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)
    if not binary and (out.ndim != 2 or out.shape[1] < 2):
        raise InvalidSourceError(f"output {name!r} has shape {list(out.shape)}: a classifier served by maas outputs "
                                 "[batch, classes] scores, or one score per row for two classes")
    classes = 2 if binary else out.shape[1]
    labels = list(options.labels) if options.labels else source.labels or facts.class_values
    where = "--labels" if options.labels else "the source's labels" if source.labels else "the graph's class labels"
    if labels is not None and len(labels) != classes:
        raise InvalidSourceError(f"{where} name {len(labels)} classes but output {name!r} has {classes} columns")
    if facts.class_values is not None and len(facts.class_values) != classes:
        raise InvalidSourceError(f"the graph records {len(facts.class_values)} class labels but output {name!r} has "
                                 f"{classes} columns")
    if binary:  # one score per row: the positive class's probability (or logit), served as two columns
        values = np.asarray(out, dtype=np.float64)
        sigmoid = bool(values.min() < -PROBABILITY_TOLERANCE or values.max() > 1 + PROBABILITY_TOLERANCE)
        plan = ServedPlan(name, OUTPUT_NAMES["classification"], (2,), column=out.ndim == 1, binary=True,
                          sigmoid=sigmoid)
    else:
        plan = ServedPlan(name, OUTPUT_NAMES["classification"], (classes,), softmax=not is_probabilities(out))
    return Served("classification", plan, labels or [str(i) for i in range(classes)], label_output,
                  facts.class_values)


def is_probabilities(out: npt.NDArray[Any]) -> bool:
    """Every row in [0, 1] and summing to 1 (else the graph outputs scores or logits)."""
    values = np.asarray(out, dtype=np.float64)
    return bool(values.min() >= -PROBABILITY_TOLERANCE and values.max() <= 1 + PROBABILITY_TOLERANCE
                and np.allclose(values.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE))


def softmax(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: npt.NDArray[np.float64] = exp / exp.sum(axis=-1, keepdims=True)
    return result


def served_reference(served: Served, facts: GraphFacts, reference: list[npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    """The original's output in the served form: [batch, classes] probabilities, [batch, ...] values."""
    index = [p.name for p in facts.outputs].index(served.plan.output)
    out = np.asarray(reference[index], dtype=np.float64)
    if served.plan.column:
        out = out.reshape(-1, 1)
    if served.plan.binary:
        positive = 1 / (1 + np.exp(-out)) if served.plan.sigmoid else out
        return np.concatenate([1 - positive, positive], axis=1)
    return softmax(out) if served.plan.softmax else out


def label_indices(served: Served, facts: GraphFacts, reference: list[npt.NDArray[Any]]) -> npt.NDArray[np.int64] | None:
    """The original's label output as probability column indices (-1 where a label is not a known class)."""
    if served.label_output is None:
        return None
    index = [p.name for p in facts.outputs].index(served.label_output)
    values = np.asarray(reference[index]).reshape(-1)
    classes = served.class_values
    if classes is None:
        return values.astype(np.int64) if values.dtype.kind in "iu" else None
    position = {value: i for i, value in enumerate(classes)}
    return np.array([position.get(v.decode() if isinstance(v, bytes) else str(v), -1) for v in values.tolist()],
                    dtype=np.int64)

