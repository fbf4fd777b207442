"""The reference profile of a version (``profile.json``): what drift is measured on, and against what.

Written at build time (``model_build/profile_build.py``), listed in the manifest's ``files`` with its sha256
like every file, plain JSON (never pickle), never returned by any route. What each kind of input contributes:

- tabular: every named feature in natural units (before standardization);
- image: the mean pixel value of each region of a 4 x 4 grid (2 x 2 pixel blocks on the 8 x 8 digits), so a
  brighter, shifted or cropped image moves regions while near-constant border pixels do not make noise;
- text with a vocabulary: ``tokens`` (words per text) and ``unknown_rate`` (share of words not in the vocabulary);
- text with a tokenizer: ``tokens``, ``unknown_rate`` (the tokenizer's unknown token) and ``pieces_per_word``
  (sub-word pieces per whitespace word: unfamiliar vocabulary splits into more pieces).

Each feature has quantile bin edges and the training split's share per bin. The prediction column is the
held-out split's predicted labels (classifiers), predicted values in quantile bins (regressors) or the cosine
distance of each embedding to the reference centroid (embedding models).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from functions.core import drift
from functions.core.errors import IntegrityError
from functions.core.manifest import (
    ImagePreprocessing,
    Manifest,
    Preprocessing,
    TabularPreprocessing,
    TextVocabPreprocessing,
    TokenizerPreprocessing,
)

if TYPE_CHECKING:
    from functions.core.store import Store

PROFILE_FILE = "profile.json"
PROFILE_SCHEMA = 1
GRID = 4
TEXT_VOCAB_FEATURES = ("tokens", "unknown_rate")
TOKENIZER_FEATURES = ("tokens", "unknown_rate", "pieces_per_word")


@dataclass(frozen=True)
class BinnedColumn:
    """One monitored column: bin edges and the reference share of each bin."""

    name: str
    edges: list[float]
    proportions: list[float]


@dataclass(frozen=True)
class PredictionProfile:
    """The prediction column: ``label`` (bins are labels), ``value`` or ``centroid_distance``."""

    kind: str
    column: BinnedColumn
    labels: list[str] | None = None
    centroid: list[float] | None = None


@dataclass(frozen=True)
class Profile:
    """Reference distributions of a version's inputs and predictions."""

    inputs: str
    features: list[BinnedColumn]
    prediction: PredictionProfile | None
    rows: int
    prediction_rows: int
    schema: int = PROFILE_SCHEMA

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


