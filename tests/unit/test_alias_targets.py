"""Alias targets and the listing in the model cache: stale-while-revalidate over a real local store that can be
made unreachable; refreshes run by hand with an injected clock, so nothing here depends on timing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from functions.core.catalog import alias_key
from functions.core.errors import ModelUnavailableError, NotFoundError, StoreUnavailableError
from functions.core.model_cache import STALE_LOG_SECONDS, ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore

TTL = 30.0


class FlakyStore(LocalStore):
    """A local store whose reads fail as an unreachable S3 endpoint's would while ``down`` is set."""

    down = False

    def get_bytes(self, key: str) -> bytes:
        if self.down:
            raise StoreUnavailableError("store unreachable (EndpointConnectionError)")
        return super().get_bytes(key)

    def list_children(self, prefix: str) -> list[str]:
        if self.down:
            raise StoreUnavailableError("store unreachable (EndpointConnectionError)")
        return super().list_children(prefix)


class Rig:
    def __init__(self, root: Path) -> None:
        self.store = FlakyStore(root)
        self.now = 1000.0
        self.pending: list[Callable[[], None]] = []
        for version in ("1", "2"):
            self.store.put_bytes(f"models/m/versions/{version}/manifest.json", b"{}")
        self.point("1")
        settings = Settings(store=self.store.uri, alias_ttl_seconds=TTL)
        self.cache = ModelCache(self.store, settings, clock=lambda: self.now, start=self.pending.append)

    def point(self, version: str, alias: str = "prod") -> None:
        self.store.put_bytes(alias_key("m", alias),
                             orjson.dumps({"version": version, "previous": [], "updated_at": "t"}))

    def refresh(self) -> None:
        while self.pending:
            self.pending.pop(0)()


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "store")


def _records(out: str, metric: str) -> list[dict[str, Any]]:
    return [r for r in map(orjson.loads, out.splitlines()) if metric in r]


def test_stale_answers_are_counted_once_the_store_fails_a_refresh_and_logged_in_batches(
        rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    assert rig.cache.resolve("m", "prod") == "1"
    rig.store.down = True
    rig.now += TTL
    assert rig.cache.resolve("m", "prod") == "1"
    assert rig.cache.stale_answers == 0  # expired, but the store has not failed yet: a revalidation
    rig.refresh()
    answers = [rig.cache.resolve("m", "prod") for _ in range(10)]
    assert answers == ["1"] * 10 and rig.cache.stale_answers == 10
    out = capsys.readouterr().out
    assert [r["StaleAliasTargets"] for r in _records(out, "StaleAliasTargets")] == [1]  # the first, at once
    failures = _records(out, "StoreRefreshFailures")
    assert [(r["model"], r["alias"], r["failures"], r["retry_in_seconds"]) for r in failures] == [("m", "prod", 1, 1.0)]
    assert failures[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    rig.now += STALE_LOG_SECONDS
    rig.cache.resolve("m", "prod")
    rig.refresh()  # the backoff is over: a second refresh, failing too
    out = capsys.readouterr().out
    stale = _records(out, "StaleAliasTargets")
    assert [r["StaleAliasTargets"] for r in stale] == [10]  # the nine others and this one, in one line
    assert stale[0]["version"] == "1" and "EndpointConnectionError" in stale[0]["reason"]
    assert _records(out, "StoreRefreshFailures")[0]["failures"] == 2

    rig.store.down = False
    rig.point("2")
    rig.now += 2.0  # the second backoff
    rig.cache.resolve("m", "prod")
    rig.refresh()
    assert rig.cache.resolve("m", "prod") == "2"
    flushed = _records(capsys.readouterr().out, "StaleAliasTargets")
    assert [r["StaleAliasTargets"] for r in flushed] == [1]  # the answer not logged yet, on recovery
    assert rig.cache.stale_answers == 12


def test_a_deleted_or_broken_alias_is_an_error_again_after_its_refresh(rig: Rig) -> None:
    rig.point("2", "canary")
    assert rig.cache.resolve("m", "canary") == "2"
    (rig.store.root / alias_key("m", "canary")).unlink()
    rig.now += TTL
    assert rig.cache.resolve("m", "canary") == "2"
    rig.refresh()
    with pytest.raises(NotFoundError):
        rig.cache.resolve("m", "canary")
    assert rig.cache.resolve("m", "prod") == "1"
    rig.store.put_bytes(alias_key("m", "prod"), b"{not json")
    rig.now += TTL
    rig.cache.resolve("m", "prod")
    rig.refresh()
    with pytest.raises(ModelUnavailableError):
        rig.cache.resolve("m", "prod")


def test_nothing_known_waits_for_the_store_and_forget_drops_what_is_known(rig: Rig) -> None:
    rig.store.down = True
    with pytest.raises(StoreUnavailableError):
        rig.cache.resolve("m", "prod")
    with pytest.raises(StoreUnavailableError):
        rig.cache.listing()
    rig.store.down = False
    assert rig.cache.resolve("m", "prod") == "1"
    assert rig.cache.listing().value == [{"name": "m", "versions": ["1", "2"], "aliases": {"prod": "1"}}]
    rig.point("2")
    rig.cache.forget_aliases()
    assert rig.cache.peek_listing() is None
    assert rig.cache.resolve("m", "prod") == "2"


def test_the_listing_answers_stale_while_the_store_is_down(rig: Rig) -> None:
    listed = rig.cache.listing().value
    rig.store.down = True
    rig.now += TTL
    known = rig.cache.peek_listing()
    assert known is not None and (known.value, known.stale) == (listed, True)
    rig.refresh()
    known = rig.cache.peek_listing()
    assert known is not None and known.stale and known.failures == 1
    rig.store.down = False
    rig.now += TTL  # the backoff never outlasts one TTL
    rig.cache.peek_listing()
    rig.refresh()
    known = rig.cache.peek_listing()
    assert known is not None and not known.stale
