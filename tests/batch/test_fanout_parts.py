"""Split, parts and merge against moto's S3 (real ranged GETs), driven with the documented event shapes
(tests/events/fanout-*.json, batch-array-child.json; docs/batch.md): the merged output equals a single
run's, duplicates and retries change nothing, a part that keeps failing is reported with its range.

Step Functions and AWS Batch themselves have no local implementation: the tests play the state machine's
part (split, one child per ranges.json entry through the ItemSelector, merge) and run the array child as
the container would (its command and AWS_BATCH_JOB_ARRAY_INDEX)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from functions.batch.fanout_handler import split_step
from functions.batch.merge import NO_REPORT, merge_s3
from functions.batch.objects import InputObject
from functions.batch.part import PartItem, process_part
from functions.batch.process import Processor
from functions.core.settings import Settings
from tests.batch.conftest import DIABETES_ROW, DataBucket, csv_bytes
from tests.events import load_event

ROOT = Path(__file__).resolve().parents[2]
KEY = "inputs/diabetes-mlp/big/day.csv"


def select(selector: dict[str, Any], state_input: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """Distributed Map's ItemSelector: "$.x" from the map state's input, "$$.Map.Item.Value.x" from the item."""
    out: dict[str, Any] = {}
    for name, path in selector.items():
        if not name.endswith(".$"):
            out[name] = path
        elif path.startswith("$$.Map.Item.Value."):
            out[name[:-2]] = item[path.removeprefix("$$.Map.Item.Value.")]
        else:
            out[name[:-2]] = state_input[path.removeprefix("$.")]
    return out


def shaped(name: str, **values: Any) -> dict[str, Any]:
    """A stored event with the test's own bucket, key and etag (the shape is asserted unchanged)."""
    event = load_event(name)
    assert set(values) <= set(event)
    return {**event, **values}


def upload(bucket: DataBucket, key: str, body: bytes) -> str:
    bucket.put(key, body)
    return str(bucket.s3.head_object(Bucket=bucket.name, Key=key)["ETag"]).strip('"')


def rows_with_bad_ones(count: int) -> bytes:
    rows: list[list[Any]] = [[*DIABETES_ROW[:2], 20 + i % 17, *DIABETES_ROW[3:]] for i in range(count)]
    rows[70] = ["x", *DIABETES_ROW[1:]]
    rows[333] = DIABETES_ROW[:4]
    return csv_bytes(rows)


