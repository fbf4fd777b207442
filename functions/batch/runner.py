"""The batch runner shared by the Lambda handler, the AWS Batch worker and ``maas batch``.

It streams chunks from a reader, isolates bad rows (the good rows of a chunk are still predicted), runs the
model once per chunk (text chunks: once per length bucket) and appends predictions (JSON lines, or a
``PredictionSink`` such as Parquet) and errors (JSON lines), each row keyed by its input line number.
Reading, encoding, the session runs and writing overlap in threads, or with host processes doing the encoding
and formatting (functions/batch/hostwork.py); memory is bounded by the chunk size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from functions.batch.bucketing import Buckets, bucketable
from functions.batch.formats import Chunk
from functions.batch.hostwork import Encoded, Encoder, Formatter, HostPool
from functions.batch.lines import JsonLinesFormatter, PredictionSink
from functions.batch.pipeline import ahead
from functions.core.errors import DeadlineError, HostProcessError
from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import Tensors
from functions.core.service import PredictionService
from functions.core.telemetry import log

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
              lanes: int = 1, bucketing: bool = True, host_processes: int = 0) -> RunStats:
    """Predict every readable, valid row; report every other row. Raises DeadlineError between chunks.

    A pipeline of threads (functions/batch/pipeline.py): one reads chunks, one encodes them (tokenizing, and
    with ``bucketing`` grouping a text chunk's rows by length, functions/batch/bucketing.py) and hands their
    session runs to ``lanes`` threads (onnxruntime releases the GIL), while this thread adds finished chunks to
    the drift counts, formats and writes them, in input order. On CPU each lane is one single-threaded run:
    independent runs keep every core busy while Python works, where one multi-threaded run stalls at each of
    its barriers whenever a core is taken. The queues between the stages are bounded, so at most about
    ``lanes + 5`` chunks are held and memory stays bounded by the chunk size. An error in any stage is raised
    here, after the chunks before it were written.

    With ``host_processes`` > 0 the encoding and the formatting run in that many worker processes instead
    (functions/batch/hostwork.py: the same code, so the same bytes), for when the session is faster than one
    Python process can feed it (a GPU): see ``_run_with_processes``. Where a process pool cannot start (AWS
    Lambda: no ``/dev/shm``) the run says so in a warning log line and does the host work in threads.
    """
    stats = RunStats()
    started = time.perf_counter()
    encoder = Encoder(model.preprocessor, model.manifest.preprocessing, bucketing and bucketable(model),
                      drift is not None and drift.tracked)
    formatter: Formatter
    write: Callable[[Any], Any]
    if isinstance(predictions, PredictionSink):
        formatter, write = predictions.formatter(), predictions.add_formatted
    else:
        formatter, write = JsonLinesFormatter(model.manifest), predictions.write
    output = _Output(write, errors, drift, stats, on_chunk)
    lanes = max(1, lanes)
    pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="maas-batch-lane")
    try:
        host = _host_pool(host_processes, encoder, formatter)
        if host is not None:
            with host:
                _run_with_processes(model, chunks, output, out_of_time, pool, lanes, host, host_processes)
        else:
            with ahead(chunks, READ_AHEAD, "maas-batch-read") as read, \
                    ahead(_submitted(model, read, pool, out_of_time, stats, encoder), lanes,
                          "maas-batch-encode") as encoded:
                for running in encoded:
                    if running is None:  # everything read before the deadline is written
                        raise _deadline()
                    result = None
                    if running.future is not None:
                        result = output.ran(running.encoded, running.future)
                    output.write(running.chunk, running.encoded,
                                 None if result is None else formatter(result, running.encoded.good_lines,
                                                                       running.chunk.ids or None))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    stats.seconds_total = time.perf_counter() - started
    if drift is not None:
        stats.extra["drift"] = drift.summary()
    return stats


READ_AHEAD = 2
"""Chunks the reader keeps ready for the encoder."""


def _deadline() -> DeadlineError:
    return DeadlineError("stopped before the end of the input: the remaining time is too short")


@dataclass
class _Output:
    """Where finished chunks go, in input order: drift counts, predictions, errors, counts and progress."""

    write_predictions: Callable[[Any], Any]
    errors: IO[bytes]
    drift: BatchDrift | None
    stats: RunStats
    on_chunk: Callable[[int], None] | None

    def ran(self, encoded: Encoded, future: Future[tuple[Any, float]]) -> Any:
        """A chunk's session output (its time counted, its rows added to the drift counts)."""
        result, seconds = future.result()
        self.stats.seconds_inference += seconds
        if self.drift is not None and encoded.drift_inputs is not None:
            self.drift.add(encoded.drift_inputs, result)
        return result

    def write(self, chunk: Chunk, encoded: Encoded, formatted: Any) -> None:
        """Append a chunk's formatted predictions (None: no valid row) and its errors; with an id column, each
        error row carries its "id"."""
        if formatted is not None:
            self.write_predictions(formatted)
        bad = encoded.bad + chunk.bad
        if bad:
            ids = chunk.ids
            self.errors.write(b"".join(orjson.dumps({"line": line, "id": ids.get(line), "error": reason} if ids
                                                    else {"line": line, "error": reason}, option=NEWLINE)
                                       for line, reason in sorted(bad)))
        self.stats.rows_ok += len(encoded.good_lines)
        self.stats.rows_failed += len(bad)
        if self.on_chunk:
            self.on_chunk(len(chunk))


def _submitted(model: LoadedModel, chunks: Iterable[Chunk], pool: ThreadPoolExecutor,
               out_of_time: Callable[[], bool] | None, stats: RunStats, encoder: Encoder
               ) -> Iterator[_Running | None]:
    """The encoder stage: each chunk encoded and its session run submitted to a lane; None at the deadline."""
    for chunk in _counted(chunks, out_of_time, stats):
        if chunk is None:
            yield None
            return
        encoded = encoder(chunk.lines, chunk.instances)
        yield _Running(chunk, encoded, _run(model, pool, encoded))


def _counted(chunks: Iterable[Chunk], out_of_time: Callable[[], bool] | None, stats: RunStats
             ) -> Iterator[Chunk | None]:
    """The chunks, counted as they are taken; None (and the end) once ``out_of_time`` says so."""
    for chunk in chunks:
        if out_of_time is not None and out_of_time():
            yield None
            return
        stats.chunks += 1
        stats.rows_in += len(chunk)
        yield chunk


def _run(model: LoadedModel, pool: ThreadPoolExecutor, encoded: Encoded) -> Future[tuple[Any, float]] | None:
    """The chunk's session runs handed to a lane (None when it has no valid row)."""
    return pool.submit(_timed_run, model, encoded.batches, encoded.buckets) if encoded.good_lines else None


@dataclass
class _Running:
    """A chunk whose session run was handed to a lane."""

    chunk: Chunk
    encoded: Encoded
    future: Future[tuple[Any, float]] | None


def _timed_run(model: LoadedModel, batches: list[Tensors], buckets: Buckets | None) -> tuple[Any, float]:
    started = time.perf_counter()
    outputs = [PredictionService.run(model, tensors) for tensors in batches]
    output = buckets.restore(outputs) if buckets is not None else outputs[0]
    return output, time.perf_counter() - started


def _host_pool(processes: int, encoder: Encoder, formatter: Formatter) -> HostPool | None:
    """A pool of ``processes`` host processes; None for none, or where a process pool cannot start (AWS Lambda
    has no ``/dev/shm`` for its semaphores): the run then does its host work in threads, the same bytes."""
    if processes <= 0:
        return None
    try:
        return HostPool(processes, encoder, formatter)
    except HostProcessError as exc:
        log("WARNING", "batch host work runs in threads", reason=exc.message)
        return None


def _run_with_processes(model: LoadedModel, chunks: Iterable[Chunk], output: _Output,
                        out_of_time: Callable[[], bool] | None, lanes_pool: ThreadPoolExecutor, lanes: int,
                        host: HostPool, processes: int) -> None:
    """The pipeline with a pool of host processes: read (thread) -> encode (jobs) -> session runs (lanes) ->
    format (jobs) -> write (this thread). Each arrow is a bounded queue and each stage hands on futures in
    input order, so up to ``processes + 2`` chunks are being encoded and as many formatted while the session
    runs; about ``2 x processes + lanes + 7`` chunks are held at most. None (the deadline) passes down every
    stage like a chunk, so everything encoded before it is written."""

    def encoding() -> Iterator[tuple[Chunk, Future[Encoded]] | None]:
        for chunk in _counted(read, out_of_time, output.stats):
            yield None if chunk is None else (chunk, host.encode(chunk.lines, chunk.instances))

    def running() -> Iterator[_Running | None]:
        for item in encoded_chunks:
            if item is None:
                yield None
                return
            chunk, future = item
            encoded: Encoded = host.result(future)
            yield _Running(chunk, encoded, _run(model, lanes_pool, encoded))

    def formatting() -> Iterator[tuple[_Running, Future[Any] | None] | None]:
        for item in ran:
            if item is None:
                yield None
                return
            formatted = None
            if item.future is not None:
                result = output.ran(item.encoded, item.future)
                formatted = host.format(result, item.encoded.good_lines, item.chunk.ids or None)
            yield item, formatted

    with ahead(chunks, READ_AHEAD, "maas-batch-read") as read, \
            ahead(encoding(), processes, "maas-batch-encode") as encoded_chunks, \
            ahead(running(), lanes, "maas-batch-run") as ran, \
            ahead(formatting(), processes, "maas-batch-format") as formatted_chunks:
        for done in formatted_chunks:
            if done is None:
                raise _deadline()
            item, future = done
            output.write(item.chunk, item.encoded, None if future is None else host.result(future))
