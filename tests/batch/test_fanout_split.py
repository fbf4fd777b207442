"""Splitting into line-aligned ranges: local files and moto's S3 over real ranged GETs give the same ranges,
the ranges cover the data exactly, and every part keeps the whole file's line numbers."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import boto3
import numpy as np
import orjson
import pytest

from functions.batch.formats import UnreadableInputError
from functions.batch.ranges import ByteRange, FileSource, S3Source, materialize, split
from tests.batch.conftest import DIABETES_ROW, csv_bytes, npy_bytes


def jsonl_bytes(count: int) -> bytes:
    lines = [orjson.dumps({"text": "x" * (i % 37), "n": i}) for i in range(count)]
    lines[5] = b""  # a blank line still counts as a physical line
    return b"\n".join(lines) + b"\n"


def covered(ranges: list[ByteRange], data: bytes, fmt: str) -> None:
    """Contiguous, line-aligned ranges over the data, with first_line = 1 + newlines before them."""
    start = ranges[0].start
    header = data[:ranges[0].header] if fmt == ".csv" else b""
    assert start == len(header)
    for before, after in itertools.pairwise(ranges):
        assert before.stop == after.start
        assert data[after.start - 1:after.start] == b"\n"
    assert ranges[-1].stop == len(data)
    for r in ranges:
        assert r.first_line == data[:r.start].count(b"\n") + 1


@pytest.mark.parametrize("part_bytes", [1, 97, 1000, 10**9])
def test_csv_and_jsonl_ranges_are_line_aligned_and_numbered(tmp_path: Path, part_bytes: int) -> None:
    for fmt, data in ((".csv", csv_bytes([DIABETES_ROW] * 200)), (".jsonl", jsonl_bytes(300))):
        path = tmp_path / f"in{fmt}"
        path.write_bytes(data)
        ranges = split(FileSource(path), fmt, part_bytes)
        covered(ranges, data, fmt)
        if part_bytes == 10**9:
            assert len(ranges) == 1
        if fmt == ".csv":
            assert all(r.header == data.index(b"\n") + 1 for r in ranges)


def test_a_line_longer_than_a_part_stays_whole(tmp_path: Path) -> None:
    data = b'{"a": 1}\n' + b'{"long": "' + b"y" * 5000 + b'"}\n' + b'{"b": 2}\n'
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    ranges = split(FileSource(path), ".jsonl", 100)
    covered(ranges, data, ".jsonl")
    assert [r.first_line for r in ranges] == [1, 3]  # the cut at byte 100 falls inside line 2


def test_npy_ranges_hold_whole_rows_and_rebuild_as_npy(tmp_path: Path) -> None:
    array = np.arange(50 * 10, dtype=np.float32).reshape(50, 10)
    path = tmp_path / "in.npy"
    path.write_bytes(npy_bytes(array))
    ranges = split(FileSource(path), ".npy", 7 * 40 + 3)  # 7 rows of 40 bytes per part
    assert [r.first_line for r in ranges] == list(range(1, 51, 7))
    rebuilt = []
    for r in ranges:
        buffer = io.BytesIO()
        offset = materialize(FileSource(path), ".npy", r, buffer)
        assert offset == r.first_line - 1
        rebuilt.append(np.load(io.BytesIO(buffer.getvalue())))
    assert np.array_equal(np.concatenate(rebuilt), array)


def test_a_corrupt_npy_cannot_be_split(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UnreadableInputError):
        split(FileSource(path), ".npy", 100)


def test_s3_ranged_reads_split_like_the_local_file(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    data = csv_bytes([DIABETES_ROW] * 500)
    client.put_object(Bucket=s3_bucket, Key="inputs/m/in.csv", Body=data)
    etag = client.head_object(Bucket=s3_bucket, Key="inputs/m/in.csv")["ETag"].strip('"')
    (tmp_path / "in.csv").write_bytes(data)
    remote = split(S3Source(client, s3_bucket, "inputs/m/in.csv", etag, len(data)), ".csv", 4096)
    assert remote == split(FileSource(tmp_path / "in.csv"), ".csv", 4096)
    assert len(remote) > 3
    buffer = io.BytesIO()
    materialize(S3Source(client, s3_bucket, "inputs/m/in.csv", etag, len(data)), ".csv", remote[2], buffer)
    assert buffer.getvalue() == data[:remote[2].header] + data[remote[2].start:remote[2].stop]


def test_a_replaced_object_fails_the_ranged_read(moto_endpoint: str, s3_bucket: str) -> None:
    from botocore.exceptions import ClientError

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.put_object(Bucket=s3_bucket, Key="inputs/m/in.jsonl", Body=jsonl_bytes(50))
    etag = client.head_object(Bucket=s3_bucket, Key="inputs/m/in.jsonl")["ETag"].strip('"')
    client.put_object(Bucket=s3_bucket, Key="inputs/m/in.jsonl", Body=jsonl_bytes(60))
    with pytest.raises(ClientError) as caught:
        S3Source(client, s3_bucket, "inputs/m/in.jsonl", etag, 100).read(0, 100)
    assert caught.value.response["Error"]["Code"] in {"PreconditionFailed", "412"}


def test_range_objects_from_events_are_validated() -> None:
    assert ByteRange.from_dict({"start": 3, "stop": 9, "first_line": 2, "header": 3}) == ByteRange(3, 9, 2, 3)
    for bad in (None, [], {"start": 1}, {"start": 9, "stop": 3, "first_line": 1, "header": 0},
                {"start": 0, "stop": 3, "first_line": 0, "header": 0}, {"start": "x", "stop": 3, "first_line": 1,
                                                                          "header": 0}):
        with pytest.raises(ValueError):
            ByteRange.from_dict(bad)


def test_docs_show_the_event_shapes_the_tests_use() -> None:
    import json

    from tests.events import EVENTS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "batch.md").read_text(encoding="utf-8")
    names = ["fanout-execution", "fanout-split", "fanout-ranges", "fanout-item-selector", "fanout-part",
             "batch-array-child", "fanout-merge"]
    for name in names:
        assert json.dumps(json.loads((EVENTS / f"{name}.json").read_text())) in doc, name


def _multiline_csv(rows: int) -> bytes:
    """A CSV whose id column holds quoted newlines, commas and doubled quotes in every third record."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer", "x"])
    for i in range(rows):
        writer.writerow([f'c{i},\n"line"\n{i}' if i % 3 == 0 else f"c{i}", i])
    return out.getvalue().encode()


@pytest.mark.parametrize("part_bytes", [1, 7, 40, 97, 333])
def test_csv_cuts_never_fall_inside_a_quoted_field(tmp_path: Path, part_bytes: int) -> None:
    data = _multiline_csv(120)
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    ranges = split(FileSource(path), ".csv", part_bytes)
    covered(ranges, data, ".csv")
    header = data[:ranges[0].header]
    whole = list(csv.reader(io.StringIO(data.decode())))[1:]
    pieces = [list(csv.reader(io.StringIO((header + data[r.start:r.stop]).decode())))[1:] for r in ranges]
    assert [row for piece in pieces for row in piece] == whole  # every record whole, in order, exactly once
    assert all(data[:r.start].count(b'"') % 2 == 0 for r in ranges)


def test_stray_quotes_in_unquoted_fields_leave_cuts_line_aligned(tmp_path: Path) -> None:
    data = b"name,x\n" + b"".join(b'5\'11" tall,%d\n' % i if i == 7 else b"n%d,%d\n" % (i, i) for i in range(400))
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    ranges = split(FileSource(path), ".csv", 50)
    covered(ranges, data, ".csv")
    assert len(ranges) > 10
