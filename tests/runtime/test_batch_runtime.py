"""The batch and fan-out handlers under Lambda's real runtime client, against moto's S3 and SQS.

Batch: the deadline comes from the Runtime API's ``Lambda-Runtime-Deadline-Ms`` through the client's context: an
invocation that starts inside the safety margin hands every message back untouched and answers normally; the
redelivery, given time, completes them. Fan-out: split, each part and merge as the state machine invokes them
(the stored event shapes), and a malformed step through the error route, the runtime carrying on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson

from functions.core.store import LocalStore
from tests.batch.conftest import DIABETES_ROW, DataBucket, csv_bytes
from tests.batch.test_fanout_parts import select, shaped, upload
from tests.events import load_event
from tests.runtime_api import lambda_function

BATCH = "functions.batch.handler.handler"
FANOUT = "functions.batch.fanout_handler.handler"
SAFETY_MS = 20_000  # the batch functions' default margin (MAAS_BATCH_SAFETY_MS)


def batch_env(store: LocalStore, endpoint: str, tmp_path: Path) -> dict[str, str]:
    return {"MAAS_STORE": store.uri, "MAAS_S3_ENDPOINT_URL": endpoint, "MAAS_CACHE_DIR": str(tmp_path / "cache"),
            "MAAS_BATCH_SAFETY_MS": str(SAFETY_MS)}


def test_batch_honours_the_deadline_the_runtime_passes(data_bucket: DataBucket, store_copy: LocalStore,
                                                       moto_endpoint: str, tmp_path: Path) -> None:
    records = []
    for n in range(3):
        data_bucket.put(f"inputs/diabetes-mlp/runtime/day-{n}.csv", csv_bytes([DIABETES_ROW] * 50))
        records += data_bucket.receive(1)
    event = {"Records": records}
    ids = [r["messageId"] for r in records]
    with lambda_function(BATCH, tmp_path, batch_env(store_copy, moto_endpoint, tmp_path), "maas-batch") as (api, _):
        late = api.outcome(api.invoke(event, deadline_ms=int(time.time() * 1000) + SAFETY_MS // 2))
        assert late.route == "response" and late.json() == {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}
        assert data_bucket.keys("outputs/") == []  # handed back untouched
        redelivered = api.outcome(api.invoke(event, timeout_ms=120_000))
    assert redelivered.route == "response" and redelivered.json() == {"batchItemFailures": []}
    reports = [k for k in data_bucket.keys("outputs/diabetes-mlp/1/runtime/") if k.endswith("report.json")]
    assert len(reports) == 3
    assert all(json.loads(data_bucket.get(k))["rows"] == {"in": 50, "ok": 50, "failed": 0} for k in reports)


def test_fanout_steps_and_a_malformed_step(data_bucket: DataBucket, store_copy: LocalStore, moto_endpoint: str,
                                           tmp_path: Path) -> None:
    key = "inputs/diabetes-mlp/runtime/big.csv"
    body = csv_bytes([DIABETES_ROW] * 600)
    etag = upload(data_bucket, key, body)
    execution = shaped("fanout-execution", bucket=data_bucket.name, key=key, etag=etag, version="1",
                       part_bytes=len(body) // 3)
    env = batch_env(store_copy, moto_endpoint, tmp_path)
    with lambda_function(FANOUT, tmp_path, env, "maas-fanout") as (api, _):
        split = api.outcome(api.invoke(shaped("fanout-split", **{k: v for k, v in execution.items()
                                                                 if k in load_event("fanout-split")})))
        assert split.route == "response", split.body
        entries = orjson.loads(data_bucket.get(split.json()["ranges_key"]))
        assert split.json()["parts"] == len(entries) >= 3
        parts = [api.invoke(select(load_event("fanout-item-selector"), execution, entry)) for entry in entries]
        bad = api.outcome(api.invoke({"mode": "shuffle", "bucket": data_bucket.name}))
        merged = api.outcome(api.invoke(shaped("fanout-merge", bucket=data_bucket.name, key=key, etag=etag,
                                               version="1")))
        answers = [api.outcome(part) for part in parts]
    assert [a.route for a in answers] == ["response"] * len(entries)
    assert bad.route == "error" and bad.json()["errorType"] == "ValueError"
    assert "unknown mode 'shuffle'" in bad.json()["errorMessage"]
    assert merged.route == "response" and merged.json()["status"] == "ok"
    assert merged.json()["rows"] == {"in": 600, "ok": 600, "failed": 0}
