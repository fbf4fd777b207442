"""Batch jobs submitted with an API key: their rows count to the submitting consumer, and only that consumer
reads them. Locally through ``maas serve --keys``'s gate on uvicorn; deployed through the S3 job routes behind the
gate, moto's S3 and SQS, the real batch handler and a moto DynamoDB table (issue 29)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.api.front import Front, create_front
from functions.consumers import jobs as consumer_jobs
from functions.consumers.admission import Keyring, Limits
from functions.consumers.dynamo_store import DynamoStore
from functions.consumers.gate import KeyGate, is_public, local_gate
from functions.consumers.jobs import CONSUMER_FIELD, CONSUMER_METADATA, count_input_rows, is_job_input
from functions.consumers.meter import Meter
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.usage import Usage, day_of
from functions.core.errors import NotFoundError
from functions.core.settings import Settings
from functions.core.store import LocalStore, S3Store
from maas.client import Client
from tests.api.conftest import LiveServer
from tests.batch import conftest as batch_fixtures
from tests.batch.conftest import DataBucket, job_csv
from tests.batch.test_handler import invoke
from tests.consumers.conftest import add_key
from tests.consumers.dynamo import make_table

MODEL = "diabetes-mlp"
batch_settings = batch_fixtures.batch_settings  # the batch tests' fixtures: a data bucket on moto, its processor
data_bucket = batch_fixtures.data_bucket
processor = batch_fixtures.processor



def _job_rows(rows: list[Usage]) -> list[tuple[str, str, str, int, int]]:
    """(consumer, model, version, requests, rows) of the rows that count instances."""
    return [(r.consumer, r.model, r.version, r.requests, r.rows) for r in rows if r.rows]


# ---- local: maas serve --keys -------------------------------------------------------------------------------


@dataclasses.dataclass
class Served:
    url: str
    store: SqliteStore
    gate: KeyGate


@pytest.fixture
def served(built_store: LocalStore, tmp_path: Path) -> Iterator[Served]:
    """What ``maas serve --keys FILE`` runs: the front behind ``local_gate``, jobs beside its cache."""
    keys = tmp_path / "keys.db"
    store = SqliteStore(keys)
    front = create_front(Settings(store=built_store.uri, cache_dir=str(tmp_path / "cache")))
    gate = local_gate(front, str(keys), ttl=0)
    try:
        with LiveServer(gate) as url:
            yield Served(url, store, gate)
    finally:
        consumer_jobs.use_meter(None)


def _wait(http: httpx.Client, job_id: str, key: str) -> dict[str, Any]:
    for _ in range(600):  # bounded polling; no timing is asserted
        answer = http.get(f"/v1/jobs/{job_id}", headers={"x-api-key": key})
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def _submit(http: httpx.Client, key: str, data: bytes) -> dict[str, Any]:
    """Submit a CSV job of ``data`` with ``key``; the API's answer (checked to be 201)."""
    submitted = http.post(f"/v1/models/{MODEL}/jobs", json={"format": "csv", "bytes": len(data),
                                                            "id_column": "customer"}, headers={"x-api-key": key})
    assert submitted.status_code == 201, submitted.text
    job: dict[str, Any] = submitted.json()
    return job


