"""Session runs in several lanes write what one lane writes: the same rows, in input order, bad rows reported,
and a deadline stops only after every chunk already read is written."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import pytest

from functions.batch.formats import read_chunks
from functions.batch.local import for_batch, run_local
from functions.batch.runner import run_batch
from functions.core.errors import DeadlineError
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore


def _cache(store: LocalStore, tmp_path: Path, cores: int) -> ModelCache:
    settings = for_batch(Settings(store=store.uri, cache_dir=str(tmp_path / f"cache-{cores}"), batch_chunk_rows=16,
                                  batch_threads=cores))
    return ModelCache(store, settings)


def _images(tmp_path: Path) -> Path:
    """200 image rows as JSON lines, every 23rd one broken (wrong length or not numbers)."""
    rng = np.random.default_rng(7)
    lines = []
    for i in range(200):
        if i % 23 == 5:
            lines.append(b'["not", "pixels"]' if i % 2 else orjson.dumps([1.0, 2.0]))
        else:
            lines.append(orjson.dumps(rng.integers(0, 17, size=64).astype(float).tolist()))
    path = tmp_path / "images.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_for_batch_gives_lanes_of_one_thread_on_cpu_and_one_lane_on_gpu() -> None:
    cpu = for_batch(Settings(batch_threads=6))
    gpu = for_batch(Settings(batch_threads=6), gpu=True)
    assert (cpu.batch_lanes, cpu.intra_op_threads) == (6, 1)
    assert (gpu.batch_lanes, gpu.intra_op_threads, gpu.batch_bucketing) == (1, 6, False)  # bucketing: CPU only


def test_three_lanes_write_the_same_bytes_as_one(built_store: LocalStore, tmp_path: Path) -> None:
    source = _images(tmp_path)
    one = run_local(_cache(built_store, tmp_path, 1), "digits-cnn", source, tmp_path / "one")
    three = run_local(_cache(built_store, tmp_path, 3), "digits-cnn", source, tmp_path / "three")
    counts = (three.rows_ok, three.rows_failed, three.chunks)
    assert counts == (one.rows_ok, one.rows_failed, one.chunks) == (191, 9, 13)
    for name in ("predictions.jsonl", "errors.jsonl"):
        assert (tmp_path / "three" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    lines = [orjson.loads(row)["line"] for row in (tmp_path / "three/predictions.jsonl").read_bytes().splitlines()]
    assert lines == sorted(lines) and len(lines) == 191
    errors = [orjson.loads(row)["line"] for row in (tmp_path / "three/errors.jsonl").read_bytes().splitlines()]
    assert errors == [i + 1 for i in range(200) if i % 23 == 5]


def test_a_deadline_writes_every_chunk_read_before_it_stops(built_store: LocalStore, tmp_path: Path) -> None:
    cache = _cache(built_store, tmp_path, 3)
    model = cache.get("digits-cnn")
    chunks = read_chunks(_images(tmp_path), ".jsonl", model.manifest.preprocessing, 16, 1 << 20)
    asked = [0]

    def out_of_time() -> bool:
        asked[0] += 1
        return asked[0] > 5  # five chunks are read, the sixth is refused

    predictions, errors = io.BytesIO(), io.BytesIO()
    with pytest.raises(DeadlineError):
        run_batch(model, chunks, predictions, errors, out_of_time, lanes=3)
    written = [orjson.loads(row)["line"] for row in predictions.getvalue().splitlines()]
    reported = [orjson.loads(row)["line"] for row in errors.getvalue().splitlines()]
    assert sorted(written + reported) == list(range(1, 81))
