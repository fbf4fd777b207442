"""Batch fixtures: a data bucket on moto's server with S3 -> SQS notifications, and a processor over it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import numpy as np
import pytest

from functions.batch.handler import build_processor
from functions.batch.process import Processor
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.pinned import pinned_copy

DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
DIABETES_ROW = [50.0, 1.0, 27.5, 95.0, 190.0, 115.0, 45.0, 4.0, 4.6, 92.0]


@dataclass
class DataBucket:
    """The bucket, its notification queue and clients."""

    name: str
    queue_url: str
    s3: Any
    sqs: Any

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.name, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def receive(self, expected: int) -> list[dict[str, Any]]:
        """Up to ``expected`` SQS messages as Lambda's SQS event records (deleted from the queue)."""
        records: list[dict[str, Any]] = []
        for _ in range(20):
            if len(records) >= expected:
                break
            response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            for message in response.get("Messages", []):
                records.append(sqs_record(message["MessageId"], message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return records


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    """An SQS event record shaped like tests/events/sqs-batch.json."""
    from tests.events import load_event

    record = dict(load_event("sqs-batch")["Records"][0])
    record.update({"messageId": message_id, "body": body})
    return record


@pytest.fixture
def data_bucket(moto_endpoint: str) -> DataBucket:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    name = f"maas-data-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"QueueConfigurations": [{
        "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "inputs/"}]}}}]})
    bucket = DataBucket(name, queue_url, s3, sqs)
    test_events = bucket.receive(1)
    assert json.loads(test_events[0]["body"])["Event"] == "s3:TestEvent"
    return bucket


@pytest.fixture
def batch_settings(built_store: LocalStore, moto_endpoint: str, tmp_path: Any) -> Settings:
    return Settings(store=built_store.uri, s3_endpoint_url=moto_endpoint, cache_dir=str(tmp_path / "cache"),
                    batch_chunk_rows=64, batch_threads=1)


@pytest.fixture
def processor(batch_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Processor:
    import functions.batch.handler as batch_handler

    built = build_processor(batch_settings)
    monkeypatch.setattr(batch_handler, "processor", built)
    return built


@pytest.fixture(scope="session")
def fp32_store(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """The batch tests' models serving fp32 whatever this machine's build chose: tests that compare outputs of
    different splits need row-independent graphs (int8-dynamic scales activations over each run)."""
    return pinned_copy(built_store, tmp_path_factory.mktemp("fp32") / "store", "fp32", ["diabetes-mlp", "digits-cnn"])


@pytest.fixture
def fp32_processor(batch_settings: Settings, fp32_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> Processor:
    import functions.batch.handler as batch_handler

    built = build_processor(dataclasses.replace(batch_settings, store=fp32_store.uri))
    monkeypatch.setattr(batch_handler, "processor", built)
    return built


def csv_bytes(rows: list[list[Any]], header: list[str] | None = None) -> bytes:
    lines = [",".join(header or DIABETES_FEATURES)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def job_csv(rows: int, bad: int | None = None) -> bytes:
    """A diabetes CSV with a ``customer`` id column, row ``bad`` (if any) holding a non-number."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer", *DIABETES_FEATURES])
    for i in range(rows):
        writer.writerow([f"c-{i}", "x" if i == bad else DIABETES_ROW[0], *DIABETES_ROW[1:]])
    return out.getvalue().encode()