def split_and_items(bucket: DataBucket, processor: Processor, key: str, etag: str,
                    part_bytes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    execution = shaped("fanout-execution", bucket=bucket.name, key=key, etag=etag, version="1",
                       part_bytes=part_bytes)
    split = split_step(processor.data, shaped("fanout-split", **{k: execution[k] for k in load_event("fanout-split")
                                                                 if k in execution}))
    entries = orjson.loads(bucket.get(split["ranges_key"]))
    assert [sorted(e) for e in entries] == [sorted(load_event("fanout-ranges")[0])] * len(entries)  # type: ignore[index]
    items = [select(load_event("fanout-item-selector"), execution, entry) for entry in entries]
    assert all(sorted(i) == sorted(load_event("fanout-part")) for i in items)
    return split, items


def test_fanned_out_csv_merges_to_the_single_run_output(data_bucket: DataBucket, fp32_processor: Processor) -> None:
    processor = fp32_processor  # parts and the single run chunk differently: byte equality needs independent rows
    body = rows_with_bad_ones(600)
    etag = upload(data_bucket, KEY, body)
    data_bucket.receive(1)
    single_key = "inputs/diabetes-mlp/single/day.csv"
    single_etag = upload(data_bucket, single_key, body)
    data_bucket.receive(1)
    assert processor.process(InputObject(data_bucket.name, single_key, single_etag, len(body))) == "done"
    single = f"outputs/diabetes-mlp/1/single/day.csv.{single_etag}/"

    split, items = split_and_items(data_bucket, processor, KEY, etag, part_bytes=len(body) // 5)
    assert split["parts"] == len(items) >= 5
    results = [process_part(processor.cache, processor.data, PartItem.from_event(i)) for i in items]
    assert {r["status"] for r in results} == {"ok"}
    merged = merge_s3(processor.data, shaped("fanout-merge", bucket=data_bucket.name, key=KEY, etag=etag,
                                             version="1"))
    assert merged["status"] == "ok"
    prefix = split["prefix"]
    report = orjson.loads(data_bucket.get(f"{prefix}/report.json"))
    single_report = orjson.loads(data_bucket.get(single + "report.json"))
    assert report["rows"] == single_report["rows"] == {"in": 600, "ok": 598, "failed": 2}
    assert report["parts"] == {"total": len(items), "ok": len(items), "failed": []}
    for name in ("predictions.jsonl", "errors.jsonl"):
        joined = b"".join(data_bucket.get(f"{prefix}/parts/{i:05d}/{name}") for i in range(len(items)))
        assert joined == data_bucket.get(single + name), name
    assert [orjson.loads(line)["line"] for line in data_bucket.get(single + "errors.jsonl").splitlines()] == [72, 335]


def test_duplicate_and_retried_deliveries_change_nothing(data_bucket: DataBucket, processor: Processor) -> None:
    body = rows_with_bad_ones(400)
    etag = upload(data_bucket, KEY, body)
    split, items = split_and_items(data_bucket, processor, KEY, etag, part_bytes=len(body) // 3)
    again, _ = split_and_items(data_bucket, processor, KEY, etag, part_bytes=100)  # a retried split step
    assert again == split
    for item in items:
        process_part(processor.cache, processor.data, PartItem.from_event(item))
    merge_event = shaped("fanout-merge", bucket=data_bucket.name, key=KEY, etag=etag, version="1")
    merge_s3(processor.data, merge_event)
    before = {k: data_bucket.get(k) for k in data_bucket.keys("outputs/")}
    assert [process_part(processor.cache, processor.data, PartItem.from_event(i))["status"]
            for i in items] == ["duplicate"] * len(items)
    assert merge_s3(processor.data, merge_event)["status"] == "duplicate"
    assert {k: data_bucket.get(k) for k in data_bucket.keys("outputs/")} == before


def test_a_part_that_keeps_failing_is_reported_with_its_range(data_bucket: DataBucket, processor: Processor) -> None:
    body = rows_with_bad_ones(400)
    etag = upload(data_bucket, KEY, body)
    split, items = split_and_items(data_bucket, processor, KEY, etag, part_bytes=len(body) // 3)
    for item in items[:-1]:  # the last child failed every retry: no report
        process_part(processor.cache, processor.data, PartItem.from_event(item))
    merge_s3(processor.data, shaped("fanout-merge", bucket=data_bucket.name, key=KEY, etag=etag, version="1"))
    report = orjson.loads(data_bucket.get(f"{split['prefix']}/report.json"))
    assert report["status"] == "partial"
    assert report["parts"]["failed"] == [{"part": len(items) - 1, "range": items[-1]["range"], "error": NO_REPORT}]
    assert report["rows"]["in"] == report["rows"]["ok"] + report["rows"]["failed"] < 400


def test_a_replaced_input_fails_its_parts_permanently(data_bucket: DataBucket, processor: Processor) -> None:
    body = rows_with_bad_ones(400)
    etag = upload(data_bucket, KEY, body)
    _, items = split_and_items(data_bucket, processor, KEY, etag, part_bytes=len(body) // 2)
    upload(data_bucket, KEY, rows_with_bad_ones(450))
    result = process_part(processor.cache, processor.data, PartItem.from_event(items[0]))
    assert result["status"] == "failed" and "replaced" in result["error"]


@pytest.mark.parametrize("bad", [{"part": -1}, {"part": True}, {"range": {"start": 5}}, {"version": "../x"}])
def test_malformed_part_events_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PartItem.from_event({**load_event("fanout-part"), **bad})
    with pytest.raises(ValueError):
        PartItem.from_event({k: v for k, v in load_event("fanout-part").items() if k != "etag"})


def test_array_children_take_their_range_by_index(data_bucket: DataBucket, processor: Processor,
                                                   batch_settings: Settings) -> None:
    body = rows_with_bad_ones(400)
    etag = upload(data_bucket, KEY, body)
    split, items = split_and_items(data_bucket, processor, KEY, etag, part_bytes=len(body) // 2)
    child = load_event("batch-array-child")
    command = child["command"]
    assert command == ["python", "-m", "functions.batch.array_worker"]
    for index in range(len(items)):
        env = {**os.environ, **child["environment"], "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
               "MAAS_FANOUT_BUCKET": data_bucket.name, "MAAS_FANOUT_KEY": KEY, "MAAS_FANOUT_ETAG": etag,
               "MAAS_FANOUT_VERSION": "1",
               "MAAS_STORE": batch_settings.store, "MAAS_S3_ENDPOINT_URL": str(batch_settings.s3_endpoint_url),
               "MAAS_CACHE_DIR": batch_settings.cache_dir, "MAAS_BATCH_THREADS": "1"}
        done = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert f"part {index}: ok" in done.stderr
    merge_s3(processor.data, shaped("fanout-merge", bucket=data_bucket.name, key=KEY, etag=etag, version="1"))
    report = orjson.loads(data_bucket.get(f"{split['prefix']}/report.json"))
    assert report["status"] == "ok" and report["rows"] == {"in": 400, "ok": 398, "failed": 2}
    part = orjson.loads(data_bucket.get(f"{split['prefix']}/parts/00001/report.json"))
    assert part["job_id"] == child["environment"]["AWS_BATCH_JOB_ID"]


def multiline_ids_csv(count: int) -> bytes:
    """Rows with an id column whose every fifth value holds a quoted newline, comma and quotes."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])
    for i in range(count):
        writer.writerow([f'c{i}\n"q",' if i % 5 == 0 else f"c{i}", *DIABETES_ROW])
    return out.getvalue().encode()


def test_fanned_out_parts_keep_the_id_column_and_quoted_newlines(data_bucket: DataBucket,
                                                                 processor: Processor) -> None:
    body = multiline_ids_csv(400)
    key, single_key = "inputs/diabetes-mlp/big/ids@id=customer.csv", "inputs/diabetes-mlp/one/ids@id=customer.csv"
    etag, single_etag = upload(data_bucket, key, body), upload(data_bucket, single_key, body)
    data_bucket.receive(2)
    assert processor.process(InputObject(data_bucket.name, single_key, single_etag, len(body))) == "done"
    single = f"outputs/diabetes-mlp/1/one/ids@id=customer.csv.{single_etag}/"
    split, items = split_and_items(data_bucket, processor, key, etag, part_bytes=len(body) // 7)
    assert len(items) >= 5
    assert {process_part(processor.cache, processor.data, PartItem.from_event(i))["status"] for i in items} == {"ok"}
    prefix = split["prefix"]
    joined = b"".join(data_bucket.get(f"{prefix}/parts/{i:05d}/predictions.jsonl") for i in range(len(items)))
    assert joined == data_bucket.get(single + "predictions.jsonl")
    ids = [orjson.loads(line)["id"] for line in joined.splitlines()]
    assert ids == [f'c{i}\n"q",' if i % 5 == 0 else f"c{i}" for i in range(400)]
    assert all(data_bucket.get(f"{prefix}/parts/{i:05d}/errors.jsonl") == b"" for i in range(len(items)))
