"""S3 -> SQS -> batch Lambda against moto's server: outputs, duplicates, poison messages, deadlines."""

from __future__ import annotations

import json
import threading
from typing import Any

import orjson
import pytest

from functions.batch import handler as batch_handler
from functions.batch.process import Processor
from tests.batch.conftest import DIABETES_ROW, DataBucket, csv_bytes, sqs_record
from tests.events import LambdaContext

OUT = "outputs/diabetes-mlp/1/"


def invoke(records: list[dict[str, Any]], context: Any = None) -> list[str]:
    result = batch_handler.handler({"Records": records}, context or LambdaContext())
    assert result is not None
    return [f["itemIdentifier"] for f in result["batchItemFailures"]]


def upload_and_receive(bucket: DataBucket, key: str, body: bytes) -> list[dict[str, Any]]:
    bucket.put(key, body)
    records = bucket.receive(1)
    assert len(records) == 1
    return records


def test_csv_input_through_s3_sqs_and_the_handler(data_bucket: DataBucket, processor: Processor) -> None:
    rows = [DIABETES_ROW] * 150 + [["x", *DIABETES_ROW[1:]]] + [DIABETES_ROW[:5]]
    records = upload_and_receive(data_bucket, "inputs/diabetes-mlp/team a/day 1.csv", csv_bytes(rows))
    assert "team+a%2Fday+1.csv" in records[0]["body"]  # keys arrive URL-encoded
    assert invoke(records) == []
    outputs = data_bucket.keys(OUT)
    prefix = next(k for k in outputs if k.endswith("report.json")).removesuffix("report.json")
    assert prefix.startswith(f"{OUT}team a/day 1.csv.")
    assert sorted(k.removeprefix(prefix) for k in outputs) == ["errors.jsonl", "predictions.jsonl", "report.json"]
    predictions = [orjson.loads(line) for line in data_bucket.get(prefix + "predictions.jsonl").splitlines()]
    errors = [orjson.loads(line) for line in data_bucket.get(prefix + "errors.jsonl").splitlines()]
    report = json.loads(data_bucket.get(prefix + "report.json"))
    assert [p["line"] for p in predictions] == list(range(2, 152))
    assert [e["line"] for e in errors] == [152, 153]
    assert "non-numeric cell 'x' in column 'age'" in errors[0]["error"]
    assert "expected 10 cells, got 5" in errors[1]["error"]
    assert report["status"] == "ok"
    assert report["rows"] == {"in": 152, "ok": 150, "failed": 2}
    assert report["model"]["name"] == "diabetes-mlp" and len(report["model"]["sha256"]) == 64


