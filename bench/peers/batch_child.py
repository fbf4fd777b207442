"""One batch measurement in a fresh process (so peak memory is its own); prints a JSON line.

    python -m bench.peers.batch_child runner STORE_URI MODEL INPUT.npy OUTPUT_DIR CHUNK [on|off [jsonl|parquet]]
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
    if mode == "runner":
        store_uri, model, source, output, chunk = sys.argv[2:7]
        bucketing, output_format = (sys.argv[7:9] + ["on", "jsonl"][len(sys.argv[7:9]):])
        from functions.batch.local import for_batch, output_files, run_local
        from functions.core.model_cache import ModelCache
        from functions.core.settings import Settings
        from functions.core.store import open_store

        settings = for_batch(Settings(store=store_uri, batch_chunk_rows=int(chunk), batch_bucketing=bucketing == "on"))
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
