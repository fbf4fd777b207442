"""``maas batch --workers N``: the fan-out on one machine. The same split, part and merge code as Step
Functions and AWS Batch run, with processes as the children; the output equals a single worker's
(predictions.jsonl and errors.jsonl are the parts' files concatenated in order, same report counts)."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from functions.batch.local import check_io, output_files
from functions.batch.merge import merge_reports, ranges_document
from functions.batch.part import part_folder, run_part
from functions.batch.ranges import ByteRange, FileSource, split
from functions.batch.report import make_report, model_info
from functions.batch.runner import RunStats
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import open_store

MAX_PART_BYTES = 256 * 1024 * 1024
_worker_cache: dict[str, ModelCache] = {}


def local_ranges(source: FileSource, fmt: str, workers: int) -> list[ByteRange]:
    """About one range per worker (more for inputs over MAX_PART_BYTES per worker)."""
    parts = max(workers, math.ceil(source.size / MAX_PART_BYTES))
    return split(source, fmt, math.ceil(source.size / parts) or 1)


def run_parallel(cache: ModelCache, name: str, source_path: Path, output: Path, workers: int,
                 version: str | None = None, alias: str | None = None,
                 on_rows: Callable[[int], None] | None = None, id_column: str | None = None,
                 output_format: str = "jsonl") -> RunStats:
    """Split, run the parts in ``workers`` processes, merge into ``output`` (report.json last)."""
    fmt = check_io(source_path, output)
    model = cache.get(name, version, alias)
    shared = cache.settings  # the cores are shared by the workers
    settings = dataclasses.replace(shared, intra_op_threads=max(1, shared.intra_op_threads // workers),
                                   batch_lanes=max(1, shared.batch_lanes // workers))
    started = time.perf_counter()
    source = FileSource(source_path)
    ranges = local_ranges(source, fmt, workers)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output, prefix=".maas-batch-") as tmp:
        work = Path(tmp)
        (work / "ranges.json").write_bytes(ranges_document(ranges))
        jobs = [(settings, model.name, model.version, str(source_path), fmt, i, r.as_dict(),
                 str(work / part_folder("", i).lstrip("/")), id_column, output_format) for i, r in enumerate(ranges)]
        reports: list[dict[str, Any] | None] = []
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:  # no fork under ORT threads
            for report in pool.map(_part_in_process, jobs):
                reports.append(report)
                if on_rows:
                    on_rows(report["rows"]["in"])
        files = output_files(output_format)
        folders = [work / part_folder("", i).lstrip("/") for i in range(len(ranges))]
        for name_ in files[:2]:
            if name_.endswith(".parquet"):
                from functions.batch.parquet import concatenate

                concatenate([folder / name_ for folder in folders], work / name_)
                continue
            with (work / name_).open("wb") as merged:
                for folder in folders:
                    with (folder / name_).open("rb") as part:
                        shutil.copyfileobj(part, merged)
        totals = merge_reports(ranges, reports)
        stats: RunStats = totals["stats"]
        stats.seconds_total = time.perf_counter() - started
        body = make_report("ok", {"path": str(source_path), "bytes": source.size, "format": fmt}, model_info(model),
                           stats, {n: str(output / n) for n in files[:2]}, workers=workers,
                           parts={"total": len(ranges), "ok": len(ranges), "failed": []})
        (work / "report.json").write_bytes(body)
        for name_ in files:  # report last: its presence marks a complete output
            os.link(work / name_, output / name_)
    return stats


def _part_in_process(job: tuple[Settings, str, str, str, str, int, dict[str, int], str, str | None, str]
                     ) -> dict[str, Any]:
    """One part in a worker process (one model load per process); returns the part report."""
    settings, name, version, path, fmt, index, range_, folder, id_column, output_format = job
    cache = _worker_cache.get(settings.store)
    if cache is None:
        cache = _worker_cache[settings.store] = ModelCache(open_store(settings.store), settings)
    model = cache.get(name, version)
    work = Path(folder)
    work.mkdir(parents=True)
    stats = run_part(model, FileSource(Path(path)), fmt, ByteRange.from_dict(range_), work,
                     settings.batch_chunk_rows, settings.batch_max_line_bytes, lanes=settings.batch_lanes,
                     id_column=id_column, bucketing=settings.batch_bucketing, output_format=output_format)
    return dict(orjson.loads(make_report("ok", {"part": index, "range": range_}, model_info(model), stats)))
