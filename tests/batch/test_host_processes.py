"""Host processes (functions/batch/hostwork.py) encode and format beside the session: the same bytes as the
threads (JSON lines and Parquet, a text and a numeric model), rows and errors in input order, a worker's
exception raised after the chunks before it, a killed worker a clear error, and no process left behind."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from functions.batch.formats import Chunk, read_chunks
from functions.batch.hostwork import Encoder, HostPool, loaded_modules
from functions.batch.lines import JsonLinesFormatter
from functions.batch.local import for_batch, host_processes, run_local
from functions.batch.runner import run_batch
from functions.core.errors import DeadlineError, HostProcessError
from functions.core.model_cache import LoadedModel, ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from maas.cli import main as cli
from tests.texts import keyed_texts

_EARLIER: set[int] = set()
"""Children this process already had when the test started (servers other tests' fixtures keep running)."""


@pytest.fixture(autouse=True)
def _earlier_children() -> Iterator[None]:
    _EARLIER.clear()
    _EARLIER.update(_children())
    yield
    _EARLIER.clear()


def _children() -> list[int]:
    """This process's live child processes started since the test began, but Python's own semaphore tracker
    (one per interpreter, started by the first pool and kept until exit, as for every multiprocessing user)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in command and int(pid) not in _EARLIER:
                found.append(int(pid))
    return found


def _cache(store: LocalStore, tmp_path: Path, processes: int) -> ModelCache:
    settings = for_batch(Settings(store=store.uri, cache_dir=str(tmp_path / "cache"), batch_chunk_rows=16,
                                  batch_threads=2, batch_host_processes=processes))
    return ModelCache(store, settings)


def _texts(tmp_path: Path) -> Path:
    """60 texts keyed by an id column; every 11th row is bad (empty text, or a ragged CSV row)."""
    words = ["rain", "match", "goal", "bread", "oven", "server", "reply", "late", "won", "baked"]
    return keyed_texts(tmp_path / "texts.csv", 60, words, 30, 11, 3, seed=4)


def _images(tmp_path: Path) -> Path:
    """50 image rows as JSON lines; every 9th is not an image."""
    rng = np.random.default_rng(8)
    lines = [b'["not", "pixels"]' if i % 9 == 4 else orjson.dumps(rng.integers(0, 17, size=64).astype(float).tolist())
             for i in range(50)]
    path = tmp_path / "images.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(("name", "source", "id_column"), [("text-lstm", _texts, "key"), ("digits-cnn", _images, None)])
def test_processes_write_the_bytes_of_threads(built_store: LocalStore, tmp_path: Path, name: str,
                                              source: object, id_column: str | None) -> None:
    path = source(tmp_path)  # type: ignore[operator]
    for output_format, predictions in (("jsonl", "predictions.jsonl"), ("parquet", "predictions.parquet")):
        folders = {}
        for processes in (0, 2):
            folder = tmp_path / f"{output_format}-{processes}"
            run_local(_cache(built_store, tmp_path, processes), name, path, folder, id_column=id_column,
                      output_format=output_format)
            assert not _children()
            folders[processes] = folder
        for file in (predictions, "errors.jsonl"):
            assert (folders[2] / file).read_bytes() == (folders[0] / file).read_bytes()
        reports = [orjson.loads((folders[n] / "report.json").read_bytes()) for n in (0, 2)]
        assert reports[0]["rows"] == reports[1]["rows"] and reports[0]["drift"] == reports[1]["drift"]
    errors = [orjson.loads(row) for row in (folders[2] / "errors.jsonl").read_bytes().splitlines()]
    if id_column:  # the header is line 1
        assert [(e["line"], e["id"]) for e in errors] == [(i + 2, f"k{i}") for i in range(60) if i % 11 == 3]
        expected = [i + 2 for i in range(60) if i % 11 != 3]
    else:
        assert [e["line"] for e in errors] == [i + 1 for i in range(50) if i % 9 == 4]
        expected = [i + 1 for i in range(50) if i % 9 != 4]
    lines = [orjson.loads(row)["line"] for row in (tmp_path / "jsonl-2/predictions.jsonl").read_bytes().splitlines()]
    assert lines == expected


class _Boom(str):
    """A text that passes for a string until a host process reads it."""

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("boom in a host process")


def _chunks(model: LoadedModel, source: Path, broken: int | None = None) -> Iterator[Chunk]:
    for index, chunk in enumerate(read_chunks(source, ".csv", model.manifest.preprocessing, 16, 1 << 20)):
        if index == broken:
            chunk.instances[0] = _Boom(chunk.instances[0])  # type: ignore[index]
        yield chunk


def test_an_exception_in_a_host_process_comes_after_the_chunks_before_it(built_store: LocalStore,
                                                                         tmp_path: Path) -> None:
    model = _cache(built_store, tmp_path, 2).get("text-lstm")
    predictions, errors = io.BytesIO(), io.BytesIO()
    with pytest.raises(RuntimeError, match="boom in a host process"):
        run_batch(model, _chunks(model, _texts(tmp_path), broken=2), predictions, errors, host_processes=2)
    written = [orjson.loads(row)["line"] for row in predictions.getvalue().splitlines()]
    reported = [orjson.loads(row)["line"] for row in errors.getvalue().splitlines()]
    assert sorted(written + reported) == list(range(2, 34))  # chunks 0 and 1 (16 rows each, from line 2)
    assert not _children()


def test_a_killed_host_process_stops_the_run_with_a_clear_error(built_store: LocalStore, tmp_path: Path) -> None:
    model = _cache(built_store, tmp_path, 1).get("text-lstm")

    def killing() -> Iterator[Chunk]:
        for index, chunk in enumerate(_chunks(model, _texts(tmp_path))):
            if index == 2:
                for _ in range(20_000):  # wait (no time asserted) for the first worker to be started
                    if multiprocessing.active_children():
                        break
                    time.sleep(0.001)
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            yield chunk

    predictions = io.BytesIO()
    with pytest.raises(HostProcessError, match="host process ended unexpectedly"):
        run_batch(model, killing(), predictions, io.BytesIO(), host_processes=1)
    written = [orjson.loads(row)["line"] for row in predictions.getvalue().splitlines()]
    good = [i + 2 for i in range(60) if i % 11 != 3]
    assert written == good[:len(written)] and len(written) < len(good)  # a prefix, in order; the run stopped
    assert not _children()


def test_a_deadline_with_processes_writes_every_chunk_read_before_it(built_store: LocalStore,
                                                                    tmp_path: Path) -> None:
    model = _cache(built_store, tmp_path, 2).get("text-lstm")
    asked = [0]

    def out_of_time() -> bool:
        asked[0] += 1
        return asked[0] > 2  # two chunks are taken, the third is refused

    predictions, errors = io.BytesIO(), io.BytesIO()
    with pytest.raises(DeadlineError):
        run_batch(model, _chunks(model, _texts(tmp_path)), predictions, errors, out_of_time, host_processes=2)
    written = [orjson.loads(row)["line"] for row in predictions.getvalue().splitlines()]
    reported = [orjson.loads(row)["line"] for row in errors.getvalue().splitlines()]
    assert sorted(written + reported) == list(range(2, 34))
    assert not _children()


def test_a_host_process_loads_neither_onnxruntime_nor_torch(built_store: LocalStore, tmp_path: Path) -> None:
    model = _cache(built_store, tmp_path, 1).get("text-lstm")
    encoder = Encoder(model.preprocessor, model.manifest.preprocessing)
    with HostPool(1, encoder, JsonLinesFormatter(model.manifest)) as pool:
        assert pool._executor.submit(loaded_modules, ("onnxruntime", "torch", "numpy")).result() == ["numpy"]
        assert pool.result(pool.encode([1, 2], ["rain", ""])).bad == [(2, "empty text")]
    assert not _children()


def test_the_setting_the_default_and_the_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for raw, value in (("auto", None), (" AUTO ", None), ("0", 0), ("6", 6)):
        monkeypatch.setenv("MAAS_BATCH_HOST_PROCESSES", raw)
        assert Settings.from_env().batch_host_processes == value
    for raw in ("many", "-1", "1.5", "300"):
        monkeypatch.setenv("MAAS_BATCH_HOST_PROCESSES", raw)
        with pytest.raises(ValueError, match="MAAS_BATCH_HOST_PROCESSES must be auto or"):
            Settings.from_env()
    monkeypatch.delenv("MAAS_BATCH_HOST_PROCESSES")
    assert [host_processes(None, cores, gpu=True) for cores in (1, 2, 4, 16)] == [1, 1, 2, 14]
    assert host_processes(None, 16, gpu=False) == 0 and host_processes(3, 16, gpu=False) == 3
    assert for_batch(Settings(batch_threads=8), gpu=True).batch_host_processes == 6
    assert for_batch(Settings(batch_threads=8, batch_host_processes=0), gpu=True).batch_host_processes == 0
    result = CliRunner().invoke(cli, ["batch", "iris", "--input", str(tmp_path / "x.csv"), "--output",
                                      str(tmp_path / "out"), "--host-processes", "lots"])
    assert result.exit_code == 2 and "--host-processes" in result.output and "'lots'" in result.output
    from functions.batch.worker import main as worker

    with pytest.raises(SystemExit) as exited:
        worker(["--bucket", "b", "--key", "inputs/iris/x.csv", "--host-processes", "-2"])
    assert exited.value.code == 2


_WITHOUT_SHM = """
import sys
from pathlib import Path
from functions.batch.local import for_batch, run_local
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import open_store

uri, cache, source, output = sys.argv[1:]
settings = for_batch(Settings(store=uri, cache_dir=cache, batch_chunk_rows=16, batch_threads=2,
                              batch_host_processes=2))
run_local(ModelCache(open_store(uri), settings), "text-lstm", Path(source), Path(output), id_column="key")
"""


def test_where_a_process_pool_cannot_start_the_host_work_runs_in_threads(built_store: LocalStore,
                                                                         tmp_path: Path) -> None:
    """AWS Lambda has no /dev/shm for a pool's semaphores: there (here, a read-only /dev/shm in a mount namespace
    of the run's own) host processes asked for are a warning and the same output from threads, not a failed
    input."""
    mounted = "mount -t tmpfs -o ro none /dev/shm"
    if subprocess.run(["unshare", "--mount", "sh", "-c", mounted], capture_output=True).returncode != 0:
        pytest.skip("needs unshare --mount (root) to hide /dev/shm")
    source = _texts(tmp_path)
    run_local(_cache(built_store, tmp_path, 0), "text-lstm", source, tmp_path / "threads", id_column="key")
    command = [sys.executable, "-c", _WITHOUT_SHM, built_store.uri, str(tmp_path / "cache"), str(source),
               str(tmp_path / "no-shm")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(["unshare", "--mount", "sh", "-c", f'{mounted} && exec "$@"', "sh", *command],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    warning = [orjson.loads(line) for line in done.stdout.splitlines() if "runs in threads" in line]
    assert warning and "cannot start here" in warning[0]["reason"]
    for name in ("predictions.jsonl", "errors.jsonl"):
        assert (tmp_path / "no-shm" / name).read_bytes() == (tmp_path / "threads" / name).read_bytes()
