"""Asynchronous jobs on AWS, against moto's S3 and SQS over real HTTP: the API (uvicorn on loopback) answers a
presigned POST, the client uploads the file to it, the S3 event reaches the real batch handler, and the
status route answers presigned downloads of the outputs (issue 17)."""

from __future__ import annotations

import base64
import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from functions.api.front import Front
from functions.core.errors import ApiRejectedError
from functions.core.settings import Settings
from maas.client import Client
from tests.api.conftest import LiveServer
from tests.batch.conftest import DataBucket, job_csv
from tests.batch.test_handler import invoke

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


@pytest.fixture
def api(batch_settings: Settings, data_bucket: DataBucket, processor: Any) -> Iterator[Client]:
    settings = dataclasses.replace(batch_settings, data_bucket=data_bucket.name, jobs_upload_seconds=600)
    with LiveServer(Front(settings)) as url:
        yield Client(url, auth="none")



def _policy(upload: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(upload["fields"]["policy"]))
    return policy


def test_submit_upload_run_status_and_download(api: Client, data_bucket: DataBucket, tmp_path: Path) -> None:
    data = job_csv(30, bad=4)
    job = api.submit_job("diabetes-mlp", "csv", len(data), id_column="customer")
    upload = job["upload"]
    assert upload["method"] == "POST" and upload["url"].startswith("http://127.0.0.1")
    assert upload["fields"]["key"] == f"inputs/diabetes-mlp:1/jobs/{job['job_id']}@output=jsonl@id=customer.csv"
    assert ["content-length-range", 1, len(data)] in _policy(upload)["conditions"]
    assert api.job(job["job_id"])["status"] == "pending"

    source = tmp_path / "input.csv"
    source.write_bytes(data)
    api.upload(upload, source)  # streamed multipart POST to moto, no credentials of ours
    assert data_bucket.get(upload["fields"]["key"]) == data
    records = data_bucket.receive(1)
    running = api.job(job["job_id"])
    assert running["status"] == "running" and running["input"]["bytes"] == len(data)

    assert invoke(records) == []  # the real batch handler, on the real S3 event
    done = api.job(job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["rows"] == {"in": 30, "ok": 29, "failed": 1} and done["version"] == "1"
    predictions = [orjson.loads(line) for line in api.fetch(done["outputs"]["predictions"]).splitlines()]
    assert [p["id"] for p in predictions] == [f"c-{i}" for i in range(30) if i != 4]
    [error] = [orjson.loads(line) for line in api.fetch(done["outputs"]["errors"]).splitlines()]
    assert error["id"] == "c-4" and error["line"] == 6
    assert orjson.loads(api.fetch(done["outputs"]["report"]))["status"] == "ok"
    with pytest.raises(urllib.error.HTTPError) as denied:  # the download URLs are signed: no signature, no bytes
        urllib.request.urlopen(done["outputs"]["predictions"].split("?")[0], timeout=10)
    denied.value.close()
    assert denied.value.code == 403


def test_an_unreadable_upload_fails_the_job_with_the_reason(api: Client, data_bucket: DataBucket) -> None:
    data = b"no,header,we,know\n1,2,3,4\n"
    job = api.submit_job("diabetes-mlp", "csv", len(data))
    api.upload(job["upload"], data)
    assert invoke(data_bucket.receive(1)) == []
    failed = api.job(job["job_id"])
    assert failed["status"] == "failed" and "lacks feature column" in failed["error"]


def test_the_upload_url_is_bound_to_its_key_and_encryption(api: Client, batch_settings: Settings,
                                                           data_bucket: DataBucket) -> None:
    from functions.api.s3_jobs import S3Jobs

    settings = dataclasses.replace(batch_settings, data_bucket=data_bucket.name, data_key_arn=KEY_ARN)
    job = S3Jobs.from_settings(settings).create("diabetes-mlp", "1", _request(100), "https://api.example")
    conditions = _policy(job["upload"])["conditions"]
    assert {"x-amz-server-side-encryption": "aws:kms"} in conditions
    assert {"x-amz-server-side-encryption-aws-kms-key-id": KEY_ARN} in conditions
    assert {"key": job["upload"]["fields"]["key"]} in conditions and ["content-length-range", 1, 100] in conditions
    assert job["status_url"] == f"https://api.example/v1/jobs/{job['job_id']}"


def test_an_upload_url_that_expired_unused_fails_the_job(api: Client, data_bucket: DataBucket) -> None:
    job = api.submit_job("diabetes-mlp", "jsonl", 10)
    record_key = f"jobs/{job['job_id']}.json"
    record = json.loads(data_bucket.get(record_key))
    data_bucket.put(record_key, json.dumps({**record, "upload_expires_at": "2000-01-01T00:00:00+00:00"}).encode())
    status = api.job(job["job_id"])
    assert status["status"] == "failed" and "expired" in status["error"]


@pytest.mark.parametrize(("body", "status"), [
    ({"format": "xlsx", "bytes": 10}, 422), ({"format": "csv", "bytes": 0}, 422),
    ({"format": "csv", "bytes": 6 * 1024**3}, 422), ({"format": "npy", "bytes": 10, "id_column": "x"}, 422),
    ({"format": "csv", "bytes": 10, "id_column": "a/b"}, 422), ({"format": "csv", "bytes": 10, "extra": 1}, 422)])
def test_bad_job_requests_are_refused_with_a_reason(api: Client, body: dict[str, Any], status: int) -> None:
    with pytest.raises(ApiRejectedError) as refused:
        api.call("POST", "/v1/models/diabetes-mlp/jobs", body)
    assert refused.value.status == status and '"code"' in str(refused.value)


def test_unknown_models_versions_and_jobs_are_404(api: Client) -> None:
    for path in ("/v1/models/nope/jobs", "/v1/models/diabetes-mlp/versions/99/jobs"):
        with pytest.raises(ApiRejectedError) as missing:
            api.call("POST", path, {"format": "csv", "bytes": 10})
        assert missing.value.status == 404
    for job_id in ("0" * 32, "../../etc", "A" * 32):
        with pytest.raises(ApiRejectedError) as missing:
            api.job(job_id)
        assert missing.value.status == 404


def _request(size: int) -> Any:
    from functions.api.job_request import JobRequest

    return JobRequest("csv", size)



def test_a_fanned_out_job_answers_its_parts_in_order(api: Client, data_bucket: DataBucket, processor: Any,
                                                     tmp_path: Path) -> None:
    from functions.batch.merge import merge_s3
    from functions.batch.part import PartItem, process_part
    from maas.jobs import jobs as jobs_cli
    from tests.batch.test_fanout_parts import shaped, split_and_items

    data = job_csv(300, bad=100)
    job = api.submit_job("diabetes-mlp", "csv", len(data), id_column="customer")
    api.upload(job["upload"], data)
    data_bucket.receive(1)  # the state machine's part is played here: split, parts, merge (as in test_fanout_parts)
    key = job["upload"]["fields"]["key"]
    etag = api.job(job["job_id"])["input"]["etag"]
    _, items = split_and_items(data_bucket, processor, key, etag, part_bytes=len(data) // 4)
    for item in items:
        process_part(processor.cache, processor.data, PartItem.from_event(item))
    merge_s3(processor.data, shaped("fanout-merge", bucket=data_bucket.name, key=key, etag=etag, version="1"))
    done = api.job(job["job_id"])
    assert done["status"] == "succeeded" and done["rows"] == {"in": 300, "ok": 299, "failed": 1}
    assert len(done["outputs"]["parts"]) == len(items) >= 4

    from click.testing import CliRunner

    result = CliRunner().invoke(jobs_cli, ["fetch", job["job_id"], "--output", str(tmp_path / "out"),
                                           "--url", api.url, "--auth", "none"])
    assert result.exit_code == 0, result.output
    ids = [orjson.loads(line)["id"] for line in (tmp_path / "out/predictions.jsonl").read_bytes().splitlines()]
    assert ids == [f"c-{i}" for i in range(300) if i != 100]  # the parts joined in input order
    assert orjson.loads((tmp_path / "out/errors.jsonl").read_bytes())["id"] == "c-100"


def test_a_parquet_job_with_parquet_output(api: Client, data_bucket: DataBucket, tmp_path: Path) -> None:
    """Parquet in, output_format=parquet: the upload key carries the choice, the real batch handler writes
    predictions.parquet, the status links it; a bad Parquet upload is a failed job with the reason."""
    import pyarrow.parquet as pq

    from tests.batch.test_parquet import _diabetes

    data = _diabetes(tmp_path / "in.parquet", rows=60).read_bytes()
    job = api.submit_job("diabetes-mlp", "parquet", len(data), id_column="customer", output_format="parquet")
    key = job["upload"]["fields"]["key"]
    assert key == f"inputs/diabetes-mlp:1/jobs/{job['job_id']}@output=parquet@id=customer.parquet"
    api.upload(job["upload"], data)
    assert invoke(data_bucket.receive(1)) == []
    done = api.job(job["job_id"])
    assert done["status"] == "succeeded" and done["output_format"] == "parquet", done
    assert "/predictions.parquet?" in done["outputs"]["predictions"]
    (tmp_path / "p.parquet").write_bytes(api.fetch(done["outputs"]["predictions"]))
    table = pq.read_table(tmp_path / "p.parquet")
    rows = done["rows"]
    assert rows["in"] == rows["ok"] + rows["failed"] == 60 and table.num_rows == rows["ok"] == 58
    assert table.column("id").to_pylist()[:2] == ["c-0000", "c-0001"]

    bad = data[: len(data) // 2]
    failing = api.submit_job("diabetes-mlp", "parquet", len(bad), output_format="parquet")
    api.upload(failing["upload"], bad)
    assert invoke(data_bucket.receive(1)) == []
    failed = api.job(failing["job_id"])
    assert failed["status"] == "failed" and "Parquet" in failed["error"]


def test_a_json_lines_job_stays_json_lines_where_the_batch_default_is_parquet(
        api: Client, data_bucket: DataBucket, processor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's own output format travels in its key: a deployment whose batch side defaults to Parquet
    (MAAS_BATCH_OUTPUT_FORMAT=parquet) still writes the JSON lines a job asked for by default."""
    settings = dataclasses.replace(processor.cache.settings, batch_output_format="parquet")
    monkeypatch.setattr(processor.cache, "settings", settings)
    data = job_csv(20)
    job = api.submit_job("diabetes-mlp", "csv", len(data))
    assert job["upload"]["fields"]["key"].endswith("@output=jsonl.csv")
    api.upload(job["upload"], data)
    assert invoke(data_bucket.receive(1)) == []
    done = api.job(job["job_id"])
    assert done["status"] == "succeeded" and done["output_format"] == "jsonl", done
    assert "/predictions.jsonl?" in done["outputs"]["predictions"]
    assert len(api.fetch(done["outputs"]["predictions"]).splitlines()) == done["rows"]["ok"] == 20


def test_a_fanned_out_parquet_job_is_fetched_as_one_parquet_file(api: Client, data_bucket: DataBucket,
                                                                  processor: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from functions.batch.merge import merge_s3
    from functions.batch.part import PartItem, process_part
    from maas.jobs import jobs as jobs_cli
    from tests.batch.test_fanout_parts import shaped, split_and_items
    from tests.batch.test_parquet import _diabetes

    data = _diabetes(tmp_path / "in.parquet", rows=200, row_group_size=25).read_bytes()
    job = api.submit_job("diabetes-mlp", "parquet", len(data), id_column="customer", output_format="parquet")
    api.upload(job["upload"], data)
    data_bucket.receive(1)  # the state machine's part is played here: split (row groups), children, merge
    key = job["upload"]["fields"]["key"]
    etag = api.job(job["job_id"])["input"]["etag"]
    _, items = split_and_items(data_bucket, processor, key, etag, part_bytes=len(data) // 4)
    for item in items:
        assert process_part(processor.cache, processor.data, PartItem.from_event(item))["status"] == "ok"
    merge_s3(processor.data, shaped("fanout-merge", bucket=data_bucket.name, key=key, etag=etag, version="1"))
    done = api.job(job["job_id"])
    assert done["status"] == "succeeded" and len(done["outputs"]["parts"]) == len(items) >= 3
    assert all("/predictions.parquet?" in part["predictions"] for part in done["outputs"]["parts"])
    result = CliRunner().invoke(jobs_cli, ["fetch", job["job_id"], "--output", str(tmp_path / "out"),
                                           "--url", api.url, "--auth", "none"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out/predictions.parquet")
    assert table.num_rows == done["rows"]["ok"] and done["rows"]["in"] == 200
    lines = table.column("line").to_pylist()
    assert lines == sorted(lines) and len(set(lines)) == len(lines)  # the parts joined in input order
