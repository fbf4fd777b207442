"""Input keys the processor refuses still get a failure report, at a key derived safely, and are not retried."""

from __future__ import annotations

import hashlib
import json

import pytest

from functions.batch.process import FAILED, Processor, failure_report_key
from tests.batch.conftest import DIABETES_ROW, DataBucket, csv_bytes
from tests.batch.test_handler import invoke, upload_and_receive


@pytest.mark.parametrize("key", ["inputs/diabetes-mlp/a/../b.csv", "inputs/diabetes-mlp/x\\y.csv",
                                 "inputs/diabetes-mlp/../../outputs/z.csv", "inputs/../x.csv"])
def test_refused_keys_get_a_report_under_failed_and_are_not_retried(data_bucket: DataBucket, processor: Processor,
                                                                    key: str) -> None:
    records = upload_and_receive(data_bucket, key, csv_bytes([DIABETES_ROW]))
    assert invoke(records) == []  # acknowledged, not retried toward the DLQ
    etag = json.loads(records[0]["body"])["Records"][0]["s3"]["object"]["eTag"]
    digest = hashlib.sha256((key + "\x00" + etag).encode()).hexdigest()
    expected = f"{FAILED}/_unsafe/{digest}/report.json"
    report = json.loads(data_bucket.get(expected))
    assert report["status"] == "failed" and report["input"]["key"] == key and report["error"]
    assert not [k for k in data_bucket.keys("outputs/") if ".." in k or "\\" in k]


def test_safe_keys_keep_their_readable_failure_key() -> None:
    assert failure_report_key("inputs/m/x.csv", "abc123") == f"{FAILED}/m/x.csv.abc123/report.json"
    assert failure_report_key("inputs/m/x.csv", "../e").startswith(f"{FAILED}/_unsafe/")
    assert failure_report_key("inputs/m/" + "a" * 1100, "e").startswith(f"{FAILED}/_unsafe/")
