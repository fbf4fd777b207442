"""The key store failing: hanging, answering garbage, holding a corrupted record. Every answer comes within a
bound, known keys keep working, counters let requests through, and usage waits for the store to come back."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from functions.consumers import authorizer
from functions.consumers.admission import Grant, Keyring, Limits
from functions.consumers.dynamo_store import DynamoStore
from functions.consumers.keys import new_key
from functions.consumers.meter import Meter
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.usage import Usage
from functions.core.errors import StoreUnavailableError
from tests.consumers.conftest import add_key
from tests.consumers.test_deployed import authorizer_event

AWS = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{listener.getsockname()[1]}")
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    yield "hanging"
    listener.close()


class _Garbage(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html>not DynamoDB</html>"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def garbage(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{server.server_address[1]}")
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    yield "garbage"
    server.shutdown()
    server.server_close()


def test_a_table_that_hangs_times_out_and_counters_let_requests_through(hanging: str) -> None:
    store = DynamoStore("maas-keys")
    try:  # the client's own timeouts end the wait (a hang would be stopped by pytest-timeout, not passed)
        with pytest.raises(StoreUnavailableError, match="did not answer"):
            authorizer.verdict(authorizer_event({"x-api-key": new_key()[0]}), Keyring(store))
        limits = Limits(store)
        limits.admit(Grant("team-a", "abcdefgh", ("*",), daily_quota=10), "m")  # let through, not stuck
        assert limits.unavailable == 1
    finally:
        store.client.close()


def test_a_table_that_answers_garbage_refuses_keys_and_lets_counters_through(garbage: str) -> None:
    store = DynamoStore("maas-keys")
    try:
        verdict = authorizer.verdict(authorizer_event({"x-api-key": new_key()[0]}), Keyring(store))
        assert verdict["context"]["denied"] == "unauthenticated"  # no key item read: the key is not accepted
        limits = Limits(store)
        limits.admit(Grant("team-a", "abcdefgh", ("*",), rate_limit=1), "m")
        assert limits.unavailable == 1
    finally:
        store.client.close()


def test_a_corrupted_key_record_is_a_store_error_and_other_keys_still_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "keys.db")
    good, _ = add_key(store, "good")
    bad, record = add_key(store, "bad")
    store._run("UPDATE keys SET record = ? WHERE key_id = ?", ('{"key_hash": 1, "models": "abc"}', record.key_id))
    ring = Keyring(store, ttl=0)
    with pytest.raises(StoreUnavailableError, match="unreadable key record"):
        ring.authenticate(bad)
    assert ring.authenticate(good).consumer == "good"
    store._run("UPDATE keys SET record = ? WHERE key_id = ?", ("{not json", record.key_id))
    with pytest.raises(StoreUnavailableError):
        ring.authenticate(bad)


class _Flaky:
    """A store that refuses usage writes until ``up`` is set."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.up = False

    def add_usage(self, rows: list[Usage]) -> None:
        if not self.up:
            raise StoreUnavailableError("the key table cannot be reached")
        self.inner.add_usage(rows)


def test_usage_waits_for_the_store_and_is_then_written_exactly(tmp_path: Path) -> None:
    flaky = _Flaky(SqliteStore(tmp_path / "keys.db"))
    meter = Meter(flaky)  # type: ignore[arg-type]
    meter.after_post = True  # flushed by hand, as after each Lambda post
    for status in (200, 200, 429, 503):
        meter.add(Usage.answered("team-a", "m", "1", status, 2, 1.0))
        assert meter.flush() == 0
    flaky.up = True
    assert meter.flush() == 1
    [row] = flaky.inner.usage()
    assert (row.requests, row.rows, row.throttled, row.server_errors) == (4, 4, 1, 1)


class _Picky:
    """A store that refuses one consumer's rows for good and fails for another, as a real table may."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.calls = 0

    def add_usage(self, rows: list[Usage]) -> None:
        self.calls += 1
        for row in rows:
            if row.consumer == "refused":
                raise ValueError("the table can never hold this row")
            if row.consumer == "down":
                raise StoreUnavailableError("throttled")
        self.inner.add_usage(rows)


def test_a_failing_row_puts_back_only_the_rows_not_written(tmp_path: Path) -> None:
    picky = _Picky(SqliteStore(tmp_path / "keys.db"))
    meter = Meter(picky)  # type: ignore[arg-type]
    meter.after_post = True
    for consumer in ("first", "refused", "second", "down", "third"):
        meter.add(Usage.answered(consumer, "m", "1", 200, 1, 1.0))
    assert meter.flush() == 2  # first and second written, refused dropped, down and third kept
    assert meter.dropped == 1
    assert meter.flush() == 0  # still down: nothing written twice
    assert sorted((r.consumer, r.requests) for r in picky.inner.usage()) == [("first", 1), ("second", 1)]
