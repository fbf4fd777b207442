"""Parquet in and out: typed prediction columns that pyarrow reads back (rows in = ok + failed), Parquet inputs
predicting what the same rows as JSON lines predict, splitting by row groups equal to one worker (locally, and
split/parts/merge over S3 ranged reads), the CLI flag, and Parquet in a process without pyarrow (the Lambda)
sent to AWS Batch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner

from functions.batch.dispatch import AwsBatchDispatcher
from functions.batch.local import for_batch, run_local
from functions.batch.objects import InputObject
from functions.batch.process import Processor
from functions.batch.ranges import FileSource, S3Source, split
from functions.batch.workers import run_parallel
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.batch.conftest import DIABETES_FEATURES, DataBucket

RNG = np.random.default_rng(11)


def _cache(store: LocalStore, tmp_path: Path, chunk_rows: int = 32) -> ModelCache:
    settings = for_batch(Settings(store=store.uri, cache_dir=str(tmp_path / "cache"), batch_chunk_rows=chunk_rows,
                                  batch_threads=2))
    return ModelCache(store, settings)


def _diabetes(path: Path, rows: int = 150, row_group_size: int = 40) -> Path:
    """Feature columns (float and int), an id column and a few null cells; several row groups."""
    columns: dict[str, Any] = {"customer": [f"c-{i:04d}" for i in range(rows)]}
    for index, name in enumerate(DIABETES_FEATURES):
        values: list[Any] = RNG.normal(0, 1, rows).tolist() if index != 1 else RNG.integers(1, 3, rows).tolist()
        columns[name] = values
    columns["bmi"] = [None if i % 37 == 5 else v for i, v in enumerate(columns["bmi"])]
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def _images(path: Path, rows: int = 120) -> Path:
    images = RNG.integers(0, 17, size=(rows, 64)).astype(float).tolist()
    images[9] = images[9][:10]  # wrong size: an error row
    pq.write_table(pa.table({"image": images}), path, row_group_size=50)
    return path


def test_regression_round_trip_with_typed_columns_and_ids(built_store: LocalStore, tmp_path: Path) -> None:
    source = _diabetes(tmp_path / "scores.parquet")
    cache = _cache(built_store, tmp_path)
    stats = run_local(cache, "diabetes-mlp", source, tmp_path / "pq", id_column="customer", output_format="parquet")
    run_local(cache, "diabetes-mlp", source, tmp_path / "js", id_column="customer")
    table = pq.read_table(tmp_path / "pq" / "predictions.parquet")
    assert table.schema.names == ["line", "id", "value"]
    assert table.schema.field("line").type == pa.int64() and table.schema.field("value").type == pa.float32()
    errors = [orjson.loads(line) for line in (tmp_path / "pq" / "errors.jsonl").read_bytes().splitlines()]
    assert stats.rows_in == 150 == table.num_rows + len(errors)
    assert [e["line"] for e in errors] == [i + 1 for i in range(150) if i % 37 == 5]
    assert all(e["error"] == "null in column 'bmi'" and e["id"] == f"c-{e['line'] - 1:04d}" for e in errors)
    rows = [orjson.loads(line) for line in (tmp_path / "js" / "predictions.jsonl").read_bytes().splitlines()]
    assert table.column("line").to_pylist() == [r["line"] for r in rows]
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    np.testing.assert_array_equal(table.column("value").to_numpy(), np.float32([r["value"] for r in rows]))
    report = orjson.loads((tmp_path / "pq" / "report.json").read_bytes())
    assert report["outputs"]["predictions.parquet"].endswith("predictions.parquet")
    assert report["rows"] == {"in": 150, "ok": table.num_rows, "failed": len(errors)}


def test_classifier_columns_label_and_probabilities(built_store: LocalStore, tmp_path: Path) -> None:
    source = _images(tmp_path / "images.parquet")
    cache = _cache(built_store, tmp_path)
    run_local(cache, "digits-cnn", source, tmp_path / "pq", output_format="parquet")
    run_local(cache, "digits-cnn", source, tmp_path / "js")
    table = pq.read_table(tmp_path / "pq" / "predictions.parquet")
    rows = [orjson.loads(line) for line in (tmp_path / "js" / "predictions.jsonl").read_bytes().splitlines()]
    assert table.num_rows == len(rows) == 119
    assert table.column("label").to_pylist() == [r["label"] for r in rows]
    probabilities = table.column("probabilities").to_pylist()
    assert list(probabilities[0]) == list(rows[0]["probabilities"])
    for got, want in zip(probabilities, rows, strict=True):
        np.testing.assert_allclose(list(got.values()), list(want["probabilities"].values()), atol=5e-7)
    errors = (tmp_path / "js" / "errors.jsonl").read_bytes()
    assert errors == (tmp_path / "pq" / "errors.jsonl").read_bytes() and b'"line":10' in errors


def test_text_parquet_predicts_what_the_same_texts_as_json_lines_do(built_store: LocalStore, tmp_path: Path) -> None:
    texts = ["The striker scored twice.", "Heavy rain tomorrow.", "", "Bake the bread slowly.", "New chips ship."] * 9
    pq.write_table(pa.table({"text": texts}), tmp_path / "texts.parquet", row_group_size=10)
    (tmp_path / "texts.jsonl").write_bytes(b"\n".join(orjson.dumps(t) for t in texts) + b"\n")
    cache = _cache(built_store, tmp_path, chunk_rows=8)
    run_local(cache, "text-lstm", tmp_path / "texts.parquet", tmp_path / "pq")
    run_local(cache, "text-lstm", tmp_path / "texts.jsonl", tmp_path / "js")
    for name in ("predictions.jsonl", "errors.jsonl"):
        assert (tmp_path / "pq" / name).read_bytes() == (tmp_path / "js" / name).read_bytes()


@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
def test_splitting_by_row_groups_equals_one_worker(fp32_store: LocalStore, tmp_path: Path,
                                                   output_format: str) -> None:
    source = _diabetes(tmp_path / "scores.parquet", rows=300, row_group_size=30)
    ranges = split(FileSource(source), ".parquet", 4096)
    assert len(ranges) >= 3 and ranges[0].first_line == 1
    assert [r.first_line for r in ranges] == sorted({r.first_line for r in ranges})
    cache = _cache(fp32_store, tmp_path)
    one = run_local(cache, "diabetes-mlp", source, tmp_path / "one", id_column="customer", output_format=output_format)
    three = run_parallel(cache, "diabetes-mlp", source, tmp_path / "three", 3, id_column="customer",
                         output_format=output_format)
    assert (three.rows_in, three.rows_ok, three.rows_failed) == (one.rows_in, one.rows_ok, one.rows_failed)
    assert (tmp_path / "one" / "errors.jsonl").read_bytes() == (tmp_path / "three" / "errors.jsonl").read_bytes()
    if output_format == "jsonl":
        assert (tmp_path / "one/predictions.jsonl").read_bytes() == (tmp_path / "three/predictions.jsonl").read_bytes()
    else:
        assert pq.read_table(tmp_path / "one/predictions.parquet").equals(
            pq.read_table(tmp_path / "three/predictions.parquet"))
    report = orjson.loads((tmp_path / "three" / "report.json").read_bytes())
    assert report["parts"]["total"] >= 2


def test_s3_ranged_reads_split_parquet_as_the_local_file_does(data_bucket: DataBucket, tmp_path: Path) -> None:
    source = _diabetes(tmp_path / "scores.parquet", rows=200, row_group_size=25)
    key = "inputs/diabetes-mlp/lake/scores.parquet"
    data_bucket.put(key, source.read_bytes())
    head = data_bucket.s3.head_object(Bucket=data_bucket.name, Key=key)
    remote = S3Source(data_bucket.s3, data_bucket.name, key, head["ETag"].strip('"'), head["ContentLength"])
    assert split(remote, ".parquet", 4096) == split(FileSource(source), ".parquet", 4096)


def test_the_cli_writes_parquet_with_the_flag(built_store: LocalStore, tmp_path: Path) -> None:
    from maas.cli import main

    source = _diabetes(tmp_path / "scores.parquet", rows=20)
    result = CliRunner().invoke(main, ["batch", "diabetes-mlp", "--input", str(source), "--output",
                                       str(tmp_path / "out"), "--output-format", "parquet", "--store",
                                       built_store.uri])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["errors.jsonl", "predictions.parquet",
                                                                     "report.json"]
    assert pq.read_table(tmp_path / "out" / "predictions.parquet").num_rows == 19


def _item(bucket: DataBucket, key: str) -> InputObject:
    head = bucket.s3.head_object(Bucket=bucket.name, Key=key)
    return InputObject(bucket.name, key, head["ETag"].strip('"'), head["ContentLength"])


def test_s3_parquet_out_through_the_processor(data_bucket: DataBucket, processor: Processor,
                                              tmp_path: Path) -> None:
    key = "inputs/diabetes-mlp/lake/scores@id=customer.parquet"
    data_bucket.put(key, _diabetes(tmp_path / "s.parquet", rows=60).read_bytes())
    cache = ModelCache(processor.cache.store, dataclasses.replace(processor.cache.settings,
                                                                  batch_output_format="parquet"))
    assert Processor(cache, processor.data).process(_item(data_bucket, key)) == "done"
    report_key = next(k for k in data_bucket.keys("outputs/") if k.endswith("report.json"))
    report = json.loads(data_bucket.get(report_key))
    (tmp_path / "p.parquet").write_bytes(data_bucket.get(report_key.replace("report.json", "predictions.parquet")))
    table = pq.read_table(tmp_path / "p.parquet")
    assert report["rows"]["ok"] == table.num_rows and report["rows"]["in"] == 60
    assert table.column("id").to_pylist()[0] == "c-0000"


def test_without_pyarrow_parquet_goes_to_aws_batch_and_plan_json_says_why(
        data_bucket: DataBucket, processor: Processor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functions.batch.process as process

    monkeypatch.setattr(process, "pyarrow_available", lambda: False)  # the Lambda bundle has no pyarrow
    key = "inputs/diabetes-mlp/lake/scores.parquet"
    data_bucket.put(key, _diabetes(tmp_path / "s.parquet", rows=10).read_bytes())
    item = _item(data_bucket, key)
    client = boto3.client("batch", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobId": "job-pq", "jobName": "n"}, {
            "jobName": ANY, "jobQueue": "q", "jobDefinition": "d", "containerOverrides": ANY})
        dispatching = Processor(processor.cache, processor.data, AwsBatchDispatcher("q", "d", client))
        assert dispatching.process(item) == "dispatched"
    plan = json.loads(data_bucket.get(next(k for k in data_bucket.keys("outputs/") if k.endswith("plan.json"))))
    assert plan["route"] == "batch" and "pyarrow" in plan["reason"] and "AWS Batch" in plan["reason"]


def test_without_pyarrow_or_aws_batch_parquet_gets_a_failure_report(
        data_bucket: DataBucket, processor: Processor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functions.batch.process as process

    monkeypatch.setattr(process, "pyarrow_available", lambda: False)
    key = "inputs/diabetes-mlp/lake/other.parquet"
    data_bucket.put(key, _diabetes(tmp_path / "s.parquet", rows=10).read_bytes())
    assert processor.process(_item(data_bucket, key)) == "failed"
    report = json.loads(data_bucket.get(next(k for k in data_bucket.keys("outputs/_failed/"))))
    assert "pyarrow" in report["error"] and "no AWS Batch" in report["error"]


def test_s3_parts_by_row_group_merge_to_the_single_run_output(data_bucket: DataBucket, fp32_processor: Processor,
                                                              tmp_path: Path) -> None:
    """Split, parts and merge as AWS Batch array children run them (pyarrow there), Parquet in and out."""
    from functions.batch.merge import merge_s3
    from functions.batch.part import PartItem, process_part
    from tests.batch.test_fanout_parts import shaped, split_and_items, upload

    cache = ModelCache(fp32_processor.cache.store, dataclasses.replace(fp32_processor.cache.settings,
                                                                       batch_output_format="parquet"))
    processor = Processor(cache, fp32_processor.data)
    body = _diabetes(tmp_path / "s.parquet", rows=240, row_group_size=30).read_bytes()
    key = "inputs/diabetes-mlp/lake/day@id=customer.parquet"
    single_key = "inputs/diabetes-mlp/one/day@id=customer.parquet"
    etag, single_etag = upload(data_bucket, key, body), upload(data_bucket, single_key, body)
    assert processor.process(InputObject(data_bucket.name, single_key, single_etag, len(body))) == "done"
    split, items = split_and_items(data_bucket, processor, key, etag, part_bytes=len(body) // 6)
    assert len(items) >= 3
    assert {process_part(cache, processor.data, PartItem.from_event(i))["status"] for i in items} == {"ok"}
    merged = merge_s3(processor.data, shaped("fanout-merge", bucket=data_bucket.name, key=key, etag=etag, version="1"))
    report = orjson.loads(data_bucket.get(f"{split['prefix']}/report.json"))
    assert merged["status"] == "ok" and "predictions.parquet" in report["outputs"]
    single = f"outputs/diabetes-mlp/1/one/day@id=customer.parquet.{single_etag}/"
    assert report["rows"] == orjson.loads(data_bucket.get(single + "report.json"))["rows"]
    tables = []
    for index in range(len(items)):
        part = tmp_path / f"part{index}.parquet"
        part.write_bytes(data_bucket.get(f"{split['prefix']}/parts/{index:05d}/predictions.parquet"))
        tables.append(pq.read_table(part))
    (tmp_path / "single.parquet").write_bytes(data_bucket.get(single + "predictions.parquet"))
    assert pa.concat_tables(tables).equals(pq.read_table(tmp_path / "single.parquet"))
    errors = b"".join(data_bucket.get(f"{split['prefix']}/parts/{i:05d}/errors.jsonl") for i in range(len(items)))
    assert errors == data_bucket.get(single + "errors.jsonl") and errors.count(b"\n") == 7


def test_ids_of_any_type_are_written_as_json_can(built_store: LocalStore, tmp_path: Path) -> None:
    """Spark exports decimal(38,0) keys; binary keys exist too: written as their text, never a crash."""
    from decimal import Decimal

    source = _diabetes(tmp_path / "in.parquet", rows=6, row_group_size=6)
    table = pq.read_table(source)
    table = table.append_column("key", pa.array([Decimal(i) for i in range(6)], pa.decimal128(10, 0)))
    table = table.append_column("raw", pa.array([f"r{i}".encode() for i in range(6)], pa.binary()))
    pq.write_table(table, source)
    cache = _cache(built_store, tmp_path)
    for column, first in (("key", "0"), ("raw", "r0")):
        out = tmp_path / f"out-{column}"
        run_local(cache, "diabetes-mlp", source, out, id_column=column)
        rows = [orjson.loads(line) for line in (out / "predictions.jsonl").read_bytes().splitlines()]
        errors = [orjson.loads(line) for line in (out / "errors.jsonl").read_bytes().splitlines()] \
            if (out / "errors.jsonl").exists() else []
        assert rows[0]["id"] == first and all(isinstance(r["id"], str) for r in [*rows, *errors])


def test_the_dispatched_job_writes_the_output_format_of_the_function() -> None:
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobName": "j", "jobId": "1"}, {
            "jobName": ANY, "jobQueue": "q", "jobDefinition": "d",
            "containerOverrides": {"command": ["python", "-m", "functions.batch.worker", "--bucket", "b", "--key",
                                               "k.parquet", "--etag", "e", "--output-format", "parquet"]}})
        assert AwsBatchDispatcher("q", "d", client, output_format="parquet").submit("b", "k.parquet", "e") == "1"
