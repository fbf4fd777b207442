"""The API and drift handlers under Lambda's real runtime client (``python -m awslambdaric``), as Lambda runs them.

One API process answers 1,000 predictions with capture on, then an event that is no HTTP request (the error
route), one more prediction, and one whose response post the Runtime API refuses (the runtime then exits).
Every capture record must lie in the process's stdout after its response post arrived and before the runtime
asked for the next invocation (where Lambda may freeze it), once. The drift handler then reads those records
from a data bucket, as Firehose would have delivered them. SnapStart's hooks run in the runtime's order around a
held restore; a bad setting fails the init through the init error route.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import orjson
import pytest

from functions.core import catalog
from functions.core.store import LocalStore
from tests.api.samples import CANCER_ROW, DIABETES_ROW
from tests.events import http_api_event, load_event
from tests.runtime_api import Call, lambda_function

API = "functions.api.handler.handler"
DRIFT = "functions.drift.handler.handler"
INVOCATIONS = 1000
PREDICT = http_api_event("POST", "/v1/models/diabetes-mlp/predict", orjson.dumps({"instances": [DIABETES_ROW]}))
CAPTURED = b'"maas_capture":1'


@dataclass
class ApiRun:
    calls: list[Call]
    stdout: bytes
    exit_code: int
    predictions: list[str]  # request ids answered before the refused post, in order


@pytest.fixture(scope="module")
def api_run(store_copy: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> ApiRun:
    env = {"MAAS_STORE": store_copy.uri, "MAAS_CAPTURE_RATE": "1"}
    with lambda_function(API, tmp_path_factory.mktemp("api"), env) as (api, process):
        predictions = [api.invoke(PREDICT, f"req-{n:04d}") for n in range(INVOCATIONS)]
        api.invoke({"detail-type": "Scheduled Event", "detail": {}}, "req-not-http")
        predictions.append(api.invoke(PREDICT, "req-after-error"))
        api.refused.add("req-refused")
        api.invoke(PREDICT, "req-refused")
        exit_code = process.wait(120)
        return ApiRun(list(api.calls), process.stdout(), exit_code, predictions)


def lines_with_offsets(stdout: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for line in stdout.splitlines(keepends=True):
        yield offset, line
        offset += len(line)


def capture_offsets(stdout: bytes) -> dict[str, list[int]]:
    """Request id -> byte offsets of its capture records in stdout."""
    found: dict[str, list[int]] = defaultdict(list)
    for offset, line in lines_with_offsets(stdout):
        if CAPTURED in line:
            found[orjson.loads(line)["request_id"]].append(offset)
    return found


def test_records_are_written_after_the_response_post_none_lost_none_twice(api_run: ApiRun) -> None:
    started = next(json.loads(line) for _, line in lines_with_offsets(api_run.stdout)
                   if b"capture records are written" in line)
    assert started["message"] == "capture records are written after the response"
    assert started["runtime_client"] == "awslambdaric.lambda_runtime_client.LambdaRuntimeClient"
    offsets = capture_offsets(api_run.stdout)
    assert set(offsets) == {*api_run.predictions, "req-refused"}  # none lost, and none for the error
    assert all(len(found) == 1 for found in offsets.values())  # none written twice
    calls = api_run.calls
    for request_id in api_run.predictions:
        index = next(i for i, c in enumerate(calls) if c.route == "response" and c.request_id == request_id)
        following = next(c for c in calls[index:] if c.route == "next")  # where Lambda may freeze the process
        assert calls[index].mark <= offsets[request_id][0] < following.mark, request_id
    bodies = [json.loads(c.json()["body"]) for c in calls if c.route == "response" and c.request_id != "req-refused"]
    assert len(bodies) == INVOCATIONS + 1 and {b["version"] for b in bodies} == {"1"}


def test_a_handler_exception_goes_through_the_error_route_and_the_runtime_carries_on(api_run: ApiRun) -> None:
    answers = {c.request_id: c for c in api_run.calls if c.route in ("response", "error")}
    error = answers["req-not-http"]
    assert error.route == "error"
    assert error.json()["errorType"] == "RuntimeError" and "adapter was unable to infer" in error.json()["errorMessage"]
    cause = json.loads(error.headers["lambda-runtime-function-xray-error-cause"])  # what X-Ray shows
    assert cause["exceptions"][0]["type"] == "RuntimeError"
    assert answers["req-after-error"].route == "response"
    assert json.loads(answers["req-after-error"].json()["body"])["predictions"]


def test_a_refused_response_post_ends_the_runtime_and_loses_no_record(api_run: ApiRun) -> None:
    assert api_run.calls[-1].route == "response" and api_run.calls[-1].request_id == "req-refused"
    assert api_run.exit_code != 0  # the runtime client raised: Lambda would restart the environment
    assert capture_offsets(api_run.stdout)["req-refused"][0] >= api_run.calls[-1].mark


def test_drift_reads_what_capture_wrote(api_run: ApiRun, store_copy: LocalStore, moto_endpoint: str,
                                        s3_bucket: str, tmp_path: Path) -> None:
    records = [line for _, line in lines_with_offsets(api_run.stdout) if CAPTURED in line]
    day = orjson.loads(records[0])["day"]
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.put_object(Bucket=s3_bucket, Key=f"capture/diabetes-mlp/1/{day}/maas-capture-1.gz",
                  Body=gzip.compress(b"".join(records)))  # as Firehose delivers them
    after_midnight = (datetime.fromisoformat(day) + timedelta(days=1, minutes=30)).replace(tzinfo=UTC)
    scheduled = {**load_event("eventbridge-scheduled"), "time": after_midnight.isoformat().replace("+00:00", "Z")}
    env = {"MAAS_STORE": store_copy.uri, "MAAS_S3_ENDPOINT_URL": moto_endpoint, "MAAS_DATA_BUCKET": s3_bucket}
    with lambda_function(DRIFT, tmp_path, env, function_name="maas-drift") as (api, process):
        answer = api.outcome(api.invoke(scheduled))
        stdout = process.stdout()
    assert answer.route == "response", answer.body
    summary = answer.json()
    assert summary["day"] == day
    assert [(v["model"], v["version"], v["status"]) for v in summary["versions"]] == [("diabetes-mlp", "1", "drift")]
    report = orjson.loads(store_copy.get_bytes(f"models/diabetes-mlp/versions/1/drift/{day}.json"))
    assert report["records"] == len(records) == INVOCATIONS + 2
    metrics = [json.loads(line) for line in stdout.splitlines() if b'"CloudWatchMetrics"' in line]
    assert [m["CapturedRecords"] for m in metrics] == [len(records)]


def test_snapstart_hooks_run_in_the_runtimes_order(store_copy: LocalStore, tmp_path: Path) -> None:
    """Before the snapshot: warm-up; restore; after it: aliases read again (prod moved while the snapshot slept);
    then the first invocation."""
    env = {"MAAS_STORE": store_copy.uri, "MAAS_PRELOAD": "cancer-mlp@prod",
           "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "MAAS_ALIAS_TTL_SECONDS": "3600"}
    predict = http_api_event("POST", "/v1/models/cancer-mlp/predict", orjson.dumps({"instances": [CANCER_ROW]}))
    assert catalog.read_alias(store_copy, "cancer-mlp", "prod").version == "1"
    with lambda_function(API, tmp_path, env) as (api, process):
        api.restore.clear()  # the snapshot is taken, and sleeps
        restore = api.first("restore/next")
        catalog.promote(store_copy, "cancer-mlp", "2", "prod")
        api.restore.set()
        answer = api.outcome(api.invoke(predict))
        stdout = process.stdout()
    first_next = next(c for c in api.calls if c.route == "next")
    assert [c.route for c in api.calls[:2]] == ["restore/next", "next"]
    logged = {json.loads(line)["message"]: offset for offset, line in lines_with_offsets(stdout)
              if line.startswith(b'{"level"')}
    assert logged["snapshot warm-up done"] < restore.mark <= logged["restored from snapshot"] < first_next.mark
    assert json.loads(answer.json()["body"])["version"] == "2"  # read again after the restore, not the TTL


def test_an_init_failure_is_reported_through_the_init_error_route(store_copy: LocalStore, tmp_path: Path) -> None:
    env = {"MAAS_STORE": store_copy.uri, "MAAS_CAPTURE_RATE": "2"}
    with lambda_function(API, tmp_path, env) as (api, process):
        failure = api.first("init/error")
        assert process.wait(60) == 1
    assert [c.route for c in api.calls] == ["init/error"]  # never asked for an invocation
    assert failure.headers["Lambda-Runtime-Function-Error-Type"] == "CaptureConfigError"
    assert "MAAS_CAPTURE_RATE must be a number from 0 to 1" in failure.json()["errorMessage"]
