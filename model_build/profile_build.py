"""Write a version's reference profile (``profile.json``) at build time; the format is functions/core/profile.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core import drift
from functions.core.manifest import Preprocessing
from functions.core.preprocessing import make_preprocessor
from functions.core.profile import (
    PROFILE_FILE as PROFILE_FILE,
)
from functions.core.profile import (
    BinnedColumn,
    PredictionProfile,
    Profile,
    feature_names,
    input_kind,
    input_matrix,
    prediction_column,
)


def make_profile(spec: Preprocessing, input_name: str, aux_files: Mapping[str, bytes], task: str,
                 labels: Sequence[str] | None, train_instances: Sequence[Any] | npt.NDArray[Any],
                 heldout_output: npt.NDArray[Any]) -> Profile:
    """Input columns binned on the training split's natural instances; the prediction column on the held-out
    split's outputs of the shipped variant."""
    preprocessor = make_preprocessor(spec, input_name, aux_files)
    matrix = input_matrix(spec, train_instances, preprocessor)
    features = [_binned(name, matrix[:, i]) for i, name in enumerate(feature_names(spec))]
    return Profile(inputs=input_kind(spec), features=features, rows=int(matrix.shape[0]),
                   prediction=_prediction(task, labels, heldout_output), prediction_rows=len(heldout_output))


def _binned(name: str, values: npt.NDArray[Any], edges: list[float] | None = None) -> BinnedColumn:
    edges = drift.quantile_edges(values) if edges is None else edges
    proportions = drift.shares(drift.bin_counts(values, edges))
    return BinnedColumn(name=name, edges=edges, proportions=[round(float(p), 6) for p in proportions])


def _prediction(task: str, labels: Sequence[str] | None, output: npt.NDArray[Any]) -> PredictionProfile:
    if task == "classification":
        names = list(labels) if labels else [str(i) for i in range(np.asarray(output).shape[1])]
        column = prediction_column(task, output, None)
        return PredictionProfile(kind="label", labels=names,
                                 column=_binned("predicted label", column, drift.label_edges(len(names))))
    if task == "regression":
        return PredictionProfile(kind="value", column=_binned("predicted value", prediction_column(task, output, None)))
    embeddings = np.asarray(output, dtype=np.float64)
    centroid = embeddings.mean(axis=0)
    draft = PredictionProfile(kind="centroid_distance", column=BinnedColumn("", [], [1.0]),
                              centroid=[round(float(v), 6) for v in centroid])
    distances = prediction_column(task, embeddings, draft)
    return PredictionProfile(kind="centroid_distance", centroid=draft.centroid,
                             column=_binned("distance to reference centroid", distances))


def write_profile(work: Path, recipe: Any, fitted: Any, data: Any, heldout_output: npt.NDArray[Any]) -> Path:
    """``profile.json`` in ``work`` for a trained recipe (the one line the build pipeline calls)."""
    profile = make_profile(fitted.spec, recipe.input_name, fitted.files, recipe.task, recipe.labels, data.x_train,
                           heldout_output)
    path = work / PROFILE_FILE
    path.write_bytes(profile.to_json())
    return path


def write_pretrained_profile(work: Path, spec: Any, tokenizer_json: bytes, texts: Sequence[str],
                             embeddings: npt.NDArray[Any] | None) -> Path:
    """``profile.json`` for a pretrained text encoder: its sample texts stand in for both splits."""
    assert embeddings is not None
    profile = make_profile(spec, "input_ids", {spec.tokenizer_file: tokenizer_json}, "embedding", None, texts,
                           embeddings)
    path = work / PROFILE_FILE
    path.write_bytes(profile.to_json())
    return path
