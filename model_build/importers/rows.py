"""The rows an import is checked on: ``--sample`` (raw inputs), ``--eval`` (raw inputs plus a target column), or
inputs generated within the signature when no sample is given.

Files are read with the batch readers (``functions/batch/formats.py``): .csv with a header, .jsonl, .npy. A row
the model cannot take, or a file whose columns do not match, stops the import with one line naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from functions.batch.formats import input_format, read_chunks
from functions.core.errors import InvalidInputError, UnreadableInputError
from functions.core.manifest import ImagePreprocessing, Preprocessing, TabularPreprocessing

MAX_ROWS = 5000
"""Rows read from a sample or eval file (the rest is ignored)."""
MAX_LINE_BYTES = 1 << 20


def columns(path: Path, exclude: str | None = None) -> list[str] | None:
    """Feature names a sample file names itself: a CSV header, or the keys of the first JSON-lines object."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), None)
            names = [c.strip() for c in header] if header else None
        elif path.suffix.lower() == ".jsonl":
            with path.open("rb") as f:
                first = orjson.loads(next((line for line in f if line.strip()), b"null"))
            names = [str(k) for k in first] if isinstance(first, dict) else None
        else:
            return None
    except (OSError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path.name}: cannot read it ({exc})") from None
    return [n for n in names if n != exclude] if names else None


def read_rows(path: Path, spec: Preprocessing, option: str,
              target: str | None = None) -> tuple[list[Any] | npt.NDArray[Any], list[Any]]:
    """(instances, target values) of a sample or eval file; ``option`` names it in messages (``--sample``)."""
    label = f"{option} {path.name}"
    if not path.is_file():
        raise InvalidInputError(f"{label}: no such file")
    try:
        fmt = input_format(path.name)
        chunks = read_chunks(path, fmt, spec, MAX_ROWS, MAX_LINE_BYTES, id_column=target)
        instances: list[Any] = []
        arrays: list[npt.NDArray[Any]] = []
        targets: list[Any] = []
        for chunk in chunks:
            if chunk.bad:
                line, reason = chunk.bad[0]
                raise InvalidInputError(f"{label} line {line}: {reason}")
            if isinstance(chunk.instances, np.ndarray):
                arrays.append(chunk.instances)
            else:
                instances += chunk.instances
            targets += [chunk.ids[line] for line in chunk.lines if line in chunk.ids]
            if len(instances) + sum(len(a) for a in arrays) >= MAX_ROWS:
                break
    except UnreadableInputError as exc:
        raise InvalidInputError(f"{label}: {exc.message}") from None
    rows: list[Any] | npt.NDArray[Any] = np.concatenate(arrays)[:MAX_ROWS] if arrays else instances[:MAX_ROWS]
    if len(rows) == 0:
        raise InvalidInputError(f"{label}: no rows")
    return rows, targets[:MAX_ROWS]


def generated(spec: Preprocessing, rows: int, seed: int) -> npt.NDArray[np.float64]:
    """Inputs within the signature: standard normal features, or pixels uniform in the value range."""
    rng = np.random.default_rng(seed)
    if isinstance(spec, TabularPreprocessing):
        return rng.normal(size=(rows, len(spec.features)))
    if isinstance(spec, ImagePreprocessing):
        low, high = spec.value_range
        return rng.uniform(low, high, size=(rows, *spec.shape))
    raise InvalidInputError("text models need --sample (a .jsonl or .csv of texts) to be checked on")


def value_range(rows: npt.NDArray[Any]) -> tuple[float, float]:
    """The pixel range an image sample implies: [0, 1], [0, 255], else its own range rounded outwards."""
    low, high = float(np.min(rows)), float(np.max(rows))
    for bound in (1.0, 255.0):
        if low >= 0 and high <= bound:
            return 0.0, bound
    return float(np.floor(low)), float(np.ceil(high))
