"""Routing by estimated work and the deadline rule, against moto's S3, SQS and Step Functions (StartExecution
is moto's; the state machine's run is not simulated there)."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from functions.batch import handler as batch_handler
from functions.batch.objects import InputObject
from functions.batch.plan import Estimate, Limits, bytes_per_row, choose, estimate
from functions.batch.process import Processor
from functions.batch.ranges import FileSource
from functions.batch.routing import Router, StepFunctionsLauncher
from tests.batch.conftest import DIABETES_ROW, DataBucket, csv_bytes
from tests.batch.test_handler import ShortContext, invoke, upload_and_receive
from tests.events import load_event

WORK = Estimate(bytes=10**9, rows=10**7, bytes_per_row=100.0, seconds_per_row=0.001, seconds=10_000.0,
                cost_source="test")


def test_small_work_stays_in_one_lambda_and_big_work_fans_out() -> None:
    limits = Limits(lambda_seconds=600, safety_seconds=20, margin=0.5, fanout=True, batch=True,
                    rows_per_part=200_000)
    small = Estimate(10**6, 10**4, 100.0, 0.001, 10.0, "test")
    assert choose(small, limits, has_gpu=True).route == "lambda"
    plan = choose(WORK, limits, has_gpu=False)
    assert plan.route == "fanout" and plan.budget_seconds == 290
    assert plan.parts == 10**7 // 200_000 and plan.part_bytes == 200_000 * 100
    assert not plan.fits and plan.as_dict()["fits_one_lambda"] is False


def test_parts_are_sized_to_fit_the_child_timeout() -> None:
    plan = choose(WORK, Limits(fanout=True, rows_per_part=10**9), has_gpu=False)
    assert plan.route == "fanout" and plan.parts == 35  # 290 s / 1 ms = 290,000 rows per part
    assert plan.part_bytes == 290_000 * 100


def test_gpu_work_over_the_threshold_and_too_many_parts_go_to_aws_batch() -> None:
    limits = Limits(fanout=True, batch=True, gpu_work_seconds=5_000, batch_part_seconds=1_000)
    plan = choose(WORK, limits, has_gpu=True)
    assert (plan.route, plan.target, plan.parts) == ("batch", "gpu", 10)
    cpu = choose(WORK, Limits(fanout=True, batch=True, max_parts=10, rows_per_part=1000), has_gpu=False)
    assert (cpu.route, cpu.target) == ("batch", "cpu")


def test_without_engines_big_work_is_tried_in_one_lambda_with_the_reason() -> None:
    plan = choose(WORK, Limits(), has_gpu=False)
    assert plan.route == "lambda" and "no engine for large inputs" in plan.reason
    assert choose(WORK, Limits(fanout=True), has_gpu=False, force=True).route == "fanout"


def test_rows_are_estimated_from_the_head_and_cost_from_the_manifest(processor: Processor, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(csv_bytes([DIABETES_ROW] * 20_000))
    per_row, rows = bytes_per_row(FileSource(path), ".csv")
    assert 19_000 < rows < 21_000 and per_row > 10
    manifest = processor.cache.manifest("diabetes-mlp", "1")
    work = estimate(FileSource(path), ".csv", manifest, Limits(cost_factor=2.0))
    assert "ms per batch of 256 x cost factor 2.0" in work.cost_source
    assert work.seconds == pytest.approx(work.rows * work.seconds_per_row, abs=1e-3)


@pytest.fixture
def state_machine(moto_endpoint: str) -> str:
    client = boto3.client("stepfunctions", endpoint_url=moto_endpoint)
    definition = {"StartAt": "Split", "States": {"Split": {"Type": "Pass", "End": True}}}
    return str(client.create_state_machine(
        name=f"fanout-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/fanout")["stateMachineArn"])


def fanout_router(moto_endpoint: str, arn: str, **limits: Any) -> Router:
    return Router(Limits(fanout=True, **limits), StepFunctionsLauncher(arn, endpoint_url=moto_endpoint))


def executions(moto_endpoint: str, arn: str) -> list[dict[str, Any]]:
    client = boto3.client("stepfunctions", endpoint_url=moto_endpoint)
    found = client.list_executions(stateMachineArn=arn)["executions"]
    return [client.describe_execution(executionArn=e["executionArn"]) for e in found]


def test_heavy_input_starts_one_fanout_and_records_the_plan(data_bucket: DataBucket, processor: Processor,
                                                            moto_endpoint: str, state_machine: str) -> None:
    processor.router = fanout_router(moto_endpoint, state_machine, lambda_seconds=60, cost_factor=1e6,
                                     rows_per_part=100)
    body = csv_bytes([DIABETES_ROW] * 500)
    data_bucket.put("inputs/diabetes-mlp/heavy.csv", body)
    etag = str(data_bucket.s3.head_object(Bucket=data_bucket.name, Key="inputs/diabetes-mlp/heavy.csv")["ETag"])
    item = InputObject(data_bucket.name, "inputs/diabetes-mlp/heavy.csv", etag.strip('"'), len(body))
    assert processor.process(item) == "fanout"
    assert processor.process(item) == "fanout"  # a duplicate delivery: the same execution
    (execution,) = executions(moto_endpoint, state_machine)
    payload = json.loads(execution["input"])
    assert sorted(payload) == sorted(load_event("fanout-execution"))
    assert payload["route"] == "fanout" and payload["version"] == "1" and payload["etag"] == item.etag
    prefix = f"outputs/diabetes-mlp/1/heavy.csv.{item.etag}"
    plan = orjson.loads(data_bucket.get(f"{prefix}/plan.json"))
    assert plan["route"] == "fanout" and plan["execution"] == execution["executionArn"]
    # 100 rows a part, fewer when the model's measured latency (this machine's, at build time) fits fewer in
    # one Lambda's budget: the part count follows from the plan's own estimate, never below 500 / 100.
    rows_fit = int(plan["budget_seconds"] / plan["estimate"]["seconds_per_row"])
    assert plan["parts"] == math.ceil(plan["estimate"]["rows"] / max(1, min(100, rows_fit))) >= 5
    assert plan["estimate"]["rows"] == pytest.approx(500, rel=0.05)
    assert not any(k.endswith("report.json") for k in data_bucket.keys(prefix))


def with_receive_count(record: dict[str, Any], count: int) -> dict[str, Any]:
    return {**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": str(count)}}


def test_deadline_on_the_last_receives_writes_a_failure_report_that_says_why(data_bucket: DataBucket,
                                                                            processor: Processor) -> None:
    records = upload_and_receive(data_bucket, "inputs/diabetes-mlp/slow.csv", csv_bytes([DIABETES_ROW] * 300))
    assert invoke([with_receive_count(records[0], 3)], ShortContext([60_000] * 3 + [1_000])) == []
    (key,) = data_bucket.keys("outputs/_failed/")
    report = orjson.loads(data_bucket.get(key))
    assert report["status"] == "failed" and "ran out of time in one Lambda (receive 3 of at most 4)" in report["error"]
    assert "no fan-out or AWS Batch is configured" in report["error"]
    plan_key = report["input"]["plan"]
    assert orjson.loads(data_bucket.get(plan_key))["after_deadline"] is True


def test_deadline_with_a_fanout_reroutes_instead_of_handing_back(data_bucket: DataBucket, processor: Processor,
                                                                 moto_endpoint: str, state_machine: str) -> None:
    processor.router = fanout_router(moto_endpoint, state_machine)
    assert batch_handler.processor is processor
    records = upload_and_receive(data_bucket, "inputs/diabetes-mlp/late.csv", csv_bytes([DIABETES_ROW] * 300))
    assert invoke([with_receive_count(records[0], 1)], ShortContext([60_000] * 3 + [1_000])) == [
        records[0]["messageId"]]  # fits one Lambda: the time went elsewhere, so it is handed back once
    assert executions(moto_endpoint, state_machine) == []
    assert invoke([with_receive_count(records[0], 3)], ShortContext([60_000] * 3 + [1_000])) == []
    (execution,) = executions(moto_endpoint, state_machine)
    assert json.loads(execution["input"])["key"] == "inputs/diabetes-mlp/late.csv"
    assert data_bucket.keys("outputs/_failed/") == []