def parse_profile(data: bytes) -> Profile:
    """A profile from its JSON bytes; IntegrityError when the document is not one."""
    try:
        raw = orjson.loads(data)
        prediction = raw.get("prediction")
        profile = Profile(
            inputs=str(raw["inputs"]), features=[_column(c) for c in raw["features"]],
            prediction=None if prediction is None else PredictionProfile(
                kind=str(prediction["kind"]), column=_column(prediction["column"]),
                labels=None if prediction.get("labels") is None else [str(x) for x in prediction["labels"]],
                centroid=None if prediction.get("centroid") is None else [float(x) for x in prediction["centroid"]]),
            rows=int(raw["rows"]), prediction_rows=int(raw["prediction_rows"]), schema=int(raw["schema"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{PROFILE_FILE}: not a valid reference profile ({exc})") from None
    if profile.schema != PROFILE_SCHEMA:
        raise IntegrityError(f"{PROFILE_FILE}: schema {profile.schema} is not supported")
    return profile


def _column(raw: Mapping[str, Any]) -> BinnedColumn:
    edges = [float(e) for e in raw["edges"]]
    proportions = [float(p) for p in raw["proportions"]]
    if len(proportions) != len(edges) + 1 or edges != sorted(edges) or not all(map(math.isfinite, edges)):
        raise ValueError(f"column {raw.get('name')!r}: edges and proportions do not match")
    return BinnedColumn(name=str(raw["name"]), edges=edges, proportions=proportions)


def read_profile(store: Store, manifest: Manifest) -> Profile | None:
    """The version's verified profile, or None for versions built before profiles ("no reference")."""
    from functions.core import catalog
    from functions.core.integrity import verify_bytes

    try:
        entry = manifest.file(PROFILE_FILE)
    except KeyError:
        return None
    data = store.get_bytes(f"{catalog.version_prefix(manifest.name, manifest.version)}/{PROFILE_FILE}")
    verify_bytes(data, entry)
    return parse_profile(data)


# What is measured, shared by the build (reference) and by capture, batch, the CLI and the drift job (current).


def input_kind(spec: Preprocessing) -> str:
    return "text" if isinstance(spec, TextVocabPreprocessing | TokenizerPreprocessing) else spec.kind


def feature_names(spec: Preprocessing) -> list[str]:
    """The monitored input columns of a preprocessing spec."""
    if isinstance(spec, TabularPreprocessing):
        return list(spec.features)
    if isinstance(spec, ImagePreprocessing):
        return [f"region_r{r}c{c}" for r in range(GRID) for c in range(GRID)]
    return list(TOKENIZER_FEATURES if isinstance(spec, TokenizerPreprocessing) else TEXT_VOCAB_FEATURES)


def text_stats(preprocessor: Any, texts: Sequence[str], encodings: Sequence[Any] | None = None
               ) -> list[dict[str, float]]:
    """Length and token statistics of raw texts, with the version's own vocabulary or tokenizer. With
    ``encodings`` (the texts' unpadded encodings, ``TokenizerPreprocessor.tokenize``: a batch run has them
    already) the texts are not tokenized again; the statistics are the same."""
    if hasattr(preprocessor, "vocab"):  # TextVocabPreprocessor
        stats = []
        for text in texts:
            tokens = preprocessor.tokenize(text)
            unknown = sum(1 for t in tokens if t not in preprocessor.vocab)
            stats.append({"tokens": float(len(tokens)), "unknown_rate": round(unknown / max(len(tokens), 1), 4)})
        return stats
    tokenizer = preprocessor.tokenizer
    unk_token = getattr(tokenizer.model, "unk_token", None)
    unk_id = tokenizer.token_to_id(unk_token) if unk_token else None
    padded = encodings is None
    if encodings is None:
        encodings = tokenizer.encode_batch(list(texts))
    if not encodings:
        return []
    # Counted for the whole batch: a row's tokens are its ids that are neither special nor padding.
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.intp, count=len(ids))
    total = int(lengths.sum())
    row = np.repeat(np.arange(len(ids)), lengths)
    kept = np.fromiter(itertools.chain.from_iterable(e.special_tokens_mask for e in encodings), dtype=np.int8,
                       count=total) == 0
    if padded:
        kept &= np.fromiter(itertools.chain.from_iterable(e.attention_mask for e in encodings), dtype=np.int8,
                            count=total) == 1
    tokens = np.bincount(row[kept], minlength=len(ids)).tolist()
    if unk_id is None:
        unknowns = [0] * len(ids)
    else:
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        unknowns = np.bincount(row[kept & (flat == unk_id)], minlength=len(ids)).tolist()
    return [{"tokens": float(count), "unknown_rate": round(unknown / max(count, 1), 4),
             "pieces_per_word": round(count / max(len(text.split()), 1), 4)}
            for text, count, unknown in zip(texts, tokens, unknowns, strict=True)]


def input_matrix(spec: Preprocessing, instances: Sequence[Any] | npt.NDArray[Any],
                 preprocessor: Any = None, encodings: Sequence[Any] | None = None) -> npt.NDArray[np.float64]:
    """Monitored input columns ``[N, F]`` of natural instances (or captured records of them); NaN where a
    value is missing, masked or not a number. ``encodings``: the unpadded encodings of the instances, when
    every one is a text (``text_stats``)."""
    names = feature_names(spec)
    if len(instances) == 0:
        return np.empty((0, len(names)))
    if isinstance(spec, ImagePreprocessing):
        return _regions(spec, instances)
    if isinstance(spec, TabularPreprocessing):
        if isinstance(instances, np.ndarray) or not isinstance(instances[0], Mapping):
            return _numeric(instances, len(names))
        return _dict_rows(instances, names)
    rows: list[Mapping[str, Any]] = []
    raw = [i for i in instances if isinstance(i, str)]
    known = encodings if encodings is not None and len(encodings) == len(raw) == len(instances) else None
    computed = iter(text_stats(preprocessor, raw, known)) if raw and preprocessor is not None else iter(())
    for instance in instances:
        if isinstance(instance, Mapping):
            rows.append(instance)
        else:
            rows.append(next(computed, {}))
    return _dict_rows(rows, names)


def _dict_rows(rows: Sequence[Mapping[str, Any]], names: list[str]) -> npt.NDArray[np.float64]:
    """Feature dicts as a matrix: one conversion when every value is a number (missing ones NaN), else cell by
    cell (hashed or non-numeric values become NaN)."""
    try:
        return np.array([[row.get(n, math.nan) for n in names] for row in rows], dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([[_number(row.get(n)) for n in names] for row in rows], dtype=np.float64)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _numeric(instances: Sequence[Any] | npt.NDArray[Any], width: int) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(instances, dtype=np.float64)
        if array.ndim == 2 and array.shape[1] == width:
            return array
    except (ValueError, TypeError):
        pass
    return np.array([_row(i, width) for i in instances], dtype=np.float64)


def _row(instance: Any, width: int) -> list[float]:
    try:
        row = np.asarray(instance, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        return [math.nan] * width
    return row.tolist() if row.size == width else [math.nan] * width


def _regions(spec: ImagePreprocessing, instances: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Mean pixel of each cell of a GRID x GRID split of every image (cells as ``np.array_split`` cuts them)."""
    height, width = spec.shape[-2], spec.shape[-1]
    pixels = _numeric(instances, height * width).reshape(-1, height, width)
    if height < GRID or width < GRID:  # some cells are empty: their mean is NaN, skipped by the accumulator
        row_parts, col_parts = np.array_split(np.arange(height), GRID), np.array_split(np.arange(width), GRID)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.stack([pixels[:, r[:, None], c].mean(axis=(1, 2)) for r in row_parts for c in col_parts],
                            axis=1)
    # Cell means as two matrix products with averaging weights (BLAS), not a loop over cells.
    rows = _cell_weights(height)
    cols = _cell_weights(width)
    count = len(pixels)
    by_column = (pixels.reshape(count * height, width) @ cols.T).reshape(count, height, GRID)
    by_cell = (by_column.transpose(0, 2, 1).reshape(count * GRID, height) @ rows.T).reshape(count, GRID, GRID)
    means: npt.NDArray[np.float64] = by_cell.transpose(0, 2, 1).reshape(count, GRID * GRID)
    return means


@lru_cache(maxsize=16)
def _cell_weights(size: int) -> npt.NDArray[np.float64]:
    """``[GRID, size]``: row g averages the indices ``np.array_split`` puts in part g."""
    weights = np.zeros((GRID, size))
    for cell, part in enumerate(np.array_split(np.arange(size), GRID)):
        weights[cell, part] = 1.0 / len(part)
    return weights


def prediction_column(task: str, output: npt.NDArray[Any], prediction: PredictionProfile | None) -> npt.NDArray[Any]:
    """The monitored prediction value of each row of a raw model output."""
    if task == "classification":
        labels: npt.NDArray[np.float64] = np.asarray(output).argmax(axis=1).astype(np.float64)
        return labels
    if task == "regression":
        values: npt.NDArray[np.float64] = np.asarray(output, dtype=np.float64).reshape(len(output), -1)[:, 0]
        return values
    centroid = None if prediction is None or prediction.centroid is None else np.asarray(prediction.centroid)
    return centroid_distance(np.asarray(output, dtype=np.float64), centroid)


def centroid_distance(embeddings: npt.NDArray[np.float64], centroid: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    """Cosine distance of each embedding to the (unit-normalized) centroid."""
    if centroid is None or embeddings.size == 0:
        return np.full(len(embeddings), math.nan)
    unit = centroid / (np.linalg.norm(centroid) or 1.0)
    norms = np.linalg.norm(embeddings, axis=1)
    norms[norms == 0] = 1.0
    distances: npt.NDArray[np.float64] = 1.0 - (embeddings @ unit) / norms
    return distances


def record_predictions(outputs: Sequence[Mapping[str, Any]], prediction: PredictionProfile | None) -> list[float]:
    """The prediction column from captured or batch output records (``label``, ``value`` or ``embedding``)."""
    if prediction is None:
        return []
    if prediction.kind == "label":
        index = {label: i for i, label in enumerate(prediction.labels or [])}
        return [float(index.get(str(o.get("label")), math.nan)) for o in outputs]
    if prediction.kind == "value":
        return [_number(o.get("value")) for o in outputs]
    embeddings = [o.get("embedding") for o in outputs]
    good = [e for e in embeddings if isinstance(e, list)]
    if not good or prediction.centroid is None:
        return []
    try:
        distances: list[float] = centroid_distance(np.asarray(good, dtype=np.float64),
                                                   np.asarray(prediction.centroid)).tolist()
        return distances
    except ValueError:
        return []


class DriftTracker:
    """Current bin counts of a version's inputs and predictions against its profile, then the report."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.inputs = drift.Accumulator([f.edges for f in profile.features])
        pred = profile.prediction
        self.predictions = drift.Accumulator([pred.column.edges] if pred else [])

    def add_inputs(self, matrix: npt.ArrayLike) -> None:
        self.inputs.add(matrix)

    def add_predictions(self, column: npt.ArrayLike) -> None:
        if self.profile.prediction is not None:
            self.predictions.add(np.asarray(column, dtype=np.float64).reshape(-1, 1))

    def report(self) -> dict[str, Any]:
        """Per-feature PSI with verdicts, prediction drift and the summary (status, max PSI, features over)."""
        profile = self.profile
        features = [drift.compare_column(f.name, f.edges, f.proportions, counts, profile.rows)
                    for f, counts in zip(profile.features, self.inputs.counts, strict=True)]
        pred = profile.prediction
        prediction = None
        if pred is not None:
            names = pred.labels if pred.kind == "label" else None
            prediction = {"kind": pred.kind, **drift.compare_column(pred.column.name, pred.column.edges,
                                                                   pred.column.proportions, self.predictions.counts[0],
                                                                   profile.prediction_rows, names)}
        return summarize(features, prediction, self.inputs.rows)


def summarize(features: list[dict[str, Any]], prediction: dict[str, Any] | None, rows: int) -> dict[str, Any]:
    """The report's summary around its columns."""
    columns = [c for c in [*features, *([prediction] if prediction else [])] if c["psi"] is not None]
    max_psi = max((c["psi"] for c in columns), default=None)
    max_excess = max((c["excess"] for c in columns), default=None)
    over = [f["name"] for f in features if f["verdict"] == "drift"]
    status = "no_data" if rows == 0 else "too_few_rows" if not columns else drift.verdict(max_excess)
    return {"status": status, "rows": rows, "max_psi": max_psi, "max_excess": max_excess,
            "thresholds": {"watch": drift.WATCH, "act": drift.ACT}, "features_over_threshold": over,
            "prediction_drift": None if prediction is None else prediction["verdict"],
            "features": features, "prediction": prediction}


NO_REFERENCE: dict[str, Any] = {"status": "no_reference",
                                "detail": "this version was built without a reference profile"}
