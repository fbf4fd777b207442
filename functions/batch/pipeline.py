"""A bounded stage of a pipeline: an iterator produced by its own thread, at most ``depth`` items ahead.

The batch runner chains them (reader -> encoder -> session lanes -> writer) so reading, tokenizing and writing
run beside the session runs. Order is kept (one thread per stage), memory is bounded (a full queue blocks the
producer), and an exception in a stage is raised in the consumer at the point it happened, after the items
produced before it. Closing a stage (or leaving it early) stops its thread and closes its source.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.05


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Ahead(Generic[T]):
    """Iterate ``source`` in a thread named ``name``, keeping at most ``depth`` items ready."""

    def __init__(self, source: Iterable[T], depth: int, name: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _produce(self, source: Iterable[T]) -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(_Failed(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Ahead[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._stop.is_set() or (not self._thread.is_alive() and self._queue.empty()):
                    self._done = True  # stopped, or the producer died without a word (it always leaves one)
                    raise StopIteration from None
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.error
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the producer (it finishes the item in hand), drop what it queued and wait for its thread."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)
        self._thread.join()

    def __enter__(self) -> Ahead[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def ahead(source: Iterable[T], depth: int, name: str) -> Ahead[T]:
    """``Ahead(source, depth, name)``: use it as a context manager so its thread always stops."""
    return Ahead(source, depth, name)


def drain(items: Iterator[Any]) -> None:
    """Consume an iterator to its end (a stage's remaining items are dropped)."""
    for _ in items:
        pass
