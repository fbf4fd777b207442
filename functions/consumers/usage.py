"""Usage rows: what one consumer did with one model version on one UTC day, and how answers are counted."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

COUNTS = ("requests", "rows", "client_errors", "throttled", "server_errors", "latency_ms")
"""The numbers a row adds up: answered requests, instances predicted, 4xx answers (429s apart), 429 answers,
5xx answers, total milliseconds from request to answer."""
NO_VERSION = "-"
"""The version of a request answered before a version was chosen (a refusal, an unknown model)."""
NO_MODEL = "-"


def day_of(now: float | None = None) -> str:
    """The UTC day of a moment, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


@dataclass
class Usage:
    """Counts for (consumer, model, version, day)."""

    consumer: str
    model: str
    version: str
    day: str
    requests: int = 0
    rows: int = 0
    client_errors: int = 0
    throttled: int = 0
    server_errors: int = 0
    latency_ms: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.consumer, self.model, self.version, self.day

    def add(self, other: Usage) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def answered(cls, consumer: str, model: str | None, version: str | None, status: int, rows: int,
                 latency_ms: float, now: float | None = None) -> Usage:
        """One answered request: its status decides which error class (if any) it counts in."""
        return cls(consumer, model or NO_MODEL, version or NO_VERSION, day_of(now), requests=1,
                   rows=rows if status < 400 else 0, client_errors=int(400 <= status < 500 and status != 429),
                   throttled=int(status == 429), server_errors=int(status >= 500), latency_ms=latency_ms)


def merged(rows: Iterable[Usage]) -> list[Usage]:
    """Rows with equal keys added together, sorted by day, consumer, model, version."""
    totals: dict[tuple[str, str, str, str], Usage] = {}
    for row in rows:
        total = totals.get(row.key)
        if total is None:
            totals[row.key] = Usage(*row.key)
            total = totals[row.key]
        total.add(row)
    return sorted(totals.values(), key=lambda r: (r.day, r.consumer, r.model, r.version))
