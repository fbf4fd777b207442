"""The batch runner shared by the Lambda handler, the AWS Batch worker and ``maas batch``.

It streams chunks from a reader, isolates bad rows (the good rows of a chunk are still predicted), runs the
model once per chunk (text chunks: once per length bucket) and appends predictions (JSON lines, or a
``PredictionSink`` such as Parquet) and errors (JSON lines), each row keyed by its input line number.
Reading, encoding, the session runs and writing overlap in threads; memory is bounded by the chunk size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from functions.batch.bucketing import Buckets, bucket, bucketable
from functions.batch.formats import Chunk
from functions.batch.lines import PredictionSink, prediction_lines
from functions.batch.pipeline import ahead
from functions.core.errors import DeadlineError, InvalidInputError
from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import Tensors, TokenizerPreprocessor, check_texts
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


def run_batch(model: LoadedModel, chunks: Iterable[Chunk], predictions: IO[bytes] | PredictionSink,
              errors: IO[bytes], out_of_time: Callable[[], bool] | None = None,
              on_chunk: Callable[[int], None] | None = None, drift: BatchDrift | None = None,
              lanes: int = 1, bucketing: bool = True) -> RunStats:
    """Predict every readable, valid row; report every other row. Raises DeadlineError between chunks.

    A pipeline of threads (functions/batch/pipeline.py): one reads chunks, one encodes them (tokenizing, and
    with ``bucketing`` grouping a text chunk's rows by length, functions/batch/bucketing.py) and hands their
    session runs to ``lanes`` threads (onnxruntime releases the GIL), while this thread adds finished chunks to
    the drift counts and writes them, in input order. On CPU each lane is one single-threaded run: independent
    runs keep every core busy while Python works, where one multi-threaded run stalls at each of its barriers
    whenever a core is taken. The queues between the stages are bounded, so at most about ``lanes + 5`` chunks
    are held and memory stays bounded by the chunk size. An error in any stage is raised here, after the
    chunks before it were written.
    """
    stats = RunStats()
    started = time.perf_counter()
    lanes = max(1, lanes)
    pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="maas-batch-lane")
    try:
        with ahead(chunks, READ_AHEAD, "maas-batch-read") as read, \
                ahead(_submitted(model, read, pool, out_of_time, stats, bucketing), lanes,
                      "maas-batch-encode") as encoded:
            for running in encoded:
                if running is None:  # everything read before the deadline is written
                    raise DeadlineError("stopped before the end of the input: the remaining time is too short")
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
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    stats.seconds_total = time.perf_counter() - started
    if drift is not None:
        stats.extra["drift"] = drift.summary()
    return stats


READ_AHEAD = 2
"""Chunks the reader keeps ready for the encoder."""


def _submitted(model: LoadedModel, chunks: Iterable[Chunk], pool: ThreadPoolExecutor,
               out_of_time: Callable[[], bool] | None, stats: RunStats, bucketing: bool) -> Iterator[_Running | None]:
    """The encoder stage: each chunk encoded and its session run submitted to a lane; None at the deadline."""
    bucketed = bucketing and bucketable(model)
    for chunk in chunks:
        if out_of_time is not None and out_of_time():
            yield None
            return
        stats.chunks += 1
        stats.rows_in += len(chunk)
        batches, buckets, good_lines, bad = _encode_buckets(model, chunk) if bucketed else _encode_chunk(model, chunk)
        bad.extend(chunk.bad)
        future = pool.submit(_timed_run, model, batches, buckets) if good_lines else None
        yield _Running(chunk, good_lines, bad, future)


@dataclass
class _Running:
    """A chunk whose session run was handed to a lane."""

    chunk: Chunk
    good_lines: list[int]
    bad: list[tuple[int, str]]
    future: Future[tuple[Any, float]] | None


def _timed_run(model: LoadedModel, batches: list[Tensors], buckets: Buckets | None) -> tuple[Any, float]:
    started = time.perf_counter()
    outputs = [PredictionService.run(model, tensors) for tensors in batches]
    output = buckets.restore(outputs) if buckets is not None else outputs[0]
    return output, time.perf_counter() - started


def _write(model: LoadedModel, output: Any, good_lines: list[int], bad: list[tuple[int, str]],
           predictions: IO[bytes] | PredictionSink, errors: IO[bytes], ids: dict[int, Any] | None = None) -> None:
    """Append a chunk's predictions and errors; with ``ids`` (an id column), each row carries its "id"."""
    if output is not None:
        if isinstance(predictions, PredictionSink):
            predictions.add(model, output, good_lines, ids or None)
        else:
            predictions.write(prediction_lines(model, output, good_lines, ids or None))
    if bad:
        errors.write(b"".join(orjson.dumps({"line": line, "id": ids.get(line), "error": reason} if ids
                                           else {"line": line, "error": reason}, option=NEWLINE)
                              for line, reason in sorted(bad)))


def _encode_chunk(model: LoadedModel, chunk: Chunk
                  ) -> tuple[list[Tensors], None, list[int], list[tuple[int, str]]]:
    """The chunk as one session run (padded to its longest text), without bucketing."""
    tensors, good, bad = _encode(model, chunk)
    return ([tensors] if good else []), None, good, bad


def _encode_buckets(model: LoadedModel, chunk: Chunk
                    ) -> tuple[list[Tensors], Buckets | None, list[int], list[tuple[int, str]]]:
    """A text chunk's valid rows as length-homogeneous runs (one tokenizer pass); invalid rows reported."""
    preprocessor = model.preprocessor
    assert isinstance(preprocessor, TokenizerPreprocessor)
    max_chars = preprocessor.spec.max_chars
    bad: list[tuple[int, str]]
    try:
        texts, good, bad = check_texts(chunk.instances, max_chars), list(chunk.lines), []
    except InvalidInputError:
        texts, good, bad = [], [], []
        for line, instance in zip(chunk.lines, chunk.instances, strict=True):
            try:
                texts += check_texts([instance], max_chars)
                good.append(line)
            except InvalidInputError as exc:
                bad.append((line, exc.message.removeprefix("instance 0: ")))
    if not texts:
        return [], None, [], bad
    buckets = bucket(preprocessor, texts)
    return buckets.batches, buckets, good, bad


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
