"""Stale-while-revalidate (functions/core/revalidate.py): injected clock, refreshes run by hand, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from functions.core.errors import IntegrityError, StoreTimeoutError, StoreUnavailableError
from functions.core.revalidate import RefreshFailure, Revalidating, backoff

TTL = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """What ``load`` reads: a value per key, or an error to raise; counts reads."""

    def __init__(self) -> None:
        self.values = {"a": "1"}
        self.error: BaseException | None = None
        self.reads = 0

    def load(self, key: str) -> str:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.values[key]


class Rig:
    def __init__(self) -> None:
        self.clock = Clock()
        self.store = Store()
        self.pending: list[Callable[[], None]] = []
        self.failures: list[RefreshFailure[str]] = []
        self.recoveries: list[tuple[str, int]] = []
        self.values: Revalidating[str, str] = Revalidating(
            self.store.load, TTL, clock=self.clock, start=self.pending.append, on_failure=self.failures.append,
            on_recovery=lambda key, failures: self.recoveries.append((key, failures)))

    def run_refreshes(self) -> int:
        """Run the background refreshes started so far, as their threads would."""
        ran = len(self.pending)
        while self.pending:
            self.pending.pop(0)()
        return ran


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_backoff_doubles_from_one_second_up_to_one_ttl() -> None:
    assert [backoff(n, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff(1, 0.5) == 0.5 and backoff(5, 0.5) == 0.5
    assert backoff(3, 0.0) == 0.1  # a zero TTL still does not retry a refusing store in a busy loop


def test_nothing_known_reads_the_store_and_keeps_the_value_fresh_for_the_ttl(rig: Rig) -> None:
    assert rig.values.lookup("a") is None
    assert rig.values.get("a").value == "1" and rig.store.reads == 1
    rig.clock.now += TTL - 0.001
    known = rig.values.get("a")
    assert (known.value, known.stale, rig.store.reads, rig.pending) == ("1", False, 1, [])


def test_an_expired_value_answers_at_once_and_starts_one_refresh(rig: Rig) -> None:
    rig.values.get("a")
    rig.store.values["a"] = "2"
    rig.clock.now += TTL
    answers = [rig.values.get("a") for _ in range(5)] + [rig.values.lookup("a") for _ in range(5)]
    assert all(k is not None and (k.value, k.stale) == ("1", True) for k in answers)
    assert rig.store.reads == 1  # nobody waited: the refresh has not run yet
    assert rig.run_refreshes() == 1 and rig.values.refreshes == 1  # single flight
    known = rig.values.get("a")
    assert (known.value, known.stale) == ("2", False)


def test_a_failing_store_keeps_the_value_and_backs_off_exponentially_up_to_the_ttl(rig: Rig) -> None:
    rig.values.get("a")
    rig.store.error = StoreTimeoutError("the model store did not answer within 20 s")
    rig.clock.now += TTL
    delays = []
    for _ in range(7):
        known = rig.values.get("a")
        assert (known.value, known.stale) == ("1", True)
        assert rig.run_refreshes() == 1
        delays.append(rig.failures[-1].retry_in)
        assert delays[-1] is not None
        rig.clock.now += delays[-1] - 0.001
        rig.values.get("a")
        assert rig.pending == []  # backing off: no refresh before the delay
        rig.clock.now += 0.001
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    known = rig.values.get("a")
    assert (known.failures, known.error) == (7, "the model store did not answer within 20 s")
    assert rig.values.refresh_failures == 7 and rig.values.peak_reads == 1


def test_the_first_success_resumes_the_ttl_and_reports_the_recovery(rig: Rig) -> None:
    rig.values.get("a")
    rig.store.error = StoreUnavailableError("refused")
    rig.clock.now += TTL
    rig.values.get("a")
    rig.run_refreshes()
    rig.store.error = None
    rig.store.values["a"] = "2"
    rig.clock.now += 1.0  # the first backoff
    assert rig.values.get("a").value == "1"
    rig.run_refreshes()
    assert rig.recoveries == [("a", 1)]
    rig.clock.now += TTL - 0.001
    known = rig.values.get("a")
    assert (known.value, known.stale, known.failures) == ("2", False, 0) and rig.pending == []
    rig.clock.now += 0.001
    assert rig.values.get("a").stale and len(rig.pending) == 1  # a full TTL, then the normal refresh


def test_a_definite_error_drops_the_value_so_the_next_caller_gets_it(rig: Rig) -> None:
    rig.values.get("a")
    rig.store.error = IntegrityError("alias 'prod' of model 'a' is unusable")
    rig.clock.now += TTL
    assert rig.values.get("a").value == "1"
    rig.run_refreshes()
    assert rig.failures[-1].retry_in is None and rig.values.lookup("a") is None
    with pytest.raises(IntegrityError):
        rig.values.get("a")


def test_a_first_read_that_fails_raises_and_remembers_nothing(rig: Rig) -> None:
    rig.store.error = StoreUnavailableError("refused")
    with pytest.raises(StoreUnavailableError):
        rig.values.get("a")
    assert rig.values.lookup("a") is None and rig.failures == []  # answered as an error, not a refresh failure
    rig.store.error = None
    assert rig.values.get("a").value == "1"


def test_forget_drops_values_and_ignores_reads_already_running(rig: Rig) -> None:
    rig.values.get("a")
    rig.store.values["a"] = "2"
    rig.clock.now += TTL
    rig.values.lookup("a")  # a refresh starts (not run yet)
    rig.values.forget()
    rig.store.values["a"] = "3"
    rig.run_refreshes()  # reads "3" for the old generation: not stored
    assert rig.values.lookup("a") is None
    assert rig.values.get("a").value == "3"


def test_callers_without_a_value_share_one_read() -> None:
    started, release = threading.Event(), threading.Event()
    reads = []

    def load(key: str) -> str:
        reads.append(key)
        started.set()
        release.wait(30)
        return "1"

    values: Revalidating[str, str] = Revalidating(load, TTL)
    answers: list[str] = []
    callers = [threading.Thread(target=lambda: answers.append(values.get("a").value)) for _ in range(8)]
    callers[0].start()
    assert started.wait(30)
    for caller in callers[1:]:
        caller.start()
    release.set()
    for caller in callers:
        caller.join(30)
    assert answers == ["1"] * 8 and reads == ["a"] and values.peak_reads == 1


def test_a_refresh_runs_on_a_daemon_thread_and_settles() -> None:
    clock = Clock()
    values: Revalidating[str, str] = Revalidating(lambda key: f"{key}@{clock.now}", TTL, clock=clock)
    assert values.get("a").value == "a@100.0"
    clock.now += TTL
    assert values.get("a").value == "a@100.0"
    assert values.settle(30)
    assert values.get("a").value == "a@130.0" and values.refreshes == 1
