"""Both key stores keep the same records and count exactly under concurrency (SQLite; DynamoDB on moto)."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.consumers.keys import KeyRecord, key_hash
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.store import ConsumerStore, open_store
from functions.consumers.usage import Usage
from functions.core.errors import AlreadyExistsError, NotFoundError, StoreUnavailableError
from tests.consumers.conftest import add_key

THREADS = 12


def test_keys_are_found_by_hash_and_by_id_and_never_stored_in_clear(store: ConsumerStore) -> None:
    key, record = add_key(store, models=("digits-cnn", "cancer-mlp"), rate_limit=5.0, daily_quota=100)
    assert store.get_key(key_hash(key)) == record
    assert store.find_key(record.key_id) == record
    assert store.get_key(key_hash(key + "x")) is None
    assert store.find_key("zzzzzzzz") is None
    assert [r.key_id for r in store.list_keys()] == [record.key_id]
    assert key not in repr(store.list_keys())
    if isinstance(store, SqliteStore):
        assert key.encode() not in store.path.read_bytes()


def test_a_key_is_added_once_and_updated_in_place(store: ConsumerStore) -> None:
    _, record = add_key(store)
    with pytest.raises(AlreadyExistsError):
        store.put_key(record)
    revoked = record.revoked(1234.0)
    store.update_key(revoked)
    assert store.find_key(record.key_id) == revoked
    with pytest.raises(NotFoundError):
        store.update_key(dataclasses.replace(record, key_hash="0" * 64, key_id="qqqqqqqq"))


def test_a_limited_counter_admits_exactly_its_limit_from_many_threads(store: ConsumerStore) -> None:
    admitted: list[int] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        count = store.take("quota#team-a", "2026-12-04", 25, 2e9)
        if count is not None:
            with lock:
                admitted.append(count)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(60)))
    assert sorted(admitted) == list(range(1, 26))  # each count handed out once, none past the limit
    assert store.take("quota#team-a", "2026-12-05", 25, 2e9) == 1  # another window starts afresh
    assert store.take("quota#team-b", "2026-12-04", 0, 2e9) is None


def test_usage_added_from_many_threads_sums_exactly(store: ConsumerStore) -> None:
    def one(i: int) -> None:
        status = (200, 200, 422, 429, 503)[i % 5]
        store.add_usage([Usage.answered("team-a", "digits-cnn", "1", status, 3, 2.5, now=1796400000.0)])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(100)))
    store.add_usage([Usage.answered("team-b", "cancer-mlp", "2", 200, 1, 1.0, now=1796400000.0 + 86400)])
    [row] = store.usage(consumer="team-a")
    assert (row.requests, row.rows, row.client_errors, row.throttled, row.server_errors) == (100, 120, 20, 20, 20)
    assert row.latency_ms == pytest.approx(250.0)
    assert [r.consumer for r in store.usage()] == ["team-a", "team-b"]
    assert [r.consumer for r in store.usage(model="cancer-mlp")] == ["team-b"]
    assert [r.consumer for r in store.usage(since=row.day[:8] + "31")] == []
    assert [r.day for r in store.usage(since="2026-12-05")] == ["2026-12-05"]


def test_open_store_takes_a_file_or_a_table(tmp_path: object) -> None:
    assert open_store("dynamodb://maas-keys").uri == "dynamodb://maas-keys"
    with pytest.raises(ValueError, match="names no table"):
        open_store("dynamodb://")
    with pytest.raises(ValueError, match="SQLite file"):
        open_store("s3://bucket/keys")


def test_an_unreachable_table_is_a_store_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    table = open_store("dynamodb://maas-keys")
    with pytest.raises(StoreUnavailableError):
        table.get_key("0" * 64)
    with pytest.raises(StoreUnavailableError):
        table.add_usage([Usage("a", "m", "1", "2026-12-04", requests=1)])


def test_a_record_survives_the_round_trip_with_every_field_set(store: ConsumerStore) -> None:
    _, record = add_key(store, models=("m1",), rate_limit=0.5, daily_quota=7, expires_at=1.9e9)
    full = KeyRecord(**{**record.to_dict(), "models": ("m1",), "revoked_at": 1.8e9, "replaced_by": "abcdefgh"})
    store.update_key(full)
    assert store.find_key(record.key_id) == full
