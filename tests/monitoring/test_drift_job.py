"""The scheduled drift job against moto's S3 server: capture partitions in a data bucket, the model store in
another, reports written next to each version, EMF metrics on stdout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import orjson
import pytest

from functions.core.settings import get_settings
from functions.core.store import LocalStore, S3Store
from functions.drift import handler as drift_job
from model_build.recipes import load_recipe
from tests.monitoring.conftest import OLD_VERSION

DAY = "2026-11-24"
SCHEDULED_EVENT = {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
                   "source": "aws.events", "account": "123456789012", "time": "2026-11-25T00:30:00Z",
                   "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/maas-drift"],
                   "detail": {}}


def _copy_version(local: LocalStore, remote: S3Store, name: str, version: str) -> None:
    folder = local.root / "models" / name / "versions" / version
    for path in folder.iterdir():
        remote.put_bytes(f"models/{name}/versions/{version}/{path.name}", path.read_bytes())


def _records(name: str, version: str, rows: np.ndarray, names: list[str]) -> bytes:
    lines = [orjson.dumps({"maas_capture": 1, "model": name, "version": version, "day": DAY, "time": f"{DAY}T10:00:00Z",
                           "request_id": f"r{i}", "inputs": [dict(zip(names, row, strict=True))],
                           "outputs": [{"label": "malignant" if i % 3 == 0 else "benign", "probability": 0.9}]})
             for i, row in enumerate(rows.tolist())]
    return b"\n".join(lines) + b"\n"


@pytest.fixture
def deployed(monitor_store: LocalStore, moto_endpoint: str, s3_store: S3Store,
             monkeypatch: pytest.MonkeyPatch) -> tuple[S3Store, str]:
    for version in ("1", OLD_VERSION):
        _copy_version(monitor_store, s3_store, "cancer-mlp", version)
    recipe = load_recipe("cancer-mlp")
    data = recipe.load_data(True)
    names = list(recipe.fit_preprocessing(data).spec.features)  # type: ignore[union-attr]
    x = np.concatenate([np.asarray(data.x_test), np.asarray(data.x_val)]).astype(np.float64)
    x[:, names.index("worst area")] *= 2.0
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"{s3_store.bucket}-data"
    client.create_bucket(Bucket=bucket)
    half = len(x) // 2
    client.put_object(Bucket=bucket, Key=f"capture/cancer-mlp/1/{DAY}/part-1.gz",
                      Body=gzip.compress(_records("cancer-mlp", "1", x[:half], names)))  # as Firehose writes them
    client.put_object(Bucket=bucket, Key=f"capture/cancer-mlp/1/{DAY}/part-2",
                      Body=_records("cancer-mlp", "1", x[half:], names) + b"{\"maas_capture\": 1, broken\n")
    client.put_object(Bucket=bucket, Key=f"capture/cancer-mlp/{OLD_VERSION}/{DAY}/part-1",
                      Body=_records("cancer-mlp", OLD_VERSION, x[:30], names))
    client.put_object(Bucket=bucket, Key="capture/cancer-mlp/1/2026-11-20/part-1",
                      Body=_records("cancer-mlp", "1", x[:30] * 10, names))  # another day: not read
    monkeypatch.setenv("MAAS_STORE", s3_store.uri)
    monkeypatch.setenv("MAAS_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv(drift_job.ENV_DATA_BUCKET, bucket)
    get_settings.cache_clear()
    yield s3_store, bucket
    get_settings.cache_clear()


def test_drift_job_writes_reports_next_to_each_version_and_publishes_metrics(
        deployed: tuple[S3Store, str], capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = deployed
    result = drift_job.handler(SCHEDULED_EVENT, None)
    assert result["day"] == DAY
    statuses = {(v["model"], v["version"]): v["status"] for v in result["versions"]}
    assert statuses == {("cancer-mlp", "1"): "drift", ("cancer-mlp", OLD_VERSION): "no_reference"}
    report = orjson.loads(store.get_bytes(f"models/cancer-mlp/versions/1/drift/{DAY}.json"))
    assert report["features_over_threshold"] == ["worst area"]
    assert report["records"] == 172 and report["skipped_records"] == 1 and report["rows"] == 172
    assert report["prediction"]["kind"] == "label" and report["prediction"]["psi"] is not None
    old = orjson.loads(store.get_bytes(f"models/cancer-mlp/versions/{OLD_VERSION}/drift/{DAY}.json"))
    assert old["status"] == "no_reference"
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = metrics
    assert emf["model"] == "cancer-mlp" and emf["version"] == "1" and emf["FeaturesOverThreshold"] == 1
    assert emf["DriftScore"] >= 0.25 and emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "version"], []]


def test_a_day_without_capture_writes_nothing(deployed: tuple[S3Store, str]) -> None:
    store, _ = deployed
    assert drift_job.handler({"day": "2026-01-01"}, None) == {"day": "2026-01-01", "versions": []}
    assert not store.exists("models/cancer-mlp/versions/1/drift/2026-01-01.json")


def test_window_day_is_the_day_before_the_schedule(tmp_path: Path) -> None:
    assert drift_job.window_day(SCHEDULED_EVENT) == DAY
    assert drift_job.window_day({"day": "2026-02-03"}) == "2026-02-03"


def test_unknown_model_in_capture_is_reported_without_stopping_the_others(deployed: tuple[S3Store, str],
                                                                          moto_endpoint: str) -> None:
    _, bucket = deployed
    boto3.client("s3", endpoint_url=moto_endpoint).put_object(
        Bucket=bucket, Key=f"capture/ghost-model/1/{DAY}/part-1", Body=b'{"maas_capture": 1}\n')
    result: dict[str, Any] = drift_job.handler({"day": DAY}, None)
    statuses = {(v["model"], v["version"]): v["status"] for v in result["versions"]}
    assert statuses[("ghost-model", "1")] == "error" and statuses[("cancer-mlp", "1")] == "drift"


def test_maas_drift_reads_a_capture_partition_from_s3(deployed: tuple[S3Store, str]) -> None:
    from maas.drift import drift_report, over_threshold

    _, bucket = deployed
    report = drift_report("cancer-mlp", f"s3://{bucket}/capture/cancer-mlp/1/{DAY}/", "1", None, None)
    assert report["records"] == 172 and report["features_over_threshold"] == ["worst area"]
    assert over_threshold(report, 0.25) and not over_threshold(report, 100.0)
