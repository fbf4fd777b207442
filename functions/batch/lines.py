"""Predictions as JSON lines, each row keyed by its input line number.

Classifier rows are the bulk of most batch outputs, and building a dict per row costs more than the model
on small networks; their numbers are formatted for the whole chunk at once instead (same values as the
generic path, six fixed decimals).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import orjson

from functions.core.inference import class_labels, shape_predictions
from functions.core.model_cache import LoadedModel


@runtime_checkable
class PredictionSink(Protocol):
    """Where predictions go when they are not JSON lines (functions/batch/parquet.py: ParquetPredictions)."""

    def add(self, model: LoadedModel, output: npt.NDArray[Any], lines: Sequence[int],
            ids: dict[int, Any] | None) -> None:
        """Append the model's output for the rows at ``lines`` (input order)."""


def prediction_lines(model: LoadedModel, output: npt.NDArray[Any], lines: Sequence[int],
                     ids: dict[int, Any] | None = None) -> bytes:
    """The model's output for the rows at ``lines`` as JSON lines; with ``ids``, each row's "id" after "line"."""
    if model.manifest.task == "classification" and output.ndim == 2:
        return classification_lines(lines, class_labels(model.manifest, output.shape[1]), output, ids)
    rows = shape_predictions(model, output, lines)
    if ids:
        rows = [{"line": row["line"], "id": ids.get(row["line"]), **row} for row in rows]
    return json_lines(rows)


def json_lines(rows: list[dict[str, Any]]) -> bytes:
    """Rows that each start with a "line" key, as JSON lines, serialized in one orjson call.

    The list is dumped at once and split at the row boundaries: inside JSON strings a quote is always escaped,
    so the byte sequence ``},{"line":`` can only occur between two rows.
    """
    if not rows:
        return b""
    return orjson.dumps(rows)[1:-1].replace(b'},{"line":', b'}\n{"line":') + b"\n"


def classification_lines(lines: Sequence[int], labels: Sequence[str], probabilities: npt.NDArray[Any],
                         ids: dict[int, Any] | None = None) -> bytes:
    """``{"line": N, "label": L, "probabilities": {label: p, ...}}`` per row, without a dict per row.

    Probabilities (every value in [0, 1]) are written with six fixed decimals, built as bytes by numpy for the
    whole chunk; other outputs (scores, NaN) go through orjson. Either way each value parses to the output
    rounded to six decimals, as the generic path writes it.
    """
    if len(probabilities) == 0:
        return b""
    keys = [orjson.dumps(label) for label in labels]
    best = probabilities.argmax(axis=1).tolist()
    scaled = np.rint(probabilities.astype(np.float64) * 1e6)
    if np.isfinite(scaled).all() and scaled.min() >= 0 and scaled.max() <= 1e6:
        bodies = _fixed_bodies(scaled, keys)
    else:
        bodies = _orjson_bodies(probabilities, keys)
    if ids:
        return b"".join(b'{"line":%d,"id":%s,"label":%s,"probabilities":{%s:%s'
                        % (line, orjson.dumps(ids.get(line)), keys[i], keys[0], body)
                        for line, i, body in zip(lines, best, bodies, strict=True))
    heads = [b',"label":%s,"probabilities":{%s:' % (key, keys[0]) for key in keys]
    return b"".join(b'{"line":%d%s%s' % (line, heads[i], body)
                    for line, i, body in zip(lines, best, bodies, strict=True))


_DIGIT_PAIRS = np.frombuffer(b"".join(b"%02d" % i for i in range(100)), dtype="<u2").astype(np.uint64)


def _fixed_bodies(scaled: npt.NDArray[np.float64], keys: list[bytes]) -> list[bytes]:
    """Each row's ``p0,"k1":p1,...}}\n`` from millionths in [0, 1e6], numbers as ``d.dddddd``.

    A number's eight characters are one little-endian uint64 (digit pairs from a table), so the chunk is a few
    vectorized operations and one concatenation, then one slice per row.
    """
    rows, width = scaled.shape
    millionths = scaled.astype(np.uint64)
    whole = millionths // 1_000_000
    fraction = millionths - whole * 1_000_000
    packed = (whole + ord("0")) | (ord(".") << 8)
    packed |= _DIGIT_PAIRS.take(fraction // 10_000) << 16
    packed |= _DIGIT_PAIRS.take(fraction // 100 % 100) << 32
    packed |= _DIGIT_PAIRS.take(fraction % 100) << 48
    numbers = packed.astype("<u8").view(np.uint8).reshape(rows, width * 8)
    parts: list[npt.NDArray[np.uint8]] = []
    for column in range(width):
        if column:
            glue = b"," + keys[column] + b":"
            parts.append(np.broadcast_to(np.frombuffer(glue, dtype=np.uint8), (rows, len(glue))))
        parts.append(numbers[:, 8 * column:8 * column + 8])
    parts.append(np.broadcast_to(np.frombuffer(b"}}\n", dtype=np.uint8), (rows, 3)))
    matrix = np.concatenate(parts, axis=1)
    size = matrix.shape[1]
    blob = matrix.tobytes()
    return [blob[start:start + size] for start in range(0, rows * size, size)]


def _orjson_bodies(probabilities: npt.NDArray[Any], keys: list[bytes]) -> list[bytes]:
    """Each row's ``p0,"k1":p1,...}}\n`` with orjson's numbers (NaN and infinities as null)."""
    rounded = probabilities.astype(np.float64).round(6)
    rows = orjson.dumps(rounded, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2].split(b"],[")
    glue = [b"," + key + b":" for key in keys[1:]]
    bodies = []
    for row in rows:
        numbers = row.split(b",")
        pieces = [numbers[0]]
        for key, number in zip(glue, numbers[1:], strict=True):
            pieces += (key, number)
        bodies.append(b"".join(pieces) + b"}}\n")
    return bodies
