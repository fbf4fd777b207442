"""CSV read by a real parser on the stream (quoted commas, quotes, newlines), physical start lines kept, and
the optional id column copied into prediction and error rows (issue 17)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from functions.batch.formats import Chunk, UnreadableInputError, read_chunks
from functions.batch.lines import classification_lines, json_lines
from functions.batch.process import id_column_of
from functions.core.manifest import TabularPreprocessing, TextVocabPreprocessing
from functions.core.store import LocalStore
from tests.batch.conftest import DIABETES_ROW
from tests.batch.test_local_cli import maas_batch

TABULAR = TabularPreprocessing(features=["a", "b"], mean=[0.0, 0.0], std=[1.0, 1.0])
TEXT = TextVocabPreprocessing(vocab_file="vocab.json", max_tokens=4, max_chars=50)


def _read(tmp_path: Path, data: bytes, spec: object = TEXT, fmt: str = ".csv", id_column: str | None = None,
          max_bytes: int = 1000) -> list[Chunk]:
    path = tmp_path / f"in{fmt}"
    path.write_bytes(data)
    return list(read_chunks(path, fmt, spec, 100, max_bytes, id_column))  # type: ignore[arg-type]


def test_quoted_commas_quotes_and_newlines_are_one_record_at_its_start_line(tmp_path: Path) -> None:
    data = (b'id,text\r\n'
            b'a,"hello, world"\r\n'
            b'b,"two\nlines, and ""quotes"""\n'
            b'\n'
            b'c,"three\n\nlines"\n'
            b'd,plain\n')
    [chunk] = _read(tmp_path, data, id_column="id")
    assert chunk.lines == [2, 3, 6, 9]
    assert chunk.instances == ["hello, world", 'two\nlines, and "quotes"', "three\n\nlines", "plain"]
    assert chunk.ids == {2: "a", 3: "b", 6: "c", 9: "d"}
    assert chunk.bad == []


def test_bad_records_keep_their_start_line_and_the_rest_is_read(tmp_path: Path) -> None:
    data = (b'a,b\n'
            b'1,2\n'
            b'"3\n4",x,y\n'          # ragged (3 cells) over two lines
            b'5,\xff\n'                # not UTF-8
            b'"' + b'x' * 2000 + b'\n'  # an over-long line
            b'6,7\n')
    [chunk] = _read(tmp_path, data, spec=TABULAR)
    assert chunk.lines == [2, 7]
    assert [line for line, _ in chunk.bad] == [3, 5, 6]
    reasons = dict(chunk.bad)
    assert reasons[3] == "expected 2 cells, got 3" and "UTF-8" in reasons[5] and "longer than 1000" in reasons[6]


def test_an_unclosed_quote_cannot_swallow_the_file(tmp_path: Path) -> None:
    rows = b"".join(b"%d,%d\n" % (i, i) for i in range(200))
    chunks = _read(tmp_path, b'a,b\n1,"2\n' + rows, spec=TABULAR, max_bytes=300)
    bad = [row for chunk in chunks for row in chunk.bad]
    lines = [line for chunk in chunks for line in chunk.lines]
    assert bad[0][0] == 2 and "record longer than 300 bytes" in bad[0][1]
    assert lines == list(range(lines[0], 203)) and len(lines) > 140  # read on after the runaway record
    assert lines[-1] == 202


def test_id_column_must_exist_and_npy_has_none(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="lacks the id column 'key'"):
        _read(tmp_path, b"a,b\n1,2\n", spec=TABULAR, id_column="key")
    buffer = tmp_path / "x.npy"
    np.save(buffer, np.zeros((2, 2)))
    with pytest.raises(UnreadableInputError, match=r"id column needs \.csv or \.jsonl"):
        list(read_chunks(buffer, ".npy", TABULAR, 10, 1000, "key"))


def test_jsonl_id_field_is_taken_out_of_the_instance(tmp_path: Path) -> None:
    [chunk] = _read(tmp_path, b'{"key": 7, "a": 1, "b": 2}\n[1, 2]\n{"a": 1}\n', spec=TABULAR, fmt=".jsonl",
                    id_column="key")
    assert chunk.lines == [1] and chunk.instances == [{"a": 1, "b": 2}] and chunk.ids == {1: 7}
    assert [line for line, _ in chunk.bad] == [2, 3]


def test_s3_key_suffix_names_the_id_column() -> None:
    assert id_column_of("inputs/iris/2026/scores@id=customer_id.csv") == "customer_id"
    assert id_column_of("inputs/iris@prod/scores@id=k.jsonl") == "k"
    assert id_column_of("inputs/iris@prod/scores.csv") is None
    assert id_column_of("inputs/iris/scores@id=k.npy") is None


def test_maas_batch_id_column_in_every_row_with_a_progress_bar(built_store: LocalStore, tmp_path: Path) -> None:
    features = json.loads((built_store.root / "models/diabetes-mlp/versions/1/manifest.json").read_text())[
        "preprocessing"]["features"]
    header = ["customer", *features]
    rows: list[list[object]] = [[f'c-{i}, "x"', *DIABETES_ROW] for i in range(120)]
    rows[60] = ["c-bad", "bad", *DIABETES_ROW[1:]]
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    result: subprocess.CompletedProcess[str] = maas_batch(
        built_store, "diabetes-mlp", "--input", str(source), "--output", str(tmp_path / "out"),
        "--id-column", "customer")
    assert result.returncode == 0, result.stderr
    assert "ETA" in result.stderr and "rows" in result.stderr
    predictions = [json.loads(line) for line in (tmp_path / "out/predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 119
    assert list(predictions[0])[:2] == ["line", "id"] and predictions[0]["id"] == 'c-0, "x"'
    assert [p["id"] for p in predictions] == [f'c-{i}, "x"' for i in range(120) if i != 60]
    [error] = [json.loads(line) for line in (tmp_path / "out/errors.jsonl").read_text().splitlines()]
    assert error["id"] == "c-bad" and error["line"] == 62


def test_classifier_rows_with_ids_match_the_generic_writer() -> None:
    probabilities = np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32)
    ids = {4: "a,\"b\"\n", 9: 17}
    fast = classification_lines([4, 9], ["no", "yes"], probabilities, ids)
    rows = [{"line": 4, "id": ids[4], "label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
            {"line": 9, "id": 17, "label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}]
    assert [json.loads(line) for line in fast.splitlines()] == [json.loads(line) for line in
                                                                json_lines(rows).splitlines()]
