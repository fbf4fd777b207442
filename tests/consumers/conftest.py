"""Fixtures for consumers: both key stores (a SQLite file; a DynamoDB table on moto's server over HTTP), and a
helper that adds a key."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from functions.consumers.dynamo_store import KEY_INDEX, DynamoStore
from functions.consumers.keys import KeyRecord, key_hash, new_key
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.store import ConsumerStore


def make_table(endpoint: str, name: str | None = None) -> str:
    """A fresh table of the deployed schema on the moto server (partition pk, sort sk, the key_id index)."""
    name = name or f"maas-keys-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "key_id")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": KEY_INDEX, "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    return name


class SerialMotoServer(ThreadedMotoServer):
    """moto's server answering one request at a time. DynamoDB applies the updates of one item one after another
    (``ADD`` is atomic); moto's threaded server does not (its ``update_item`` reads and writes without a lock), so
    counts from concurrent clients would be moto's race, not the code's. The clients still send from many
    threads over many connections."""

    def _server_entry(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(self._ip_address, self._port, app, False, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@pytest.fixture(scope="session")
def dynamo_endpoint() -> Iterator[str]:
    server = SerialMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def dynamo_env(dynamo_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3 pointed at moto for DynamoDB (the standard ``AWS_ENDPOINT_URL_DYNAMODB``); returns the endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamo_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return dynamo_endpoint


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConsumerStore]:
    """Each store kind in turn."""
    if request.param == "sqlite":
        yield SqliteStore(tmp_path / "keys.db")
        return
    endpoint = request.getfixturevalue("dynamo_env")
    yield DynamoStore(make_table(endpoint))


def add_key(store: ConsumerStore, consumer: str = "team-a", **fields: Any) -> tuple[str, KeyRecord]:
    """A new key stored with ``fields`` (models, rate_limit, daily_quota, expires_at, ...); the key and its record."""
    key, key_id = new_key()
    record = KeyRecord(key_hash(key), key_id, consumer, created_at=time.time(), **fields)
    store.put_key(record)
    return key, record
