"""Usage metering off the request path: answered requests are added up in memory and written in batches.

``maas serve`` writes from a daemon thread about once a second (and when it stops); in Lambda the writes run once
the runtime has posted the response (the hook capture uses), so no answer waits for them. A failing store keeps
the totals for the next write (up to ``MAX_PENDING`` distinct rows, then counts what it had to drop).
"""

from __future__ import annotations

import threading
from typing import Any

from functions.consumers.store import ConsumerStore
from functions.consumers.usage import Usage
from functions.core.telemetry import log

MAX_PENDING = 10_000


class Meter:
    """Pending usage totals and their writer."""

    def __init__(self, store: ConsumerStore, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self.written = 0
        self.dropped = 0
        self.after_post = False
        self._pending: dict[tuple[str, str, str, str], Usage] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, usage: Usage) -> None:
        """Count one answered request (a few dictionary operations)."""
        with self._lock:
            total = self._pending.get(usage.key)
            if total is None:
                if len(self._pending) >= MAX_PENDING:
                    self.dropped += usage.requests
                    return
                self._pending[usage.key] = usage
            else:
                total.add(usage)
        if self._thread is None and not self.after_post:
            self._start()

    def flush(self) -> int:
        """Write what is pending (blocking), one row at a time, so a failure puts back only the rows not yet
        written; the number of rows written. A row the store refuses for good (``ValueError``) is dropped and
        logged; a store that is down keeps the rest for the next write. Never raises."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending = list(self._pending.values()), {}
            written = 0
            for index, row in enumerate(rows):
                try:
                    self.store.add_usage([row])
                except ValueError as exc:  # refused for good (a row the store cannot hold): retrying won't help
                    self.dropped += row.requests
                    log("ERROR", "usage row refused by the store; dropped", consumer=row.consumer, model=row.model,
                        error=str(exc))
                    continue
                except Exception as exc:  # the store is down or failing: keep this row and the rest
                    log("WARNING", "usage not written yet; kept for the next write", rows=len(rows) - index,
                        error=getattr(exc, "message", None) or repr(exc))
                    with self._lock:
                        for unwritten in rows[index:]:
                            self._merge_back(unwritten)
                    break
                written += 1
            self.written += written
            return written

    def _merge_back(self, row: Usage) -> None:
        total = self._pending.get(row.key)
        if total is not None:
            total.add(row)
        elif len(self._pending) < MAX_PENDING:
            self._pending[row.key] = row
        else:
            self.dropped += row.requests

    def install_after_post(self, client_class: type[Any] | None = None) -> bool:
        """In Lambda: write after each post (True); elsewhere False and a thread writes."""
        from functions.core import capture_after_response

        if capture_after_response.install_found(self._flush_after_post, client_class) is None:
            return False
        self.after_post = True
        return True

    def _flush_after_post(self) -> None:
        self.flush()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="maas-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
