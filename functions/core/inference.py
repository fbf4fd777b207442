"""Predictions from natural instances: preprocess, run, shape the result per task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.model_cache import LoadedModel


def run_model(model: LoadedModel, instances: Sequence[Any]) -> npt.NDArray[np.float32]:
    """Validate, encode and run; raises InvalidInputError naming the first bad instance."""
    tensors = model.preprocessor.encode(instances)
    output: npt.NDArray[np.float32] = model.session.run(None, tensors)[0]
    return output


def shape_predictions(model: LoadedModel, output: npt.NDArray[Any]) -> list[dict[str, Any]]:
    """Classifiers: label and per-label probabilities; regressors: value."""
    manifest = model.manifest
    if manifest.task == "classification":
        labels = manifest.labels or [str(i) for i in range(output.shape[1])]
        best = output.argmax(axis=1).tolist()
        rows = output.astype(np.float64).round(6).tolist()
        return [{"label": labels[i], "probabilities": dict(zip(labels, row, strict=True))}
                for i, row in zip(best, rows, strict=True)]
    if manifest.task == "regression":
        return [{"value": value} for value in output.reshape(len(output), -1)[:, 0].astype(np.float64).tolist()]
    return [{"embedding": row} for row in output.astype(np.float64).tolist()]


def predict(model: LoadedModel, instances: Sequence[Any]) -> list[dict[str, Any]]:
    """Natural instances in, JSON-ready predictions out."""
    return shape_predictions(model, run_model(model, instances))
