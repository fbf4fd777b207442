"""Predictions as JSON lines, each row keyed by its input line number.

Classifier rows are the bulk of most batch outputs, and building a dict per row costs more than the model
on small networks; they are written from one orjson call over the probability matrix instead, byte for byte
what the generic path writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from functions.core.inference import class_labels, shape_predictions
from functions.core.model_cache import LoadedModel


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

    The numbers come from one orjson call over the rounded matrix; the fixed JSON between them ("glue") is
    interleaved by slice assignment, so the per-row Python work is one bytes format for the head.
    """
    rows, width = probabilities.shape
    if rows == 0:
        return b""
    rounded = probabilities.astype(np.float64).round(6)
    numbers = orjson.dumps(rounded, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2].replace(b"],[", b",").split(b",")
    keys = [orjson.dumps(label) for label in labels]
    best = probabilities.argmax(axis=1).tolist()
    if ids:
        heads = [b'}}\n{"line":%d,"id":%s,"label":%s,"probabilities":{%s:'
                 % (line, orjson.dumps(ids.get(line)), keys[i], keys[0]) for line, i in zip(lines, best, strict=True)]
    else:
        heads = [b'}}\n{"line":%d,"label":%s,"probabilities":{%s:' % (line, keys[i], keys[0])
                 for line, i in zip(lines, best, strict=True)]
    heads[0] = heads[0][3:]
    glue: list[bytes] = [b""] * (rows * width + 1)
    glue[0::width] = [*heads, b"}}\n"]
    for column in range(1, width):
        glue[column::width] = [b"," + keys[column] + b":"] * rows
    pieces: list[bytes] = [b""] * (2 * rows * width + 1)
    pieces[0::2] = glue
    pieces[1::2] = numbers
    return b"".join(pieces)
