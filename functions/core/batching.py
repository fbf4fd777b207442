"""Dynamic batching: requests waiting on one event loop share one session run.

A request's encoded tensors join a group for its model and tensor shape; the group runs on the loop's next
pass (``call_soon``), or at once when it reaches ``max_rows``. Under load, every request read in one pass of
the event loop is answered by a single ``session.run``; a lone request waits for no timer, only for that
one pass. Requests whose tensors differ in shape (e.g. sentences of different token lengths) never share a
run, so no request is padded beyond what it sent; models whose rows influence each other (dynamic
quantization) never join runs (``LoadedModel.joinable``). If a shared run fails, each request is run on its
own, so one request's failure is never another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import Tensors

Output = npt.NDArray[Any]
Runner = Callable[[LoadedModel, Tensors], Output]
GroupKey = tuple[int, tuple[tuple[str, str, tuple[int, ...]], ...]]


@dataclass
class _Group:
    """Requests waiting for one shared run."""

    model: LoadedModel
    requests: list[tuple[Tensors, int, asyncio.Future[Output]]] = field(default_factory=list)
    rows: int = 0


def _key(model: LoadedModel, tensors: Tensors) -> GroupKey:
    """Requests may share a run when they name the same loaded model and send tensors of one layout."""
    return id(model), tuple((name, array.dtype.str, array.shape[1:]) for name, array in tensors.items())


def _rows(tensors: Tensors) -> int:
    return len(next(iter(tensors.values())))


class RunBatcher:
    """Joins concurrent requests' session runs, up to ``max_rows`` rows per run (1 turns batching off)."""

    def __init__(self, run: Runner, max_rows: int) -> None:
        self._run = run
        self.max_rows = max_rows
        self._groups: dict[GroupKey, _Group] = {}

    async def run(self, model: LoadedModel, tensors: Tensors) -> Output:
        """The model's output for these tensors, from a run shared with the requests waiting beside it."""
        rows = _rows(tensors)
        if self.max_rows <= 1 or not model.joinable or rows >= self.max_rows:
            return self._run(model, tensors)
        loop = asyncio.get_running_loop()
        key = _key(model, tensors)
        group = self._groups.get(key)
        if group is not None and group.rows + rows > self.max_rows:
            self._flush(key)
            group = None
        if group is None:
            group = self._groups[key] = _Group(model)
            loop.call_soon(self._flush, key)
        future: asyncio.Future[Output] = loop.create_future()
        group.requests.append((tensors, rows, future))
        group.rows += rows
        return await future

    def _flush(self, key: GroupKey) -> None:
        """Run a group once and hand each request its rows (no-op when the group already ran)."""
        group = self._groups.pop(key, None)
        if group is None:
            return
        waiting = [(tensors, rows, future) for tensors, rows, future in group.requests if not future.done()]
        if len(waiting) > 1:
            names = list(waiting[0][0])
            joined = {name: np.concatenate([tensors[name] for tensors, _, _ in waiting]) for name in names}
            try:
                output = self._run(group.model, joined)
            except Exception:
                pass
            else:
                if len(output) == sum(rows for _, rows, _ in waiting):
                    start = 0
                    for _, rows, future in waiting:
                        future.set_result(output[start:start + rows])
                        start += rows
                    return
        for tensors, _, future in waiting:
            try:
                future.set_result(self._run(group.model, tensors))
            except Exception as exc:
                future.set_exception(exc)
