"""Large inputs go to AWS Batch; the worker runs the same processing end to end on CPU.

AWS Batch's SubmitJob has no local implementation that runs jobs without Docker, so the dispatch test
records the call with botocore's Stubber (a stub, not moto). The worker itself runs for real, as a process,
against moto's S3 server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from functions.batch.dispatch import AwsBatchDispatcher
from functions.batch.objects import InputObject, data_bucket_factory
from functions.batch.process import Processor
from functions.core.settings import Settings
from tests.batch.conftest import DIABETES_ROW, DataBucket, npy_bytes

ROOT = Path(__file__).resolve().parents[2]


def _item(bucket: DataBucket, key: str) -> InputObject:
    head = bucket.s3.head_object(Bucket=bucket.name, Key=key)
    return InputObject(bucket.name, key, head["ETag"].strip('"'), head["ContentLength"])


def test_inputs_above_the_threshold_are_submitted_once(data_bucket: DataBucket, processor: Processor) -> None:
    client = boto3.client("batch", region_name="us-east-1")
    key = "inputs/diabetes-mlp/big.npy"
    data_bucket.put(key, npy_bytes(np.tile(np.asarray(DIABETES_ROW), (2000, 1))))
    item = _item(data_bucket, key)
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobId": "job-123", "jobName": "n"}, {
            "jobName": stub_any(), "jobQueue": "maas-gpu-queue", "jobDefinition": "maas-worker:3",
            "containerOverrides": {"command": ["python", "-m", "functions.batch.worker", "--bucket", data_bucket.name,
                                               "--key", key, "--etag", item.etag]}})
        dispatching = Processor(processor.cache, processor.data, AwsBatchDispatcher("maas-gpu-queue", "maas-worker:3",
                                                                                     client), dispatch_bytes=10_000)
        assert dispatching.process(item) == "dispatched"
        assert dispatching.process(item) == "duplicate"  # no second SubmitJob (the stub would raise)
        stub.assert_no_pending_responses()
    markers = [k for k in data_bucket.keys("outputs/") if k.endswith("dispatch.json")]
    assert len(markers) == 1
    marker = json.loads(data_bucket.get(markers[0]))
    assert marker["status"] == "dispatched" and marker["job_id"] == "job-123"
    assert "exceed the Lambda threshold" in marker["reason"]


def test_failed_submission_can_be_retried(data_bucket: DataBucket, processor: Processor) -> None:
    client = boto3.client("batch", region_name="us-east-1")
    key = "inputs/diabetes-mlp/retry.npy"
    data_bucket.put(key, npy_bytes(np.tile(np.asarray(DIABETES_ROW), (2000, 1))))
    item = _item(data_bucket, key)
    dispatching = Processor(processor.cache, processor.data, AwsBatchDispatcher("q", "d", client), dispatch_bytes=10)
    with Stubber(client) as stub:
        stub.add_client_error("submit_job", "ServerException", "try later")
        stub.add_response("submit_job", {"jobId": "job-2", "jobName": "n"})
        with pytest.raises(Exception, match="try later"):
            dispatching.process(item)
        assert dispatching.process(item) == "dispatched"


def stub_any() -> object:
    from botocore.stub import ANY

    return ANY


def test_worker_end_to_end_on_cpu(data_bucket: DataBucket, batch_settings: Settings, moto_endpoint: str) -> None:
    key = "inputs/digits-cnn/scans/batch-1.npy"
    images = np.random.default_rng(0).integers(0, 17, size=(300, 8, 8)).astype(np.float32)
    images[7, 0, 0] = np.nan
    data_bucket.put(key, npy_bytes(images))
    env = {**os.environ, "MAAS_STORE": batch_settings.store, "MAAS_S3_ENDPOINT_URL": moto_endpoint,
           "MAAS_CACHE_DIR": batch_settings.cache_dir, "MAAS_BATCH_CHUNK_ROWS": "128", "AWS_BATCH_JOB_ID": "job-9"}
    result = subprocess.run([sys.executable, "-m", "functions.batch.worker", "--bucket", data_bucket.name,
                             "--key", key], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "done (providers CPUExecutionProvider)" in result.stderr
    report_key = next(k for k in data_bucket.keys("outputs/digits-cnn/") if k.endswith("report.json"))
    report = json.loads(data_bucket.get(report_key))
    assert report["rows"] == {"in": 300, "ok": 299, "failed": 1}
    assert report["job_id"] == "job-9"
    assert report["model"]["providers"] == ["CPUExecutionProvider"]
    errors = data_bucket.get(report_key.replace("report.json", "errors.jsonl")).decode()
    assert '"line":8' in errors
    again = subprocess.run([sys.executable, "-m", "functions.batch.worker", "--bucket", data_bucket.name,
                            "--key", key], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "duplicate" in again.stderr


def test_worker_exit_code_for_a_permanent_failure(data_bucket: DataBucket, batch_settings: Settings,
                                                  moto_endpoint: str) -> None:
    key = "inputs/digits-cnn/broken.npy"
    data_bucket.put(key, b"not numpy")
    env = {**os.environ, "MAAS_STORE": batch_settings.store, "MAAS_S3_ENDPOINT_URL": moto_endpoint}
    result = subprocess.run([sys.executable, "-m", "functions.batch.worker", "--bucket", data_bucket.name,
                             "--key", key], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    assert data_bucket.keys("outputs/_failed/")


def test_data_bucket_factory_reuses_one_store_per_bucket(moto_endpoint: str) -> None:
    data = data_bucket_factory(moto_endpoint)
    assert data("a-bucket") is data("a-bucket")
    assert data("a-bucket") is not data("b-bucket")
