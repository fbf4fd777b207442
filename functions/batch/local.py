"""``maas batch``: the batch runner on a local file, writing into a local folder without overwriting."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from functions.batch.formats import Chunk, input_format, read_chunks
from functions.batch.lines import PredictionSink
from functions.batch.report import make_report, model_info
from functions.batch.runner import RunStats, run_batch
from functions.core.errors import AlreadyExistsError
from functions.core.model_cache import LoadedModel, ModelCache
from functions.core.settings import Settings
from functions.drift.batch import batch_drift

OUTPUT_FILES = ("predictions.jsonl", "errors.jsonl", "report.json")
PARQUET_PREDICTIONS = "predictions.parquet"


def output_files(output_format: str = "jsonl") -> tuple[str, str, str]:
    """(predictions, errors, report) file names for an output format: errors stay JSON lines."""
    return (PARQUET_PREDICTIONS if output_format == "parquet" else OUTPUT_FILES[0]), *OUTPUT_FILES[1:]


@contextlib.contextmanager
def predictions_sink(path: Path, model: LoadedModel, output_format: str,
                     with_ids: bool) -> Iterator[IO[bytes] | PredictionSink]:
    """Where the runner writes predictions: a JSON-lines file, or a Parquet writer closed on success."""
    if output_format != "parquet":
        with path.open("wb") as f:
            yield f
        return
    from functions.batch.parquet import ParquetPredictions

    sink = ParquetPredictions(path, model, with_ids)
    try:
        yield sink
    finally:  # on failure too: the file handle is released (the work folder is discarded anyway)
        sink.close()


def check_io(source: Path, output: Path) -> str:
    """The input's format, after refusing a missing input or an output folder that already holds outputs
    (outputs are never overwritten)."""
    fmt = input_format(source.name)
    if not source.is_file():
        raise FileNotFoundError(f"input {source} does not exist")
    check_output_free(output)
    return fmt


def check_output_free(output: Path) -> None:
    """AlreadyExistsError if ``output`` holds any of OUTPUT_FILES."""
    taken = [f for f in (*OUTPUT_FILES, PARQUET_PREDICTIONS) if (output / f).exists()]
    if taken:
        raise AlreadyExistsError(f"{output} already holds {', '.join(taken)}; choose an empty output folder")


def batch_threads(configured: int) -> int:
    """Cores for batch work: the configured number, or every core."""
    return configured or os.cpu_count() or 1


def for_batch(settings: Settings, gpu: bool = False) -> Settings:
    """Settings for batch work. On CPU: one single-threaded session run per core at once (lanes). On a GPU:
    one run at a time, with every core as intra-op threads for the operators left on the CPU, and no length
    bucketing: measured on an H200 (bench/gpu.py), minilm-embed's fp16 worker did 11,500 rows/s end to end on
    file-order chunks and 3,200 with bucketing (many small runs of distinct shapes), while the session itself
    runs either at about 110,000 rows/s: on a GPU, padding is cheaper than the extra runs. Host processes
    (``MAAS_BATCH_HOST_PROCESSES``, ``auto``): see ``host_processes``."""
    cores = batch_threads(settings.batch_threads)
    processes = host_processes(settings.batch_host_processes, cores, gpu)
    if gpu:
        return dataclasses.replace(settings, intra_op_threads=cores, batch_lanes=1, batch_bucketing=False,
                                   batch_host_processes=processes)
    return dataclasses.replace(settings, intra_op_threads=1, batch_lanes=cores, batch_host_processes=processes)


def host_processes(configured: int | None, cores: int, gpu: bool) -> int:
    """Host processes for a batch run (functions/batch/hostwork.py): the configured number, else (``auto``) on
    a GPU every core but two (one for the main process, which reads, runs the session and writes, one for the
    session's own threads), at least one, and on the CPU none: there the session lanes already take every core,
    and host processes only compete with them (measured in bench/text_batch.py, docs/batch.md)."""
    if configured is not None:
        return configured
    return max(1, cores - 2) if gpu else 0


def run_local(cache: ModelCache, name: str, source: Path, output: Path, version: str | None = None,
              alias: str | None = None, on_rows: Callable[[int], None] | None = None,
              id_column: str | None = None, on_bytes: Callable[[int], None] | None = None,
              output_format: str = "jsonl") -> RunStats:
    """Predict ``source`` with model ``name`` into ``output``/{predictions.jsonl|.parquet, errors.jsonl} and
    report.json.

    ``on_rows`` gets the rows of each chunk done, ``on_bytes`` how far into the input (bytes) it was.
    """
    fmt = check_io(source, output)
    model = cache.get(name, version, alias)
    output.mkdir(parents=True, exist_ok=True)
    settings = cache.settings
    files = output_files(output_format)
    with tempfile.TemporaryDirectory(dir=output, prefix=".maas-batch-") as tmp:
        work = Path(tmp)
        with predictions_sink(work / files[0], model, output_format, id_column is not None) as predictions, \
                (work / files[1]).open("wb") as errors:
            chunks = read_chunks(source, fmt, model.manifest.preprocessing, settings.batch_chunk_rows,
                                 settings.batch_max_line_bytes, id_column)
            if on_bytes is not None:
                chunks = _reporting(chunks, on_bytes)
            stats = run_batch(model, chunks, predictions, errors, on_chunk=on_rows,
                              drift=batch_drift(cache.store, model), lanes=settings.batch_lanes,
                              bucketing=settings.batch_bucketing, host_processes=settings.batch_host_processes or 0)
        (work / files[2]).write_bytes(make_report(
            "ok", {"path": str(source), "bytes": source.stat().st_size, "format": fmt}, model_info(model), stats,
            {name: str(output / name) for name in files[:2]}))
        for name in files:  # report last: its presence marks a complete output
            os.link(work / name, output / name)
    return stats


def _reporting(chunks: Iterator[Chunk], on_bytes: Callable[[int], None]) -> Iterator[Chunk]:
    """The chunks, telling ``on_bytes`` the input offset of the one before as each next one is asked for."""
    for chunk in chunks:
        yield chunk
        on_bytes(chunk.offset)
