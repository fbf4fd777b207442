"""Stale-while-revalidate for values read from the store (alias targets, the model listing).

A value is fresh for a TTL. Once it has expired it still answers at once, and the first lookup that finds it
expired starts one background refresh for its key (single flight: never two reads of one key at a time).
While the store keeps failing, the next refresh waits ``backoff(failures)``: doubling from one second up to a
cap of one TTL, so that once the store is back a change is seen within one TTL, as when it is healthy; the
first success makes the value fresh again for a full TTL. Only a caller with no known value waits for the
store (``get``), and callers waiting for the same key share one read.

A refresh that fails with a transient error (``StoreUnavailableError``: unreachable, timed out) keeps the
known value. Any other failure (the record was deleted or is unreadable) drops it: the next caller reads the
store itself and gets that error, as if the value had never been known.

Refreshes run on a daemon thread started by the lookup (``start`` is injectable: the unit tests run them by
hand, with an injected clock). A lookup never waits for the store, and holds the internal lock only for a few
dictionary operations, never across a store call, so it may run on an event loop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from functions.core.errors import StoreUnavailableError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BACKOFF_BASE_SECONDS = 1.0
MIN_CAP_SECONDS = 0.1
"""The backoff cap when the TTL is (nearly) zero: a store that refuses at once is not retried in a busy loop."""


def backoff(failures: int, ttl: float) -> float:
    """Seconds before the next refresh after ``failures`` (>= 1) failures in a row: 1, 2, 4, ... up to one TTL."""
    cap = max(ttl, MIN_CAP_SECONDS)
    return min(cap, min(BACKOFF_BASE_SECONDS, cap) * 2.0 ** min(failures - 1, 30))


def start_daemon(work: Callable[[], None]) -> None:
    """Run ``work`` on a new daemon thread (it never keeps a process from exiting)."""
    threading.Thread(target=work, name="maas-refresh", daemon=True).start()


@dataclass(frozen=True)
class Known(Generic[V]):
    """A known value as a lookup found it."""

    value: V
    stale: bool = False
    """Its TTL had run out (a refresh is running, backing off or about to start)."""
    failures: int = 0
    """Refreshes that failed in a row since the value was last read (0: the store has not failed it)."""
    error: str | None = None
    """Why the last refresh failed, when it did."""


@dataclass(frozen=True)
class RefreshFailure(Generic[K]):
    """A background refresh that failed: kept the value and backs off (``retry_in``), or dropped it (None)."""

    key: K
    error: BaseException
    failures: int
    retry_in: float | None


@dataclass
class _Entry(Generic[V]):
    value: V
    fresh_until: float
    failures: int = 0
    retry_at: float = 0.0
    error: str | None = None


class Revalidating(Generic[K, V]):
    """Values by key, read with ``load`` and kept for ``ttl`` seconds; thread-safe."""

    def __init__(self, load: Callable[[K], V], ttl: float, *, clock: Callable[[], float] = time.monotonic,
                 start: Callable[[Callable[[], None]], None] = start_daemon,
                 on_failure: Callable[[RefreshFailure[K]], None] | None = None,
                 on_recovery: Callable[[K, int], None] | None = None) -> None:
        self._load = load
        self.ttl = ttl
        self._clock = clock
        self._start = start
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._entries: dict[K, _Entry[V]] = {}
        self._flights: dict[K, Future[V]] = {}
        self._loading: Counter[K] = Counter()
        self._generation = 0
        self.refreshes = 0
        """Background refreshes started."""
        self.refresh_failures = 0
        """Background refreshes that failed."""
        self.peak_reads = 0
        """The most store reads of one key ever running at once (single flight: 1)."""

    def lookup(self, key: K) -> Known[V] | None:
        """The known value, or None; never waits for the store. An expired value starts a background refresh
        unless one is running or the key is backing off."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            now = self._clock()
            known = Known(entry.value, entry.fresh_until <= now, entry.failures, entry.error)
            if not known.stale or key in self._flights or entry.retry_at > now:
                return known
            flight: Future[V] = Future()
            self._flights[key] = flight
            self.refreshes += 1
            generation = self._generation
        try:
            self._start(lambda: self._read(key, flight, generation, background=True))
        except RuntimeError:  # no thread could be started: the next lookup tries again
            with self._lock:
                self._flights.pop(key, None)
        return known

    def get(self, key: K) -> Known[V]:
        """The known value at once (as ``lookup``), else the store's: waits for one read of the key, shared
        with every other caller waiting for it. Raises what the read raised."""
        known = self.lookup(key)
        if known is not None:
            return known
        with self._lock:
            flight = self._flights.get(key)
            lead = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
            generation = self._generation
        if lead:
            self._read(key, flight, generation, background=False)
        return Known(flight.result())

    def forget(self) -> None:
        """Drop every known value; reads already running are not stored (the next caller reads again)."""
        with self._lock:
            self._entries.clear()
            self._flights.clear()
            self._generation += 1

    def settle(self, timeout: float) -> bool:
        """Wait until no read is running or about to (tests and benchmarks); False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._loading and not self._flights, timeout)

    def _read(self, key: K, flight: Future[V], generation: int, background: bool) -> None:
        with self._lock:
            self._loading[key] += 1
            self.peak_reads = max(self.peak_reads, self._loading[key])
        try:
            value = self._load(key)
        except BaseException as exc:  # handed to every waiter through the future; a refresh just records it
            failure = self._failed(key, flight, generation, exc, background)
            flight.set_exception(exc)
            if failure is not None and self._on_failure is not None:
                self._on_failure(failure)
        else:
            recovered = self._succeeded(key, flight, generation, value)
            flight.set_result(value)
            if recovered and self._on_recovery is not None:
                self._on_recovery(key, recovered)
        finally:
            with self._idle:
                self._loading[key] -= 1
                if not self._loading[key]:
                    del self._loading[key]
                self._idle.notify_all()

    def _succeeded(self, key: K, flight: Future[V], generation: int, value: V) -> int:
        """Store the value; returns the failures in a row it ends (0: none)."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if generation != self._generation:
                return 0
            previous = self._entries.get(key)
            self._entries[key] = _Entry(value, self._clock() + self.ttl)
            return previous.failures if previous is not None else 0

    def _failed(self, key: K, flight: Future[V], generation: int, exc: BaseException,
                background: bool) -> RefreshFailure[K] | None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            entry = self._entries.get(key)
            if not background or generation != self._generation or entry is None:
                return None  # a first read: its callers get the error, nothing was known
            self.refresh_failures += 1
            if not isinstance(exc, StoreUnavailableError):
                del self._entries[key]
                return RefreshFailure(key, exc, entry.failures + 1, None)
            entry.failures += 1
            delay = backoff(entry.failures, self.ttl)
            entry.retry_at = self._clock() + delay
            entry.error = getattr(exc, "message", None) or type(exc).__name__
            return RefreshFailure(key, exc, entry.failures, delay)
