"""A corpus of malformed inputs: each yields exactly one output or one failure report, never a crash, and
for every readable file predicted + reported-bad rows equals the rows in it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from functions.batch.objects import InputObject
from functions.batch.process import Processor
from tests.batch.conftest import DIABETES_FEATURES, DIABETES_ROW, DataBucket, csv_bytes, npy_bytes

ROW = ",".join(map(str, DIABETES_ROW))
HEADER = ",".join(DIABETES_FEATURES)
JROW = json.dumps(dict(zip(DIABETES_FEATURES, DIABETES_ROW, strict=True)))
GOOD_NPY = npy_bytes(np.tile(np.asarray(DIABETES_ROW), (5, 1)))

def _parquet(columns: dict[str, Any], row_group_size: int | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), buffer, row_group_size=row_group_size)
    return bytes(buffer.getvalue().to_pybytes())


def _features(rows: int, **replace: list[Any]) -> dict[str, Any]:
    pairs = zip(DIABETES_FEATURES, DIABETES_ROW, strict=True)
    return {name: replace.get(name, [value] * rows) for name, value in pairs}


GOOD_PARQUET = _parquet({"customer": ["a", "b", "c"], **_features(3)})


def _corrupt_pages(rows: int = 200, at: int = 400) -> bytes:
    """A Parquet file whose footer is intact but one data page is garbage (pyarrow raises OSError reading it)."""
    data = bytearray(_parquet(_features(rows)))
    for index in range(at, at + 20):
        data[index] ^= 0xFF
    return bytes(data)


def _dictionary_texts() -> bytes:
    import pyarrow as pa

    return _parquet({"text": pa.array(["Rain is coming.", "Sun all week.", "Rain is coming."]).dictionary_encode()})


def _duplicate_columns() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["text", "text"]), buffer)
    return bytes(buffer.getvalue().to_pybytes())
PARQUET_CORPUS: list[tuple[str, str, bytes, str, tuple[int, int, int] | None]] = [
    ("good.parquet", "diabetes-mlp", GOOD_PARQUET, "ok", (3, 3, 0)),
    ("null-feature.parquet", "diabetes-mlp", _parquet(_features(3, bmi=[27.5, None, 30.1])), "ok", (3, 2, 1)),
    ("nan-feature.parquet", "diabetes-mlp", _parquet(_features(2, bmi=[float("nan"), 30.1])), "ok", (2, 1, 1)),
    ("empty.parquet", "diabetes-mlp", _parquet(_features(0)), "ok", (0, 0, 0)),
    ("all-null-column.parquet", "diabetes-mlp", _parquet(_features(2, s6=[None, None])), "ok", (2, 0, 2)),
    ("decimal-and-int.parquet", "diabetes-mlp", _parquet(_features(2, age=[Decimal("50.5"), Decimal(61)], sex=[1, 2])),
     "ok", (2, 2, 0)),
    ("truncated.parquet", "diabetes-mlp", GOOD_PARQUET[:-40], "failed", None),
    ("not-parquet.parquet", "diabetes-mlp", b"PAR1 but nothing else", "failed", None),
    ("missing-column.parquet", "diabetes-mlp", _parquet({"age": [1.0], "sex": [2.0]}), "failed", None),
    ("string-features.parquet", "diabetes-mlp", _parquet(_features(1, age=["fifty"])), "failed", None),
    ("struct-feature.parquet", "diabetes-mlp", _parquet(_features(1, age=[{"years": 50, "months": 3}])), "failed",
     None),
    ("list-feature.parquet", "diabetes-mlp", _parquet(_features(1, age=[[50.0]])), "failed", None),
    ("texts.parquet", "text-lstm", _parquet({"text": ["Rain is coming.", None, "   "]}), "ok", (3, 1, 2)),
    ("int-text.parquet", "text-lstm", _parquet({"text": [1, 2]}), "failed", None),
    ("no-text-column.parquet", "text-lstm", _parquet({"body": ["hello"]}), "failed", None),
    ("images.parquet", "digits-cnn", _parquet({"image": [[0.0] * 64, [1.0] * 63, None, [2] * 64]}), "ok",
     (4, 2, 2)),
    ("nested-images.parquet", "digits-cnn", _parquet({"image": [[[2.0] * 8] * 8, [[1.0, None]] * 8]}), "ok",
     (2, 1, 1)),
    ("string-images.parquet", "digits-cnn", _parquet({"image": [["a"] * 64]}), "failed", None),
    ("map-images.parquet", "digits-cnn", _parquet({"image": [{"x": 1}]}), "failed", None),
    ("corrupt-pages.parquet", "diabetes-mlp", _corrupt_pages(), "failed", None),
    ("dictionary-texts.parquet", "text-lstm", _dictionary_texts(), "ok", (3, 3, 0)),
    ("duplicate-columns.parquet", "text-lstm", _duplicate_columns(), "failed", None),
    ("ragged-images.parquet", "digits-cnn", _parquet({"image": [[[2.0] * 8] * 8, [[1.0] * 9] * 7 + [[1.0]]]}), "ok",
     (2, 1, 1)),
    ("huge-int.parquet", "diabetes-mlp", _parquet(_features(2, age=[2**53 + 1, 50])), "ok", (2, 2, 0)),
]

# (file name, model, content, expected status, expected rows (in, ok, failed) when status is ok)
CORPUS: list[tuple[str, str, bytes, str, tuple[int, int, int] | None]] = [
    ("empty.csv", "diabetes-mlp", b"", "ok", (0, 0, 0)),
    ("header-only.csv", "diabetes-mlp", (HEADER + "\n").encode(), "ok", (0, 0, 0)),
    ("bom.csv", "diabetes-mlp", b"\xef\xbb\xbf" + csv_bytes([DIABETES_ROW] * 3), "ok", (3, 3, 0)),
    ("crlf.csv", "diabetes-mlp", csv_bytes([DIABETES_ROW] * 3).replace(b"\n", b"\r\n"), "ok", (3, 3, 0)),
    ("ragged.csv", "diabetes-mlp", f"{HEADER}\n{ROW}\n1,2,3\n{ROW},9\n".encode(), "ok", (3, 1, 2)),
    ("non-numeric.csv", "diabetes-mlp", f"{HEADER}\n{ROW}\nabc,{ROW.split(',', 1)[1]}\n".encode(), "ok", (2, 1, 1)),
    ("nan.csv", "diabetes-mlp", f"{HEADER}\nNaN,{ROW.split(',', 1)[1]}\n{ROW}\n".encode(), "ok", (2, 1, 1)),
    ("inf.csv", "diabetes-mlp", f"{HEADER}\ninf,{ROW.split(',', 1)[1]}\n".encode(), "ok", (1, 0, 1)),
    ("latin1.csv", "diabetes-mlp", f"{HEADER}\n{ROW}\n".encode() + b"caf\xe9,1,2,3,4,5,6,7,8,9\n", "ok", (2, 1, 1)),
    ("missing-column.csv", "diabetes-mlp", b"age,sex\n1,2\n", "failed", None),
    ("bad-header-utf8.csv", "diabetes-mlp", b"\xff\xfe\n" + ROW.encode(), "failed", None),
    ("extra-columns.csv", "diabetes-mlp", f"id,{HEADER}\n7,{ROW}\n".encode(), "ok", (1, 1, 0)),
    ("blank-lines.csv", "diabetes-mlp", f"{HEADER}\n\n{ROW}\n\n\n{ROW}\n".encode(), "ok", (2, 2, 0)),
    ("quoted.csv", "diabetes-mlp", f'{HEADER}\n"50",{ROW.split(",", 1)[1]}\n'.encode(), "ok", (1, 1, 0)),
    ("truncated.csv", "diabetes-mlp", f"{HEADER}\n{ROW}\n{ROW[:7]}".encode(), "ok", (2, 1, 1)),
    ("empty.jsonl", "diabetes-mlp", b"", "ok", (0, 0, 0)),
    ("mixed.jsonl", "diabetes-mlp", f"{JROW}\n{{\n[1,2]\n\"text\"\n{JROW}\n".encode(), "ok", (5, 2, 3)),
    ("nan.jsonl", "diabetes-mlp", f"{JROW}\n[NaN,1,2,3,4,5,6,7,8,9]\n".encode(), "ok", (2, 1, 1)),
    ("null-values.jsonl", "diabetes-mlp", b'[null,1,2,3,4,5,6,7,8,9]\n', "ok", (1, 0, 1)),
    ("crlf.jsonl", "diabetes-mlp", f"{JROW}\r\n{JROW}\r\n".encode(), "ok", (2, 2, 0)),
    ("bom.jsonl", "diabetes-mlp", b"\xef\xbb\xbf" + f"{JROW}\n".encode(), "ok", (1, 1, 0)),
    ("non-utf8.jsonl", "diabetes-mlp", f"{JROW}\n".encode() + b'"\xff\xfe"\n', "ok", (2, 1, 1)),
    ("huge-line.jsonl", "text-lstm", b'"' + b"a" * (10 * 1024 * 1024) + b'"\n"The striker scored."\n', "ok",
     (2, 1, 1)),
    ("texts.jsonl", "text-lstm", b'"Rain is coming."\n""\n5\n"x"\n', "ok", (4, 2, 2)),
    ("no-text-column.csv", "text-lstm", b"body\nhello\n", "failed", None),
    ("texts.csv", "text-lstm", b'text,id\n"Heavy rain, then sun.",1\n,2\n', "ok", (2, 1, 1)),
    ("good.npy", "diabetes-mlp", GOOD_NPY, "ok", (5, 5, 0)),
    ("nan-row.npy", "diabetes-mlp", npy_bytes(np.asarray([DIABETES_ROW, [np.nan] * 10])), "ok", (2, 1, 1)),
    ("wrong-dtype.npy", "diabetes-mlp", npy_bytes(np.asarray([["a"] * 10])), "failed", None),
    ("bool.npy", "diabetes-mlp", npy_bytes(np.ones((2, 10), dtype=bool)), "failed", None),
    ("wrong-width.npy", "diabetes-mlp", npy_bytes(np.ones((2, 9))), "failed", None),
    ("truncated.npy", "diabetes-mlp", GOOD_NPY[:-17], "failed", None),
    ("not-npy.npy", "diabetes-mlp", b"this is not numpy", "failed", None),
    ("header-only.npy", "diabetes-mlp", GOOD_NPY[:60], "failed", None),
    ("empty.npy", "diabetes-mlp", npy_bytes(np.empty((0, 10))), "ok", (0, 0, 0)),
    ("images.npy", "digits-cnn", npy_bytes(np.zeros((3, 8, 8), dtype=np.float32)), "ok", (3, 3, 0)),
    ("images-out-of-range.npy", "digits-cnn", npy_bytes(np.full((2, 64), 99, dtype=np.int16)), "ok", (2, 0, 2)),
    ("text.npy", "text-lstm", GOOD_NPY, "failed", None),
    ("noextension", "diabetes-mlp", b"x", "failed", None),
    *PARQUET_CORPUS,
]


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30 and len(PARQUET_CORPUS) >= 15


@pytest.mark.parametrize(("name", "model", "content", "status", "rows"), CORPUS, ids=[c[0] for c in CORPUS])
def test_each_malformed_file_yields_one_report(data_bucket: DataBucket, processor: Processor, name: str, model: str,
                                               content: bytes, status: str, rows: tuple[int, int, int] | None) -> None:
    key = f"inputs/{model}/corpus/{name}"
    data_bucket.put(key, content)
    head = data_bucket.s3.head_object(Bucket=data_bucket.name, Key=key)
    item = InputObject(data_bucket.name, key, head["ETag"].strip('"'), head["ContentLength"])
    outcome = processor.process(item)
    reports = [k for k in data_bucket.keys("outputs/") if k.endswith("report.json")]
    assert len(reports) == 1, reports
    report: dict[str, Any] = json.loads(data_bucket.get(reports[0]))
    assert outcome == ("done" if status == "ok" else "failed")
    assert report["status"] == status, report
    if status == "failed":
        assert report["error"] and reports[0].startswith("outputs/_failed/")
        return
    assert (report["rows"]["in"], report["rows"]["ok"], report["rows"]["failed"]) == rows
    prefix = reports[0].removesuffix("report.json")
    predicted = data_bucket.get(prefix + "predictions.jsonl").splitlines()
    bad = data_bucket.get(prefix + "errors.jsonl").splitlines()
    assert len(predicted) + len(bad) == report["rows"]["in"]  # conservation: nothing lost
    assert processor.process(item) == "duplicate"
