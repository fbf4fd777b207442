"""Who may ask, for which model, how often: key lookups (cached), model scope, rate limits and daily quotas.

``Keyring.authenticate`` turns a key into a ``Grant`` (or raises 401/403); ``Limits.admit`` checks a grant against
the model asked for, its rate limit and its daily quota (403/429). In ``maas serve`` both run in the process; in
Lambda the authorizer authenticates (its answer cached by API Gateway) and the API function admits each request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.consumers.keys import ALL_MODELS, KeyRecord, key_hash, key_id_of, shown_id
from functions.consumers.store import ConsumerStore
from functions.consumers.usage import day_of
from functions.core.errors import (
    ForbiddenError,
    LimitExceededError,
    MaasError,
    StoreUnavailableError,
    UnauthenticatedError,
)
from functions.core.telemetry import log

MISSING = "no API key: send it in the x-api-key header (or Authorization: Bearer KEY)"
UNKNOWN = "the API key is not valid for this service"
MAX_CACHED = 10_000
DEFAULT_CACHE_SECONDS = 30.0
NEGATIVE_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class Grant:
    """What an authenticated key allows."""

    consumer: str
    key_id: str
    models: tuple[str, ...]
    rate_limit: float | None = None
    daily_quota: int | None = None

    @classmethod
    def of(cls, record: KeyRecord) -> Grant:
        return cls(record.consumer, record.key_id, record.models, record.rate_limit, record.daily_quota)

    @property
    def covers_all(self) -> bool:
        return self.models == (ALL_MODELS,)

    def covers(self, model: str) -> bool:
        return self.covers_all or model in self.models

    def to_context(self) -> dict[str, Any]:
        """The authorizer's context for the API function (strings and numbers only, as API Gateway passes them)."""
        return {"consumer": self.consumer, "keyId": self.key_id, "models": ",".join(self.models),
                "rateLimit": "" if self.rate_limit is None else self.rate_limit,
                "dailyQuota": "" if self.daily_quota is None else self.daily_quota, "denied": "", "reason": ""}

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Grant:
        """The grant the authorizer passed; its 401/403 when it refused the key (``denied``)."""
        denied = str(context.get("denied") or "")
        if denied:
            reason = str(context.get("reason") or UNKNOWN)
            raise ForbiddenError(reason) if denied == "forbidden" else UnauthenticatedError(reason)
        consumer = context.get("consumer")
        if not isinstance(consumer, str) or not consumer:
            raise UnauthenticatedError(MISSING)
        rate, quota = context.get("rateLimit"), context.get("dailyQuota")
        return cls(consumer, str(context.get("keyId") or ""),
                   tuple(m for m in str(context.get("models") or "").split(",") if m),
                   float(rate) if rate not in (None, "") else None, int(quota) if quota not in (None, "") else None)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: ``x-api-key``, else ``Authorization: Bearer KEY`` (header names lower-case)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Keyring:
    """Key lookups with a TTL: a revoked or expired key is refused at most ``ttl`` seconds after the change.

    A known key keeps its last answer while the store fails (logged); an unknown one waits for the store and
    gets its error (503). Unknown keys are remembered for at most five seconds, so a new key works at once
    whatever the TTL.
    """

    def __init__(self, store: ConsumerStore, ttl: float = DEFAULT_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self.wall_clock = wall_clock
        self.lookups = 0
        """Store reads made (the rest were answered from the cache)."""
        self._cache: dict[str, tuple[KeyRecord | None, float]] = {}
        self._lock = threading.Lock()

    def authenticate(self, key: str | None) -> Grant:
        """The grant of a live key; UnauthenticatedError (401) for no key or an unknown one, ForbiddenError (403)
        for a revoked or expired one."""
        if not key:
            raise UnauthenticatedError(MISSING)
        if key_id_of(key) is None:
            raise UnauthenticatedError(UNKNOWN)
        record = self.record(key_hash(key))
        if record is None:
            raise UnauthenticatedError(UNKNOWN)
        state = record.state(self.wall_clock())
        if state == "revoked":
            raise ForbiddenError(f"API key {shown_id(record.key_id)} was revoked")
        if state == "expired":
            assert record.expires_at is not None
            when = datetime.fromtimestamp(record.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise ForbiddenError(f"API key {shown_id(record.key_id)} expired at {when}")
        return Grant.of(record)

    def record(self, hashed: str) -> KeyRecord | None:
        """The stored record for a key hash, from the cache while fresh."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(hashed)
        if cached is not None:
            record, at = cached
            if now - at < (self.ttl if record is not None else min(self.ttl, NEGATIVE_TTL_SECONDS)):
                return record
        try:
            self.lookups += 1
            record = self.store.get_key(hashed)
        except StoreUnavailableError as exc:
            if cached is not None and cached[0] is not None:
                log("WARNING", "key store unavailable; using the last known key record", error=exc.message,
                    key_id=cached[0].key_id)
                return cached[0]
            raise
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[hashed] = (record, now)
        return record


def rate_window(rate: float) -> tuple[int, int]:
    """The fixed window (whole seconds, at most a minute) and the requests it admits for a rate in requests per
    second: the shortest window that holds a whole number of requests (2.5/s: 5 per 2 s; 0.1/s: 1 per 10 s),
    else one second (or the time one request takes at the rate) rounded down."""
    for window in range(1, 61):
        count = rate * window
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return window, round(count)
    window = 1 if rate >= 1 else math.ceil(1 / rate)
    return window, max(1, int(rate * window))


class Limits:
    """Model scope, rate limit (per one-second window, or longer below one request a second) and daily quota
    (per UTC day), counted per consumer in the store. A store that fails lets requests through (logged): an
    outage of the counters never stops predictions."""

    def __init__(self, store: ConsumerStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.unavailable = 0
        """Checks skipped because the store failed."""

    def admit(self, grant: Grant, model: str | None) -> None:
        """Raise ForbiddenError (model not covered) or LimitExceededError (429, with Retry-After) else count one."""
        if model is not None and not grant.covers(model):
            raise ForbiddenError(f"API key {shown_id(grant.key_id)} does not cover model {model!r}")
        if grant.rate_limit is None and grant.daily_quota is None:
            return
        now = self.clock()
        try:
            if grant.rate_limit is not None:
                self._rate(grant, now)
            if grant.daily_quota is not None:
                self._quota(grant, now)
        except MaasError as exc:
            if not isinstance(exc, StoreUnavailableError):
                raise
            self.unavailable += 1
            log("WARNING", "limit counters unavailable; request let through", error=exc.message,
                consumer=grant.consumer)

    def _rate(self, grant: Grant, now: float) -> None:
        assert grant.rate_limit is not None
        window, limit = rate_window(grant.rate_limit)
        start = int(now) // window * window
        if self.store.take(f"rate#{grant.consumer}", str(start), limit, start + window + 60) is None:
            raise LimitExceededError(
                f"consumer {grant.consumer!r} is over its rate limit of {grant.rate_limit:g} "
                f"request{'' if grant.rate_limit == 1 else 's'} per second",
                math.ceil(start + window - now), code="rate_limited")

    def _quota(self, grant: Grant, now: float) -> None:
        assert grant.daily_quota is not None
        day = day_of(now)
        midnight = (datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)).timestamp()
        if self.store.take(f"quota#{grant.consumer}", day, grant.daily_quota, midnight + 86400) is None:
            raise LimitExceededError(
                f"consumer {grant.consumer!r} has used its daily quota of {grant.daily_quota} requests "
                "(it renews at 00:00 UTC)", math.ceil(midnight - now), code="quota_exceeded")
