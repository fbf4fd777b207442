"""Fixtures for consumers: both key stores (a SQLite file; a DynamoDB table on moto's server over HTTP), and a
helper that adds a key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.consumers.dynamo_store import DynamoStore
from functions.consumers.keys import KeyRecord, key_hash, new_key
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.store import ConsumerStore
from tests.consumers.dynamo import SerialMotoServer, make_table


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
