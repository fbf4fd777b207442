"""One batch measurement in a fresh process (so peak memory is its own); prints a JSON line.

    python -m bench.peers.batch_child runner STORE_URI MODEL INPUT.npy OUTPUT_DIR CHUNK [on|off [jsonl|parquet
                                         [HOST_PROCESSES]]]
    python bench/peers/batch_child.py host STORE_URI INPUT.jsonl OUTPUT_DIR HOST_PROCESSES jsonl|parquet
    python -m bench.peers.batch_child raw-model STORE_URI MODEL INPUT.jsonl CHUNK
    python -m bench.peers.batch_child raw MODEL.onnx INPUT.npy CHUNK
    python -m bench.peers.batch_child raw-text MODEL.onnx TOKENIZER.json INPUT.jsonl CHUNK
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    mode = sys.argv[1]
    extra: dict[str, object] = {}
    if mode == "host":
        seconds, rows, extra = _host(*sys.argv[2:7])
    elif mode == "runner":
        store_uri, model, source, output, chunk = sys.argv[2:7]
        bucketing, output_format, processes = (sys.argv[7:10] + ["on", "jsonl", "0"][len(sys.argv[7:10]):])
        from functions.batch.local import for_batch, output_files, run_local
        from functions.core.model_cache import ModelCache
        from functions.core.settings import Settings
        from functions.core.store import open_store

        settings = for_batch(Settings(store=store_uri, batch_chunk_rows=int(chunk), batch_bucketing=bucketing == "on",
                                      batch_host_processes=int(processes)))
        cache = ModelCache(open_store(store_uri), settings)
        cache.get(model)  # load outside the timed part, as a warm container would
        started = time.perf_counter()
        stats = run_local(cache, model, Path(source), Path(output), output_format=output_format)
        seconds, rows = time.perf_counter() - started, stats.rows_ok
        extra = {"output_bytes": (Path(output) / output_files(output_format)[0]).stat().st_size,
                 "inference_s": round(stats.seconds_inference, 3)}
    elif mode == "raw-model":
        seconds, rows = _raw_model(*sys.argv[2:6])
    elif mode == "raw-text":
        seconds, rows = _raw_text(*sys.argv[2:6])
    else:
        onnx_path, source, chunk = sys.argv[2:5]
        import numpy as np
        import onnxruntime as ort

        from functions.batch.local import batch_threads
        from functions.core.model_cache import session_options

        session = ort.InferenceSession(onnx_path, session_options(batch_threads(0)), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        array = np.load(source).astype(np.float32)
        array = (array / 16.0).reshape(len(array), 1, 8, 8)
        step = int(chunk)
        started = time.perf_counter()
        for start in range(0, len(array), step):
            session.run(None, {name: array[start:start + step]})
        seconds, rows = time.perf_counter() - started, len(array)
    peak_mb = _peak_rss_mb()
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": round(peak_mb, 1), **extra}))


def _host(store_uri: str, source: str, output: str, processes: str, output_format: str
          ) -> tuple[float, int, dict[str, object]]:
    """The host stages alone: ``run_local`` with the GPU worker's settings (one lane, file-order chunks) on
    minilm-embed whose session is replaced by a stand-in that returns precomputed embeddings of the right shape
    at no cost, so what is measured is reading, encoding, formatting and writing. CPU seconds of this process
    (the main one) and of its host processes (joined at the end of the run) are counted apart; the host
    processes' start-up (spawn, imports, the tokenizer) is measured once more on its own and reported beside.
    Runs the tree on PYTHONPATH, so the code before host processes existed can be measured too (it has no
    such setting: ``processes`` must then be 0)."""
    import dataclasses
    import resource

    import numpy as np

    from functions.batch.local import for_batch, run_local
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings
    from functions.core.store import open_store

    count = int(processes)
    settings = for_batch(Settings(store=store_uri), gpu=True)
    if count or any(f.name == "batch_host_processes" for f in dataclasses.fields(Settings)):
        settings = dataclasses.replace(settings, batch_host_processes=count)
    cache = ModelCache(open_store(store_uri), settings)
    model = cache.get("minilm-embed")
    width = model.session.run(None, model.preprocessor.encode(["a warm-up text"]))[0].shape[1]
    vectors = np.random.default_rng(0).normal(0, 0.05, size=(settings.batch_chunk_rows, width)).astype(np.float32)

    class StandIn:
        def run(self, names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            return [vectors[:len(next(iter(feeds.values())))]]

    model.session = StandIn()

    def cpu(who: int) -> float:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    startup = 0.0
    if count:  # one pool started and given a trivial job per worker: the start-up the run also pays
        from functions.batch.hostwork import Encoder, HostPool
        from functions.batch.lines import JsonLinesFormatter

        before = cpu(resource.RUSAGE_CHILDREN)
        with HostPool(count, Encoder(model.preprocessor, model.manifest.preprocessing),
                      JsonLinesFormatter(model.manifest)) as pool:
            for future in [pool.encode([1], ["warm"]) for _ in range(count)]:
                pool.result(future)
        startup = cpu(resource.RUSAGE_CHILDREN) - before
    main_cpu, children_cpu = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    stats = run_local(cache, "minilm-embed", Path(source), Path(output), output_format=output_format)
    seconds = time.perf_counter() - started
    return seconds, stats.rows_ok, {"main_cpu_s": round(cpu(resource.RUSAGE_SELF) - main_cpu, 3),
                                    "host_processes_cpu_s": round(cpu(resource.RUSAGE_CHILDREN) - children_cpu, 3),
                                    "host_processes_startup_cpu_s": round(startup, 3)}


def _raw_model(store_uri: str, name: str, source: str, chunk: str) -> tuple[float, int]:
    """A store's model (its shipped CPU variant) with every core as intra-op threads; the texts encoded up front
    in file-order chunks (padded to each chunk's longest, as the runner without bucketing pads), then only
    ``session.run`` is timed."""
    import orjson

    from functions.batch.local import batch_threads
    from functions.core.model_cache import ModelCache
    from functions.core.service import PredictionService
    from functions.core.settings import Settings
    from functions.core.store import open_store

    settings = Settings(store=store_uri, intra_op_threads=batch_threads(0))
    model = ModelCache(open_store(store_uri), settings).get(name)
    texts = [orjson.loads(line) for line in Path(source).read_bytes().splitlines()]
    step = int(chunk)
    feeds = [PredictionService.encode(model, texts[i:i + step]) for i in range(0, len(texts), step)]
    started = time.perf_counter()
    for feed in feeds:
        model.session.run(None, feed)
    return time.perf_counter() - started, len(texts)


def _raw_text(onnx_path: str, tokenizer_file: str, source: str, chunk: str) -> tuple[float, int]:
    """Texts tokenized up front into the runner's chunks (padded per chunk), then only session.run is timed."""
    import onnxruntime as ort
    import orjson

    from functions.batch.local import batch_threads
    from functions.core.manifest import TokenizerPreprocessing
    from functions.core.model_cache import session_options
    from functions.core.preprocessing import TokenizerPreprocessor

    session = ort.InferenceSession(onnx_path, session_options(batch_threads(0)), providers=["CPUExecutionProvider"])
    spec = TokenizerPreprocessing(tokenizer_file="tokenizer.json", max_length=128, max_chars=20_000,
                                  inputs=[i.name for i in session.get_inputs()])  # type: ignore[misc]
    tokenizer = TokenizerPreprocessor(spec, Path(tokenizer_file).read_bytes(), "input_ids")
    texts = [orjson.loads(line) for line in Path(source).read_bytes().splitlines()]
    step = int(chunk)
    feeds = [tokenizer.encode(texts[i:i + step]) for i in range(0, len(texts), step)]
    started = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    return time.perf_counter() - started, len(texts)


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss survives exec and would report the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
