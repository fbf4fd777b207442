"""Key lookups (cached, revocation seen within the TTL), scopes, rate limits and daily quotas."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from functions.consumers.admission import Grant, Keyring, Limits, key_from_headers
from functions.consumers.keys import key_id_of, new_key, parse_key_id, parse_models
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.store import ConsumerStore
from functions.core.errors import ForbiddenError, LimitExceededError, StoreUnavailableError, UnauthenticatedError
from tests.consumers.conftest import add_key

NOON = 1796385600.0  # 2026-12-04 12:00:00 UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingStore:
    """A store whose every call fails, as an unreachable table does."""

    def __getattr__(self, name: str) -> object:
        def fail(*args: object, **kwargs: object) -> None:
            raise StoreUnavailableError("the key table cannot be reached")

        return fail


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "keys.db")


def test_keys_are_high_entropy_and_named_by_their_public_id() -> None:
    key, key_id = new_key()
    assert key.startswith(f"maas_{key_id}_") and len(key) == 5 + 8 + 1 + 43
    assert key_id_of(key) == key_id and key_id_of(key[:-1]) is None and key_id_of("Bearer x") is None
    assert parse_key_id(f"maas_{key_id}") == parse_key_id(key_id) == key_id
    assert len({new_key()[0] for _ in range(200)}) == 200
    with pytest.raises(ValueError):
        parse_key_id("maas_UPPER123")
    assert parse_models("a, b,a") == ("a", "b") and parse_models("a,*") == ("*",)


def test_the_key_comes_from_x_api_key_or_a_bearer_token() -> None:
    assert key_from_headers({"x-api-key": " k1 "}) == "k1"
    assert key_from_headers({"authorization": "Bearer k2"}) == "k2"
    assert key_from_headers({"authorization": "Basic k3"}) is None
    assert key_from_headers({}) is None


def test_missing_unknown_revoked_and_expired_keys_are_refused(sqlite: SqliteStore) -> None:
    ring = Keyring(sqlite, ttl=0)
    key, record = add_key(sqlite, models=("digits-cnn",))
    assert ring.authenticate(key) == Grant("team-a", record.key_id, ("digits-cnn",))
    with pytest.raises(UnauthenticatedError, match="no API key"):
        ring.authenticate(None)
    lookups = ring.lookups
    with pytest.raises(UnauthenticatedError, match="not valid"):
        ring.authenticate("not-a-key")
    assert ring.lookups == lookups  # nothing shaped unlike a key reaches the store
    with pytest.raises(UnauthenticatedError, match="not valid"):
        ring.authenticate(new_key()[0])
    sqlite.update_key(record.revoked(NOON - 10))
    with pytest.raises(ForbiddenError, match=f"maas_{record.key_id} was revoked"):
        ring.authenticate(key)
    old, _ = add_key(sqlite, expires_at=NOON - 1)
    with pytest.raises(ForbiddenError, match="expired at"):
        Keyring(sqlite, ttl=0, wall_clock=lambda: NOON).authenticate(old)


def test_a_cached_key_is_honoured_until_its_ttl_then_its_revocation_applies(sqlite: SqliteStore) -> None:
    clock = Clock(100.0)
    ring = Keyring(sqlite, ttl=30, clock=clock)
    key, record = add_key(sqlite)
    ring.authenticate(key)
    sqlite.update_key(record.revoked(1.0))
    clock.now += 29.9
    assert ring.authenticate(key).consumer == "team-a"  # the cached answer, as API Gateway's cache would give
    clock.now += 0.2
    with pytest.raises(ForbiddenError, match="revoked"):
        ring.authenticate(key)
    assert ring.lookups == 2


def test_a_new_key_is_known_within_seconds_whatever_the_ttl(sqlite: SqliteStore) -> None:
    clock = Clock(100.0)
    ring = Keyring(sqlite, ttl=3600, clock=clock)
    key, key_id = new_key()
    with pytest.raises(UnauthenticatedError):
        ring.authenticate(key)
    from functions.consumers.keys import KeyRecord, key_hash

    sqlite.put_key(KeyRecord(key_hash(key), key_id, "late"))
    clock.now += 5.0
    assert ring.authenticate(key).consumer == "late"


def test_a_failing_store_keeps_known_keys_and_refuses_unknown_ones(sqlite: SqliteStore) -> None:
    clock = Clock(100.0)
    key, _ = add_key(sqlite)
    ring = Keyring(sqlite, ttl=1, clock=clock)
    ring.authenticate(key)
    ring.store = FailingStore()  # type: ignore[assignment]
    clock.now += 10
    assert ring.authenticate(key).consumer == "team-a"
    with pytest.raises(StoreUnavailableError):
        ring.authenticate(new_key()[0])


def test_scope_refuses_other_models(store: ConsumerStore) -> None:
    limits = Limits(store)
    grant = Grant("team-a", "abcdefgh", ("digits-cnn",))
    limits.admit(grant, "digits-cnn")
    limits.admit(grant, None)  # a listing names no model
    with pytest.raises(ForbiddenError, match="does not cover model 'cancer-mlp'"):
        limits.admit(grant, "cancer-mlp")
    limits.admit(dataclasses.replace(grant, models=("*",)), "cancer-mlp")


def test_a_rate_limit_admits_its_rate_per_window_and_says_when_to_retry(store: ConsumerStore) -> None:
    clock = Clock(NOON + 0.25)
    limits = Limits(store, clock=clock)
    grant = Grant("team-a", "abcdefgh", ("*",), rate_limit=3)
    for _ in range(3):
        limits.admit(grant, "m")
    with pytest.raises(LimitExceededError) as refused:
        limits.admit(grant, "m")
    assert (refused.value.code, refused.value.retry_after) == ("rate_limited", 1)
    clock.now += 1.0
    limits.admit(grant, "m")  # the next second
    slow = Grant("team-b", "bbbbbbbb", ("*",), rate_limit=0.1)  # one request per 10 s window
    limits.admit(slow, "m")
    with pytest.raises(LimitExceededError) as refused:
        limits.admit(slow, "m")
    assert 1 <= refused.value.retry_after <= 10


def test_a_daily_quota_resets_at_midnight_utc(store: ConsumerStore) -> None:
    clock = Clock(NOON)
    limits = Limits(store, clock=clock)
    grant = Grant("team-a", "abcdefgh", ("*",), daily_quota=2)
    limits.admit(grant, "m")
    limits.admit(grant, "m")
    with pytest.raises(LimitExceededError) as refused:
        limits.admit(grant, "m")
    assert refused.value.code == "quota_exceeded" and refused.value.retry_after == 12 * 3600
    clock.now += 12 * 3600
    limits.admit(grant, "m")


def test_counters_that_fail_let_requests_through() -> None:
    limits = Limits(FailingStore())  # type: ignore[arg-type]
    limits.admit(Grant("team-a", "abcdefgh", ("*",), rate_limit=1, daily_quota=1), "m")
    assert limits.unavailable == 1
    with pytest.raises(ForbiddenError):  # the scope needs no store and still holds
        limits.admit(Grant("team-a", "abcdefgh", ("other",), daily_quota=1), "m")


def test_the_authorizer_context_round_trips_a_grant() -> None:
    grant = Grant("team-a", "abcdefgh", ("m1", "m2"), rate_limit=2.5, daily_quota=10)
    assert Grant.from_context(grant.to_context()) == grant
    unlimited = Grant("team-b", "bbbbbbbb", ("*",))
    assert Grant.from_context(unlimited.to_context()) == unlimited
    with pytest.raises(ForbiddenError, match="revoked"):
        Grant.from_context({"denied": "forbidden", "reason": "API key maas_abcdefgh was revoked"})
    with pytest.raises(UnauthenticatedError):
        Grant.from_context({})


@pytest.mark.parametrize(("rate", "window"), [(1, (1, 1)), (5, (1, 5)), (2.5, (2, 5)), (0.1, (10, 1)),
                                              (0.5, (2, 1)), (1 / 3, (3, 1)), (0.01, (100, 1)), (1.37, (1, 1))])
def test_a_rate_becomes_the_shortest_window_holding_whole_requests(rate: float, window: tuple[int, int]) -> None:
    from functions.consumers.admission import rate_window

    assert rate_window(rate) == window


def test_a_whole_key_names_its_id_and_a_bad_one_is_never_echoed() -> None:
    key, key_id = new_key()
    assert parse_key_id(key) == key_id  # revoking a leaked key by pasting it works
    with pytest.raises(ValueError) as refused:
        parse_key_id(key[:-2] + "!!")
    assert key[14:-2] not in str(refused.value) and "maas_" + key_id in str(refused.value)
