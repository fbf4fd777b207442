"""Dynamic batching: requests waiting on one event loop share one session run.

A request's encoded tensors join a group for its model and tensor shape; the group runs on the loop's next
pass (``call_soon``), or at once when it holds ``max_rows`` rows. Under load, every request read in one pass
of the event loop is answered by a single ``session.run``; a lone request waits for no timer, only for that
one pass. Requests whose tensors differ in shape (e.g. sentences of different token lengths) never share a
run, so no request is padded beyond what it sent.

What a request gets back never depends on its neighbours:

- only models whose graph allows it join runs (``LoadedModel.joinable``: one shared batch axis on every
  input and output, no dynamic quantization);
- the first shared run of each loaded model is checked: every request is also run alone, and if any answer
  differs by a single bit the model never joins runs again (``LoadedModel.join_checked``);
- if a shared run fails, each request is run on its own, so one request's failure is never another's; no
  failure inside a flush leaves a request waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import Tensors

Output = npt.NDArray[Any]
Runner = Callable[[LoadedModel, Tensors], Output]
GroupKey = tuple[int, tuple[tuple[str, str, tuple[int, ...]], ...]]
Waiting = tuple[Tensors, int, "asyncio.Future[Output]"]


@dataclass
class _Group:
    """Requests waiting for one shared run, on one event loop."""

    model: LoadedModel
    loop: asyncio.AbstractEventLoop
    requests: list[Waiting] = field(default_factory=list)
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
        if group is not None and (group.loop is not loop or group.rows + rows > self.max_rows):
            if group.loop is loop:
                self._flush(key)
            else:  # left by a loop that stopped before its flush ran: its requests are gone with it
                del self._groups[key]
            group = None
        if group is None:
            group = self._groups[key] = _Group(model, loop)
            loop.call_soon(self._flush, key)
        future: asyncio.Future[Output] = loop.create_future()
        group.requests.append((tensors, rows, future))
        group.rows += rows
        if group.rows >= self.max_rows:
            self._flush(key)
        return await future

    def _flush(self, key: GroupKey) -> None:
        """Run a group once and hand each request its rows (no-op when the group already ran)."""
        group = self._groups.pop(key, None)
        if group is None:
            return
        waiting = [request for request in group.requests if not request[2].done()]
        try:
            if len(waiting) > 1 and self._joined(group.model, waiting):
                return
            for tensors, _, future in waiting:
                self._answer(future, group.model, tensors)
        finally:
            for _, _, future in waiting:  # whatever went wrong above, nobody is left waiting
                if not future.done():
                    future.set_exception(RuntimeError("the shared model run was interrupted"))

    def _joined(self, model: LoadedModel, waiting: list[Waiting]) -> bool:
        """Answer every request from one run; False (nothing answered) when the run fails or its output is
        not one row per input row. The model's first shared run is also run request by request: if any
        answer differs, those answers are given and the model never joins runs again."""
        try:
            joined = {name: np.concatenate([tensors[name] for tensors, _, _ in waiting]) for name in waiting[0][0]}
            output = self._run(model, joined)
            if np.ndim(output) == 0 or len(output) != sum(rows for _, rows, _ in waiting):
                return False
            bounds = accumulate((rows for _, rows, _ in waiting), initial=0)
            parts = [output[start:end] for start, end in pairwise(bounds)]
            if not model.join_checked:
                model.join_checked = True
                alone = [self._run(model, tensors) for tensors, _, _ in waiting]
                if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(parts, alone, strict=True)):
                    model.joinable = False
                    parts = alone  # each request gets the answer it gets on its own
        except Exception:  # each request is then run, and fails or succeeds, on its own
            return False
        for part, (_, _, future) in zip(parts, waiting, strict=True):
            if not future.done():
                future.set_result(part)
        return True

    def _answer(self, future: asyncio.Future[Output], model: LoadedModel, tensors: Tensors) -> None:
        """One request run on its own; its error is its answer."""
        if future.done():
            return
        try:
            future.set_result(self._run(model, tensors))
        except Exception as exc:  # delivered to the request that caused it
            future.set_exception(exc)