def test_a_local_job_counts_its_rows_to_its_consumer_and_only_it_reads_them(served: Served) -> None:
    key_a, _ = add_key(served.store, "team-a")
    key_b, _ = add_key(served.store, "team-b")
    data = job_csv(20, bad=3)
    with httpx.Client(base_url=served.url, timeout=30) as http:
        job = _submit(http, key_a, data)
        assert http.put(job["upload"]["url"], content=data).status_code == 202  # no key: the token is enough
        done = _wait(http, job["job_id"], key_a)
        assert done["status"] == "succeeded" and done["rows"] == {"in": 20, "ok": 19, "failed": 1}

        status, predictions = f"/v1/jobs/{job['job_id']}", f"/v1/jobs/{job['job_id']}/files/predictions.jsonl"
        assert len(http.get(predictions, headers={"x-api-key": key_a}).text.splitlines()) == 19
        unknown = http.get(f"/v1/jobs/{'0' * 32}", headers={"x-api-key": key_b})
        for path in (status, predictions):  # team B's key: as if the job did not exist
            other = http.get(path, headers={"x-api-key": key_b})
            assert other.status_code == 404 == unknown.status_code and other.json()["code"] == unknown.json()["code"]
            assert "c-0" not in other.text
        assert http.get(status).status_code == 401  # no key, no status
        assert http.put(f"/v1/models/{MODEL}/jobs", content=b"{}").status_code == 401  # only uploads skip the key

    served.gate.meter.flush()
    usage = served.store.usage()
    assert _job_rows(usage) == [("team-a", MODEL, "1", 0, 19)]  # the job's ok rows, no request of its own
    assert sum(r.requests for r in usage if r.consumer == "team-a") >= 2  # its submit and status calls
    assert not [r for r in usage if r.consumer == "team-b" and r.rows]


def test_only_a_local_jobs_upload_skips_the_key() -> None:
    job = "0123456789abcdef" * 2

    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path}

    assert is_public(scope("PUT", f"/v1/jobs/{job}/input")) and is_public(scope("GET", "/v2/health/ready"))
    for method, path in (("GET", f"/v1/jobs/{job}/input"), ("POST", f"/v1/jobs/{job}/input"),
                         ("PUT", f"/v1/jobs/{job}"), ("PUT", "/v1/jobs/nope/input"),
                         ("PUT", f"/v1/jobs/{job}/input/x"), ("PUT", f"/v1/models/{MODEL}/jobs")):
        assert not is_public(scope(method, path)), (method, path)


