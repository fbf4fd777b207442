"""The batch runner shared by the Lambda handler, the AWS Batch worker and ``maas batch``.

It streams chunks from a reader, isolates bad rows (the good rows of a chunk are still predicted), runs the
model once per chunk and appends predictions and errors to two JSON-lines files, each row keyed by its input
line number. Memory is bounded by the chunk size.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from functions.batch.formats import Chunk
from functions.batch.lines import prediction_lines
from functions.core.errors import DeadlineError, InvalidInputError
from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import Tensors
from functions.core.service import PredictionService

if TYPE_CHECKING:
    from functions.drift.batch import BatchDrift

NEWLINE = orjson.OPT_APPEND_NEWLINE


@dataclass
class RunStats:
    """Counts and timings of one run."""

    rows_in: int = 0
    rows_ok: int = 0
    rows_failed: int = 0
    seconds_total: float = 0.0
    seconds_inference: float = 0.0
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return {**data, **self.extra}


def run_batch(model: LoadedModel, chunks: Iterable[Chunk], predictions: IO[bytes], errors: IO[bytes],
              out_of_time: Callable[[], bool] | None = None,
              on_chunk: Callable[[int], None] | None = None, drift: BatchDrift | None = None,
              lanes: int = 1) -> RunStats:
    """Predict every readable, valid row; report every other row. Raises DeadlineError between chunks.

    Session runs go to ``lanes`` threads (onnxruntime releases the GIL), so up to ``lanes`` chunks run at once
    while this thread reads and encodes the next one and adds finished ones to the drift counts and the output,
    in input order. On CPU each lane is one single-threaded run: independent runs keep every core busy while
    Python works, where one multi-threaded run stalls at each of its barriers whenever a core is taken. At most
    ``lanes + 1`` chunks are held, so memory stays bounded by the chunk size.
    """
    stats = RunStats()
    started = time.perf_counter()
    inflight: deque[_Running] = deque()

    def finish(running: _Running) -> None:
        output = None
        if running.future is not None:
            output, seconds = running.future.result()
            stats.seconds_inference += seconds
            if drift is not None:
                drift.add_chunk(running.chunk, running.good_lines, output)
        _write(model, output, running.good_lines, running.bad, predictions, errors, running.chunk.ids)
        stats.rows_ok += len(running.good_lines)
        stats.rows_failed += len(running.bad)
        if on_chunk:
            on_chunk(len(running.chunk))

    with ThreadPoolExecutor(max_workers=max(1, lanes), thread_name_prefix="maas-batch-lane") as pool:
        try:
            for chunk in chunks:
                if out_of_time is not None and out_of_time():
                    while inflight:  # everything read so far is written before stopping
                        finish(inflight.popleft())
                    raise DeadlineError("stopped before the end of the input: the remaining time is too short")
                stats.chunks += 1
                stats.rows_in += len(chunk)
                tensors, good_lines, bad = _encode(model, chunk)
                bad.extend(chunk.bad)
                future = pool.submit(_timed_run, model, tensors) if good_lines else None
                inflight.append(_Running(chunk, good_lines, bad, future))
                while len(inflight) > max(1, lanes):
                    finish(inflight.popleft())
            while inflight:
                finish(inflight.popleft())
        finally:
            for running in inflight:
                if running.future is not None:
                    running.future.cancel()
    stats.seconds_total = time.perf_counter() - started
    if drift is not None:
        stats.extra["drift"] = drift.summary()
    return stats


@dataclass
class _Running:
    """A chunk whose session run was handed to a lane."""

    chunk: Chunk
    good_lines: list[int]
    bad: list[tuple[int, str]]
    future: Future[tuple[Any, float]] | None


def _timed_run(model: LoadedModel, tensors: Tensors) -> tuple[Any, float]:
    started = time.perf_counter()
    return PredictionService.run(model, tensors), time.perf_counter() - started


def _write(model: LoadedModel, output: Any, good_lines: list[int], bad: list[tuple[int, str]],
           predictions: IO[bytes], errors: IO[bytes], ids: dict[int, Any] | None = None) -> None:
    """Append a chunk's predictions and errors; with ``ids`` (an id column), each row carries its "id"."""
    if output is not None:
        predictions.write(prediction_lines(model, output, good_lines, ids or None))
    if bad:
        errors.write(b"".join(orjson.dumps({"line": line, "id": ids.get(line), "error": reason} if ids
                                           else {"line": line, "error": reason}, option=NEWLINE)
                              for line, reason in sorted(bad)))


def _encode(model: LoadedModel, chunk: Chunk) -> tuple[Tensors, list[int], list[tuple[int, str]]]:
    """Encode the whole chunk at once; if any row is invalid, encode row by row to separate the bad ones."""
    if not chunk.lines:
        return {}, [], []
    encode = PredictionService.encode
    try:
        return encode(model, chunk.instances), list(chunk.lines), []
    except InvalidInputError:
        pass
    good: list[int] = []
    kept: list[Any] = []
    bad: list[tuple[int, str]] = []
    for line, instance in zip(chunk.lines, chunk.instances, strict=True):
        try:
            encode(model, [instance])
            good.append(line)
            kept.append(instance)
        except InvalidInputError as exc:
            bad.append((line, exc.message.removeprefix("instance 0: ")))
    if not kept:
        return {}, [], bad
    # Encoded again together: text models pad to the longest text of the batch.
    return encode(model, kept), good, bad
