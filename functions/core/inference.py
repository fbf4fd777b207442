"""Decoding model outputs into JSON-ready predictions per task (the v1 codec's and the batch runner's decoder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.core.manifest import Manifest
from functions.core.model_cache import LoadedModel

if TYPE_CHECKING:
    import numpy.typing as npt


def run_model(model: LoadedModel, instances: Sequence[Any]) -> npt.NDArray[np.float32]:
    """Validate, encode and run through the prediction service; InvalidInputError names the first bad instance."""
    from functions.core.service import PredictionService

    return PredictionService.run(model, PredictionService.encode(model, instances))


def class_labels(manifest: Manifest, classes: int) -> list[str]:
    """The manifest's labels, else the class indices as strings."""
    return manifest.labels or [str(i) for i in range(classes)]


def shape_predictions(model: LoadedModel, output: npt.NDArray[Any],
                      lines: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Classifiers: label and per-label probabilities; regressors: value. With ``lines`` (batch), each
    prediction starts with its input line number."""
    return shape_rows(model.manifest, output, lines)


def shape_rows(manifest: Manifest, output: npt.NDArray[Any],
               lines: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """``shape_predictions`` by the manifest alone (what a batch host process has)."""
    if manifest.task == "classification":
        labels = class_labels(manifest, output.shape[1])
        best = output.argmax(axis=1).tolist()
        rows = output.astype(np.float64).round(6).tolist()
        if lines is not None:
            return [{"line": n, "label": labels[i], "probabilities": dict(zip(labels, row, strict=True))}
                    for n, i, row in zip(lines, best, rows, strict=True)]
        return [{"label": labels[i], "probabilities": dict(zip(labels, row, strict=True))}
                for i, row in zip(best, rows, strict=True)]
    if manifest.task == "regression":
        values = output.reshape(len(output), -1)[:, 0].astype(np.float64).tolist()
        if lines is not None:
            return [{"line": n, "value": v} for n, v in zip(lines, values, strict=True)]
        return [{"value": value} for value in values]
    embeddings = output.astype(np.float64).tolist()
    if lines is not None:
        return [{"line": n, "embedding": row} for n, row in zip(lines, embeddings, strict=True)]
    return [{"embedding": row} for row in embeddings]


def predict(model: LoadedModel, instances: Sequence[Any]) -> list[dict[str, Any]]:
    """Natural instances in, JSON-ready predictions out."""
    return shape_predictions(model, run_model(model, instances))
