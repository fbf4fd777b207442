"""One batch measurement in a fresh process (so peak memory is its own); prints a JSON line.

    python -m bench.peers.batch_child runner STORE_URI MODEL INPUT.npy OUTPUT_DIR CHUNK
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
    if mode == "runner":
        store_uri, model, source, output, chunk = sys.argv[2:7]
        from functions.batch.local import for_batch, run_local
        from functions.core.model_cache import ModelCache
        from functions.core.settings import Settings
        from functions.core.store import open_store

        settings = for_batch(Settings(store=store_uri, batch_chunk_rows=int(chunk)))
        cache = ModelCache(open_store(store_uri), settings)
        cache.get(model)  # load outside the timed part, as a warm container would
        started = time.perf_counter()
        stats = run_local(cache, model, Path(source), Path(output))
        seconds, rows = time.perf_counter() - started, stats.rows_ok
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
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": round(peak_mb, 1)}))


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