def test_duplicate_deliveries_produce_one_identical_output(data_bucket: DataBucket, processor: Processor) -> None:
    records = upload_and_receive(data_bucket, "inputs/diabetes-mlp/dup.csv", csv_bytes([DIABETES_ROW] * 100))
    assert invoke(records) == []
    first = {k: data_bucket.get(k) for k in data_bucket.keys(OUT)}
    for _ in range(10):  # sequential redeliveries
        assert invoke(records) == []
    failures: list[list[str]] = []
    threads = [threading.Thread(target=lambda: failures.append(invoke(records))) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [[]] * 10
    assert {k: data_bucket.get(k) for k in data_bucket.keys(OUT)} == first


def test_concurrent_first_deliveries_write_exactly_one_output(data_bucket: DataBucket, processor: Processor) -> None:
    for trial in range(10):
        records = upload_and_receive(data_bucket, f"inputs/diabetes-mlp/race-{trial}.csv",
                                     csv_bytes([DIABETES_ROW] * 20))
        results: list[list[str]] = []
        threads = [threading.Thread(target=lambda r=records, out=results: out.append(invoke(r))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [[]] * 4
        keys = data_bucket.keys(f"{OUT}race-{trial}.csv.")
        assert len(keys) == 3 and sum(k.endswith("report.json") for k in keys) == 1
        predictions = data_bucket.get(next(k for k in keys if k.endswith("predictions.jsonl")))
        assert len(predictions.splitlines()) == 20


@pytest.mark.parametrize("poison", [0, 1, 3, 10])
def test_partial_batch_response_names_exactly_the_poison_messages(data_bucket: DataBucket, processor: Processor,
                                                                  poison: int) -> None:
    good = [upload_and_receive(data_bucket, f"inputs/diabetes-mlp/p{poison}-{i}.csv",
                               csv_bytes([DIABETES_ROW] * 3))[0] for i in range(10 - poison)]
    bodies = ["Test message.", '{"message": "foo1"}', "{not json", '{"Records": [{"eventSource": "aws:s3", '
              '"eventName": "ObjectCreated:Put"}]}', '{"Records": "x"}', "", "[]", "null",
              '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}', "42"]
    bad = [sqs_record(f"poison-{i}", bodies[i]) for i in range(poison)]
    records = good + bad
    records.sort(key=lambda r: r["messageId"])
    assert sorted(invoke(records)) == sorted(r["messageId"] for r in bad)
    assert sum(k.endswith("report.json") for k in data_bucket.keys(f"{OUT}p{poison}-")) == 10 - poison


def test_unknown_model_gets_a_failure_report_and_is_not_retried(data_bucket: DataBucket,
                                                                processor: Processor) -> None:
    records = upload_and_receive(data_bucket, "inputs/no-such-model/x.csv", csv_bytes([DIABETES_ROW]))
    assert invoke(records) == []
    keys = data_bucket.keys("outputs/_failed/")
    assert len(keys) == 1 and keys[0].startswith("outputs/_failed/no-such-model/x.csv.")
    report = json.loads(data_bucket.get(keys[0]))
    assert report["status"] == "failed" and "no published version" in report["error"]


def test_keys_outside_inputs_and_other_events_are_ignored(data_bucket: DataBucket, processor: Processor) -> None:
    data_bucket.put("outputs/diabetes-mlp/1/loop.csv", csv_bytes([DIABETES_ROW]))
    assert data_bucket.receive(1) == []  # the notification filter keeps outputs/ out
    deleted = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
                            "s3": {"bucket": {"name": data_bucket.name},
                                   "object": {"key": "inputs/diabetes-mlp/a.csv"}}}]}
    elsewhere = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                              "s3": {"bucket": {"name": data_bucket.name},
                                     "object": {"key": "other/a.csv", "eTag": "x", "size": 1}}}]}
    assert invoke([sqs_record("d", json.dumps(deleted)), sqs_record("e", json.dumps(elsewhere)),
                   sqs_record("t", json.dumps({"Event": "s3:TestEvent"}))]) == []
    assert data_bucket.keys("outputs/") == ["outputs/diabetes-mlp/1/loop.csv"]


class ShortContext(LambdaContext):
    def __init__(self, remaining: list[int]) -> None:
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining.pop(0) if len(self.remaining) > 1 else self.remaining[0]


def test_running_out_of_time_hands_messages_back_without_output(data_bucket: DataBucket,
                                                                processor: Processor) -> None:
    records = [upload_and_receive(data_bucket, f"inputs/diabetes-mlp/late-{i}.csv",
                                  csv_bytes([DIABETES_ROW] * 300))[0] for i in range(3)]
    # plenty of time for the first message, then the clock runs out in the middle of the second
    context = ShortContext([60_000] * 8 + [1_000])
    failed = invoke(records, context)
    assert failed == [r["messageId"] for r in records[1:]]
    reports = [k for k in data_bucket.keys(OUT) if k.endswith("report.json")]
    assert len(reports) == 1 and "late-0.csv" in reports[0]
    assert not any("late-1" in k or "late-2" in k for k in data_bucket.keys("outputs/"))
    assert invoke(records[1:]) == []  # the retry completes them
    assert sum(k.endswith("report.json") for k in data_bucket.keys(OUT)) == 3


def test_direct_s3_event(data_bucket: DataBucket, processor: Processor) -> None:
    records = upload_and_receive(data_bucket, "inputs/diabetes-mlp:1/direct.csv", csv_bytes([DIABETES_ROW] * 2))
    assert batch_handler.handler(json.loads(records[0]["body"]), LambdaContext()) is None
    assert sum(k.endswith("report.json") for k in data_bucket.keys(f"{OUT}direct.csv.")) == 1
