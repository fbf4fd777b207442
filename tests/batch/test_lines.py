"""The fast classifier JSON-lines writer produces exactly the bytes of the generic per-row path."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from functions.batch.lines import classification_lines, json_lines


def _generic(lines: list[int], labels: list[str], output: np.ndarray[Any, Any]) -> bytes:
    best = output.argmax(axis=1).tolist()
    rows = output.astype(np.float64).round(6).tolist()
    return json_lines([{"line": n, "label": labels[i], "probabilities": dict(zip(labels, row, strict=True))}
                       for n, i, row in zip(lines, best, rows, strict=True)])


@pytest.mark.parametrize(("rows", "width"), [(1, 1), (1, 2), (3, 1), (6, 3), (1024, 10)])
def test_same_bytes_as_the_generic_path(rows: int, width: int) -> None:
    output = np.random.default_rng(rows * 31 + width).random((rows, width)).astype(np.float32)
    labels = [f'quote " and \\ é {i}' if i % 2 else str(i) for i in range(width)]
    lines = [2 * n + 7 for n in range(rows)]
    assert classification_lines(lines, labels, output) == _generic(lines, labels, output)


def test_extreme_values_match_and_parse() -> None:
    output = np.array([[np.nan, 0.5], [1e-9, 1e9], [0.0, -0.0], [np.inf, 1.0]], dtype=np.float32)
    labels = ["no", "yes"]
    lines = [2, 3, 4, 5]
    text = classification_lines(lines, labels, output)
    assert text == _generic(lines, labels, output)
    parsed = [orjson.loads(line) for line in text.splitlines()]
    assert [row["line"] for row in parsed] == lines
    assert parsed[0]["probabilities"] == {"no": None, "yes": 0.5}
    assert parsed[1] == {"line": 3, "label": "yes", "probabilities": {"no": 0.0, "yes": 1e9}}


def test_no_rows_is_no_bytes() -> None:
    assert classification_lines([], ["a", "b"], np.zeros((0, 2), dtype=np.float32)) == b""
