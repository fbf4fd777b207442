"""Build progress hooks shared by both pipelines; the CLI overrides them with progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Reporter:
    """Progress hooks; the CLI overrides them with progress bars. The default is silent."""

    def stage(self, text: str) -> None:
        """A new step started."""

    def epoch(self, epoch: int, total: int, val_loss: float) -> None:
        """A training epoch finished."""

    @contextlib.contextmanager
    def upload(self, total_bytes: int) -> Iterator[Callable[[int], None]]:
        """A byte-count callback for the duration of the upload."""
        yield lambda _n: None
