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
PENDING = 2


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
              on_chunk: Callable[[int], None] | None = None, drift: BatchDrift | None = None) -> RunStats:
    """Predict every readable, valid row; report every other row. Raises DeadlineError between chunks.

    Writing overlaps inference: while the session runs chunk N (onnxruntime releases the GIL), one writer
    thread serializes and writes chunk N-1. At most ``PENDING`` chunks wait for the writer, so memory stays
    bounded by the chunk size; rows are written in input order.
    """
    stats = RunStats()
    started = time.perf_counter()
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-batch-writer") as writer:
        try:
            for chunk in chunks:
                if out_of_time is not None and out_of_time():
                    raise DeadlineError("stopped before the end of the input: the remaining time is too short")
                stats.chunks += 1
                stats.rows_in += len(chunk)
                tensors, good_lines, bad = _encode(model, chunk)
                bad.extend(chunk.bad)
                output = None
                if good_lines:
                    infer_started = time.perf_counter()
                    output = PredictionService.run(model, tensors)
                    stats.seconds_inference += time.perf_counter() - infer_started
                    if drift is not None:
                        drift.add_chunk(chunk, good_lines, output)
                while len(pending) >= PENDING:
                    pending.popleft().result()
                pending.append(writer.submit(_write, model, output, good_lines, bad, predictions, errors,
                                             chunk.ids))
                stats.rows_ok += len(good_lines)
                stats.rows_failed += len(bad)
                if on_chunk:
                    on_chunk(len(chunk))
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
    stats.seconds_total = time.perf_counter() - started
    if drift is not None:
        stats.extra["drift"] = drift.summary()
    return stats


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
