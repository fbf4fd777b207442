"""Predictions as JSON lines, each row keyed by its input line number.

Batch outputs are formatted for the whole chunk at once, without a dict or a Python float per row (building
those costs more than the model on small networks, and more than the GPU on large ones): classifier numbers
with numpy (six fixed decimals, the same values as the generic path), regression values and embeddings with
one orjson call over the chunk's float64 array, split at the row boundaries. The bytes are those of the
generic path (``shape_rows`` then orjson), which still serves the shapes these paths do not cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import orjson

from functions.core.inference import class_labels, shape_rows
from functions.core.manifest import Manifest
from functions.core.model_cache import LoadedModel


@runtime_checkable
class PredictionSink(Protocol):
    """Where predictions go when they are not JSON lines (functions/batch/parquet.py: ParquetPredictions).

    The runner formats each chunk with ``formatter()`` (a picklable callable ``(output, lines, ids) -> piece``,
    so a host process can run it) and hands the pieces, in input order, to ``add_formatted``."""

    def formatter(self) -> Any:
        """The callable that turns one chunk's output into what ``add_formatted`` takes."""

    def add_formatted(self, piece: Any) -> None:
        """Append one chunk's formatted predictions (input order)."""


@dataclass(frozen=True)
class JsonLinesFormatter:
    """A chunk's outputs as JSON-lines bytes (picklable: the manifest is all it needs)."""

    manifest: Manifest

    def __call__(self, output: npt.NDArray[Any], lines: Sequence[int], ids: dict[int, Any] | None = None) -> bytes:
        return manifest_lines(self.manifest, output, lines, ids)


def prediction_lines(model: LoadedModel, output: npt.NDArray[Any], lines: Sequence[int],
                     ids: dict[int, Any] | None = None) -> bytes:
    """The model's output for the rows at ``lines`` as JSON lines; with ``ids``, each row's "id" after "line"."""
    return manifest_lines(model.manifest, output, lines, ids)


def manifest_lines(manifest: Manifest, output: npt.NDArray[Any], lines: Sequence[int],
                   ids: dict[int, Any] | None = None) -> bytes:
    """``prediction_lines`` by the manifest alone."""
    if manifest.task == "classification" and output.ndim == 2:
        return classification_lines(lines, class_labels(manifest, output.shape[1]), output, ids)
    if len(lines) and manifest.task == "regression" and output.ndim >= 1:
        return keyed_lines(lines, b"value", _numbers(output.reshape(len(output), -1)[:, 0]), ids)
    if len(lines) and manifest.task != "regression" and output.ndim == 2:
        return keyed_lines(lines, b"embedding", _arrays(output), ids)
    rows = shape_rows(manifest, output, lines)
    if ids:
        rows = [{"line": row["line"], "id": ids.get(row["line"]), **row} for row in rows]
    return json_lines(rows)


def _numbers(values: npt.NDArray[Any]) -> list[bytes]:
    """Each value as orjson writes the Python float of it (one call over the float64 array)."""
    return orjson.dumps(values.astype(np.float64), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")


def _arrays(rows: npt.NDArray[Any]) -> list[bytes]:
    """Each row of a 2-D array as orjson writes its list of Python floats, ``[...]`` (numbers hold no ``]``)."""
    body = orjson.dumps(rows.astype(np.float64), option=orjson.OPT_SERIALIZE_NUMPY)[2:-2]
    return [b"[" + row + b"]" for row in body.split(b"],[")]


def keyed_lines(lines: Sequence[int], key: bytes, values: Sequence[bytes], ids: dict[int, Any] | None) -> bytes:
    """``{"line": N, ["id": I,] KEY: VALUE}`` per row from each row's JSON value, as one bytes object."""
    if ids:
        return b"".join([b'{"line":%d,"id":%s,"%s":%s}\n' % (line, orjson.dumps(ids.get(line)), key, value)
                         for line, value in zip(lines, values, strict=True)])
    return b"".join([b'{"line":%d,"%s":%s}\n' % (line, key, value) for line, value in zip(lines, values, strict=True)])


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
