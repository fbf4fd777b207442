"""The runner's threaded stages: order kept, bounded read-ahead, errors raised in the consumer after what came
before them, and threads stopped when the consumer leaves early."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from functions.batch.formats import Chunk, UnreadableInputError, read_chunks
from functions.batch.pipeline import ahead
from functions.batch.runner import run_batch
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore


def test_items_come_in_order_and_the_producer_stays_within_its_depth() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    with ahead(source(), 3, "test-ahead") as stage:
        first = next(stage)
        for _ in range(30_000):  # wait (no timing asserted) until the producer has filled its queue
            if stage._queue.full():
                break
            time.sleep(0.001)
        assert stage._queue.full()  # and now it is blocked on the next put
        assert first == 0 and len(produced) <= 1 + 3 + 1  # taken, queued, one in hand
        rest = list(stage)
    assert [first, *rest] == list(range(50))


def test_an_error_arrives_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise UnreadableInputError("broken at item 3")

    got = []
    with ahead(source(), 2, "test-ahead") as stage, pytest.raises(UnreadableInputError, match="item 3"):
        for item in stage:
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.set()

    with ahead(source(), 2, "test-ahead-early") as stage:
        assert next(stage) == 0
    assert closed.wait(2)
    assert not [t for t in threading.enumerate() if t.name == "test-ahead-early"]


def test_a_reader_failing_midway_leaves_the_chunks_before_it_written(built_store: LocalStore,
                                                                     tmp_path: Path) -> None:
    settings = Settings(store=built_store.uri, cache_dir=str(tmp_path / "cache"))
    model = ModelCache(built_store, settings).get("digits-cnn")
    rows = np.random.default_rng(1).integers(0, 17, size=(40, 64)).astype(float)
    source = tmp_path / "images.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(r.tolist()) for r in rows) + b"\n")

    def failing() -> Iterator[Chunk]:
        for index, chunk in enumerate(read_chunks(source, ".jsonl", model.manifest.preprocessing, 10, 1 << 20)):
            if index == 3:
                raise UnreadableInputError("the object went away")
            yield chunk

    predictions, errors = io.BytesIO(), io.BytesIO()
    with pytest.raises(UnreadableInputError, match="went away"):
        run_batch(model, failing(), predictions, errors, lanes=2)
    lines = [orjson.loads(line)["line"] for line in predictions.getvalue().splitlines()]
    assert lines == list(range(1, 31))
    assert not [t for t in threading.enumerate() if t.name.startswith("maas-batch-")]