def test_job_rows_are_counted_only_for_job_inputs_with_a_consumer(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    class Bucket:
        def __init__(self, metadata: dict[str, str]) -> None:
            self.meta = metadata

        def metadata(self, key: str) -> dict[str, str]:
            if not self.meta:
                raise OSError("the bucket is unreachable")
            return self.meta

    keys = tmp_path / "keys.db"
    job_key = f"inputs/{MODEL}:1/jobs/{'a' * 32}@id=customer.csv"
    assert is_job_input(job_key) and not is_job_input(f"inputs/{MODEL}/scores.csv")
    assert count_input_rows(Bucket({CONSUMER_METADATA: "team-a"}), job_key, MODEL, "1", 5) is None  # no MAAS_KEYS
    monkeypatch.setenv("MAAS_KEYS", str(keys))
    assert count_input_rows(Bucket({CONSUMER_METADATA: "team-a"}), f"inputs/{MODEL}/x.csv", MODEL, "1", 5) is None
    assert count_input_rows(Bucket({"other": "x"}), job_key, MODEL, "1", 5) is None
    assert count_input_rows(Bucket({}), job_key, MODEL, "1", 5) is None  # a failing HEAD is logged, never raised
    assert count_input_rows(Bucket({CONSUMER_METADATA: "team-a"}), job_key, MODEL, "1", 5) == "team-a"
    assert _job_rows(SqliteStore(keys).usage()) == [("team-a", MODEL, "1", 0, 5)]


# ---- deployed: S3 job routes, the batch handler, DynamoDB ------------------------------------------------------


@dataclasses.dataclass
class Deployed:
    url: str
    keys: SqliteStore
    table: DynamoStore
    settings: Settings


@pytest.fixture
def deployed(batch_settings: Settings, data_bucket: DataBucket, processor: Any,
             dynamo_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Deployed]:
    """The S3 job routes behind the key gate (keys in SQLite: the grant's source does not matter to the routes),
    the batch side counting to a DynamoDB table through ``MAAS_KEYS``."""
    settings = dataclasses.replace(batch_settings, data_bucket=data_bucket.name, jobs_upload_seconds=600)
    keys = SqliteStore(tmp_path / "keys.db")
    table = make_table(dynamo_env)
    monkeypatch.setenv("MAAS_KEYS", f"dynamodb://{table}")
    gate = KeyGate(Front(settings), Limits(keys), Meter(keys), Keyring(keys, ttl=0))
    with LiveServer(gate) as url:
        yield Deployed(url, keys, DynamoStore(table), settings)


def _policy(upload: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(upload["fields"]["policy"]))
    return policy


def test_an_s3_job_counts_its_rows_once_to_the_consumer_its_upload_names(
        deployed: Deployed, data_bucket: DataBucket) -> None:
    key_a, _ = add_key(deployed.keys, "team-a")
    key_b, _ = add_key(deployed.keys, "team-b")
    data = job_csv(30, bad=4)
    with httpx.Client(base_url=deployed.url, timeout=30) as http:
        job = _submit(http, key_a, data)
        upload = job["upload"]
        # The consumer is a field of the form and an exact-match condition of the signed policy: an upload that
        # changes or drops it is refused by S3 (moto does not check POST policies, so the policy is asserted).
        assert upload["fields"][CONSUMER_FIELD] == "team-a"
        assert {CONSUMER_FIELD: "team-a"} in _policy(upload)["conditions"]
        status = f"/v1/jobs/{job['job_id']}"
        assert http.get(status, headers={"x-api-key": key_a}).json()["status"] == "pending"
        assert http.get(status, headers={"x-api-key": key_b}).status_code == 404

        Client(deployed.url, auth="none").upload(upload, data)
        input_key = upload["fields"]["key"]
        assert S3Store(data_bucket.name, "", client=data_bucket.s3).metadata(input_key) == {
            CONSUMER_METADATA: "team-a"}
        records = data_bucket.receive(1)
        assert invoke(records) == []  # the real batch handler on the real S3 event: the report, then the count
        assert invoke(records) == []  # the same event again: a duplicate, counted nothing
        done = http.get(status, headers={"x-api-key": key_a}).json()
        assert done["status"] == "succeeded" and done["rows"] == {"in": 30, "ok": 29, "failed": 1}
        other = http.get(status, headers={"x-api-key": key_b})
        assert other.status_code == 404 and "outputs" not in other.text

    assert _job_rows(deployed.table.usage()) == [("team-a", MODEL, "1", 0, 29)]
    assert [r.day for r in deployed.table.usage()] == [day_of()]


def test_a_fanned_out_job_counts_its_merged_rows_once(deployed: Deployed, data_bucket: DataBucket,
                                                      processor: Any) -> None:
    from functions.api.job_request import JobRequest
    from functions.api.s3_jobs import S3Jobs
    from functions.batch.merge import merge_s3
    from functions.batch.part import PartItem, process_part
    from tests.batch.test_fanout_parts import shaped, split_and_items

    data = job_csv(120, bad=7)
    jobs = S3Jobs.from_settings(deployed.settings)
    job = jobs.create(MODEL, "1", JobRequest("csv", len(data), "customer"), "https://api.example", "team-c")
    Client(deployed.url, auth="none").upload(job["upload"], data)
    data_bucket.receive(1)  # the state machine's part is played here: split, parts, merge
    key = job["upload"]["fields"]["key"]
    etag = jobs.status(job["job_id"], "team-c")["input"]["etag"]
    _, items = split_and_items(data_bucket, processor, key, etag, part_bytes=len(data) // 3)
    for item in items:
        process_part(processor.cache, processor.data, PartItem.from_event(item))
    merge = shaped("fanout-merge", bucket=data_bucket.name, key=key, etag=etag, version="1")
    assert merge_s3(processor.data, merge)["rows"] == {"in": 120, "ok": 119, "failed": 1}
    assert merge_s3(processor.data, merge)["status"] == "duplicate"
    assert _job_rows(deployed.table.usage(consumer="team-c")) == [("team-c", MODEL, "1", 0, 119)]
    assert jobs.status(job["job_id"], "team-c")["status"] == "succeeded"
    with pytest.raises(NotFoundError, match="no job"):
        jobs.status(job["job_id"], None)  # a caller without a consumer does not read an owned job either
