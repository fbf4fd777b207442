"""The bulk JSON-lines writers give the rows of the generic per-row path: classifiers the same keys in the
same order, every probability equal to the output rounded to six decimals; embeddings and regression values
the very bytes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import orjson
import pytest

from functions.batch.lines import classification_lines, json_lines, manifest_lines
from functions.core.inference import shape_rows
from functions.core.manifest import Manifest


def _generic(lines: list[int], labels: list[str], output: np.ndarray[Any, Any]) -> bytes:
    best = output.argmax(axis=1).tolist()
    rows = output.astype(np.float64).round(6).tolist()
    return json_lines([{"line": n, "label": labels[i], "probabilities": dict(zip(labels, row, strict=True))}
                       for n, i, row in zip(lines, best, rows, strict=True)])


def _rows(text: bytes) -> list[tuple[list[str], dict[str, Any]]]:
    parsed = [orjson.loads(line) for line in text.splitlines()]
    return [(list(row), row) for row in parsed]


def _assert_same_rows(fast: bytes, generic: bytes) -> None:
    assert fast.endswith(b"\n") and fast.count(b"\n") == generic.count(b"\n")
    for (keys, row), (want_keys, want) in zip(_rows(fast), _rows(generic), strict=True):
        assert keys == want_keys and list(row["probabilities"]) == list(want["probabilities"])
        assert {k: v for k, v in row.items() if k != "probabilities"} == \
               {k: v for k, v in want.items() if k != "probabilities"}
        for label, value in want["probabilities"].items():
            got = row["probabilities"][label]
            assert (got is None and value is None) or abs(got - value) <= 1e-12, (label, got, value)


@pytest.mark.parametrize(("rows", "width"), [(1, 1), (1, 2), (3, 1), (6, 3), (1024, 10)])
def test_same_rows_as_the_generic_path(rows: int, width: int) -> None:
    output = np.random.default_rng(rows * 31 + width).random((rows, width)).astype(np.float32)
    labels = [f'quote " and \\ é {i}' if i % 2 else str(i) for i in range(width)]
    lines = [2 * n + 7 for n in range(rows)]
    _assert_same_rows(classification_lines(lines, labels, output), _generic(lines, labels, output))


def test_probabilities_have_six_fixed_decimals() -> None:
    output = np.array([[1.0, 0.0], [0.5, 0.5], [1e-7, 0.9999996], [0.1234565, 0.8765435]], dtype=np.float64)
    text = classification_lines([1, 2, 3, 4], ["a", "b"], output)
    assert text.splitlines()[0] == b'{"line":1,"label":"a","probabilities":{"a":1.000000,"b":0.000000}}'
    assert text.splitlines()[2] == b'{"line":3,"label":"b","probabilities":{"a":0.000000,"b":1.000000}}'
    _assert_same_rows(text, _generic([1, 2, 3, 4], ["a", "b"], output))


def test_scores_outside_zero_to_one_and_nan_take_the_orjson_path() -> None:
    output = np.array([[np.nan, 0.5], [1e-9, 1e9], [0.0, -0.0], [np.inf, 1.0], [-3.25, 2.0]], dtype=np.float32)
    labels = ["no", "yes"]
    lines = [2, 3, 4, 5, 6]
    text = classification_lines(lines, labels, output)
    assert text == _generic(lines, labels, output)
    parsed = [orjson.loads(line) for line in text.splitlines()]
    assert [row["line"] for row in parsed] == lines
    assert parsed[0]["probabilities"] == {"no": None, "yes": 0.5}
    assert parsed[1] == {"line": 3, "label": "yes", "probabilities": {"no": 0.0, "yes": 1e9}}
    assert parsed[4]["probabilities"] == {"no": -3.25, "yes": 2.0}


def test_ids_follow_the_line_on_both_paths() -> None:
    ids = {1: 'a,"b"\n', 2: 17}
    for output in (np.array([[0.25, 0.75], [0.9, 0.1]]), np.array([[2.5, -1.0], [0.0, 3.0]])):
        text = classification_lines([1, 2], ["no", "yes"], output, ids)
        parsed = [orjson.loads(line) for line in text.splitlines()]
        assert [list(row)[:2] for row in parsed] == [["line", "id"]] * 2
        assert [row["id"] for row in parsed] == [ids[1], 17]


def test_no_rows_is_no_bytes() -> None:
    assert classification_lines([], ["a", "b"], np.zeros((0, 2), dtype=np.float32)) == b""


def _manifest(task: str) -> Manifest:
    """A manifest of ``task`` (only the task and labels matter to the formatting)."""
    return cast(Manifest, SimpleNamespace(task=task, labels=None))


def _old_lines(task: str, output: np.ndarray[Any, Any], lines: list[int], ids: dict[int, Any] | None) -> bytes:
    """The path every row took before the bulk formatting: dicts of Python floats, one orjson call."""
    rows = shape_rows(_manifest(task), output, lines)
    if ids:
        rows = [{"line": row["line"], "id": ids.get(row["line"]), **row} for row in rows]
    return json_lines(rows)


SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-7, 5e-324, 1e16, 3.4e38, -1.5e-45, 123456.789]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize(("task", "shape"), [("embedding", (7, 5)), ("embedding", (1, 0)), ("embedding", (3, 1)),
                                             ("regression", (9, 1)), ("regression", (4,)), ("embedding", (2, 3, 2))])
def test_embeddings_and_values_are_the_bytes_of_the_per_row_path(task: str, shape: tuple[int, ...],
                                                                  dtype: type) -> None:
    rng = np.random.default_rng(len(shape) * 7 + shape[0])
    values = np.concatenate([rng.normal(0, 0.05, 64), rng.normal(0, 1e6, 16), np.array(SPECIAL)])
    with np.errstate(over="ignore"):
        output = rng.choice(values, size=shape).astype(dtype)
    lines = [3 * n + 2 for n in range(shape[0])]
    for ids in (None, {line: (f'k"{line}' if line % 2 else line) for line in lines[:-1]}):
        assert manifest_lines(_manifest(task), output, lines, ids) == _old_lines(task, output, lines, ids)


def test_no_embedding_rows_is_no_bytes() -> None:
    assert manifest_lines(_manifest("embedding"), np.zeros((0, 4), dtype=np.float32), []) == b""
