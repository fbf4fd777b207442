"""GPU worker figures (``make bench-gpu``): minilm-embed's fp16 variant on CUDA, as the AWS Batch worker runs
it, against the CPU variant on the CPU (one intra-op thread, the serving default) and PyTorch fp16 eager on
CUDA; one batch of 32 texts per run, median of the timed runs. Then a batch of 256 x 128 tokens against
PyTorch fp16, and ``run_local`` end to end (the overlapped pipeline, threads only and with host processes)
against the session's own throughput on the same batches.

Without CUDA (no onnxruntime CUDA provider or no ``torch.cuda``) it says so plainly and exits 0. With CUDA it
stores ``bench/results/gpu.json`` and regenerates docs/benchmarks.md.

    python -m bench.gpu [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL = "minilm-embed"
BATCH = 32
TITLE = "GPU worker: minilm-embed fp16 on CUDA against the CPU variant and PyTorch fp16"
ROOT = Path(__file__).resolve().parents[1]


def cuda_status() -> tuple[bool, str]:
    """Whether CUDA is usable by both onnxruntime and PyTorch, and a plain sentence saying why not."""
    import onnxruntime as ort

    from functions.batch.worker import execution_providers

    target, providers = execution_providers()
    import torch

    if target != "gpu":
        return False, (f"no GPU is present: onnxruntime offers {', '.join(ort.get_available_providers())} "
                       "(no CUDAExecutionProvider); the GPU benchmark was skipped")
    if not torch.cuda.is_available():
        return False, "no GPU is present for PyTorch (torch.cuda.is_available() is False); skipped"
    return True, f"CUDA: {torch.cuda.get_device_name(0)}; onnxruntime providers {', '.join(providers)}"


def _median_ms(run: Callable[[], Any], rounds: int) -> float:
    for _ in range(3):
        run()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(rounds: int) -> dict[str, Any]:
    """Build minilm-embed, then time the three contenders on the same tokenized batch."""
    import torch

    from functions.batch.worker import execution_providers
    from functions.core.model_cache import ModelCache
    from functions.core.service import PredictionService
    from functions.core.settings import Settings
    from functions.core.store import LocalStore
    from model_build.recipes import load_recipe
    from model_build.recipes.minilm_embed import MiniLMEmbed

    with tempfile.TemporaryDirectory() as tmp:
        from model_build.pretrained import build_pretrained

        store = LocalStore(Path(tmp) / "store")
        recipe = load_recipe(MODEL)
        manifest = build_pretrained(recipe, store)  # type: ignore[arg-type]
        settings = Settings(store=store.uri)
        _, providers = execution_providers()
        gpu = ModelCache(store, settings, target="gpu", providers=providers).get(MODEL, manifest.version)
        cpu = ModelCache(store, settings).get(MODEL, manifest.version)
        texts = [MiniLMEmbed.SAMPLES[i % len(MiniLMEmbed.SAMPLES)] for i in range(BATCH)]
        feeds = cpu.preprocessor.encode(texts)
        encoder, _ = MiniLMEmbed().load()
        module = encoder.half().cuda()
        torch_feeds = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}

        def torch_run() -> None:
            with torch.inference_mode():
                module(**torch_feeds)
            torch.cuda.synchronize()

        long_feeds = _long_batch(gpu)
        torch_long = {k: torch.from_numpy(v).cuda() for k, v in long_feeds.items()}

        def torch_long_run() -> None:
            with torch.inference_mode():
                module(**torch_long)
            torch.cuda.synchronize()

        result = {"gpu_variant": gpu.variant.name, "cpu_variant": cpu.variant.name, "batch": BATCH,
                  "worker fp16 on CUDA (ms)": _median_ms(lambda: PredictionService.run(gpu, feeds), rounds),
                  "CPU variant on the CPU (ms)": _median_ms(lambda: PredictionService.run(cpu, feeds), rounds),
                  "PyTorch fp16 eager on CUDA (ms)": _median_ms(torch_run, rounds),
                  "long batch": f"{LONG_BATCH} x {LONG_TOKENS} tokens",
                  "worker fp16 on CUDA, long batch (ms)": _median_ms(lambda: PredictionService.run(gpu, long_feeds),
                                                                     rounds),
                  "PyTorch fp16 eager on CUDA, long batch (ms)": _median_ms(torch_long_run, rounds)}
        result.update(_end_to_end(store, manifest.version, providers, Path(tmp)))
        return result


LONG_BATCH, LONG_TOKENS = 256, 128
END_TO_END_ROWS = 200_000
"""Enough rows that the host processes' start (once per run, about half a second) weighs little, as in the
AWS Batch worker's large inputs (the figures before host processes were measured on 20,000)."""
WARM_ROWS = 20_000


def _long_batch(model: Any) -> dict[str, Any]:
    """LONG_BATCH texts long enough to fill LONG_TOKENS tokens, padded (and truncated) to exactly that many."""
    from model_build.recipes.minilm_embed import MiniLMEmbed

    words = " ".join(MiniLMEmbed.SAMPLES).split()
    texts = [" ".join(words[i % len(words):] + words)[:2000] for i in range(LONG_BATCH)]
    encodings = model.preprocessor.tokenize(texts)
    for encoding in encodings:
        encoding.truncate(LONG_TOKENS)
    return dict(model.preprocessor.pad(encodings, LONG_TOKENS))


def _end_to_end(store: Any, version: str, providers: list[str], work: Path, rows: int = END_TO_END_ROWS,
                target: str = "gpu") -> dict[str, Any]:
    """``run_local`` on ``rows`` texts of 8 to 60 words with the worker's settings (one GPU lane, file-order
    chunks, the overlapped pipeline), threads only and with host processes (``auto``: every core but two),
    against the session's own time on the same batches, encoded up front. (``target="cpu"`` with the CPU
    provider runs the same steps without a GPU: the tests' dry run.)"""
    import dataclasses

    import numpy as np
    import orjson

    from functions.batch.bucketing import bucket
    from functions.batch.local import for_batch, run_local
    from functions.core.model_cache import ModelCache
    from functions.core.preprocessing import TokenizerPreprocessor
    from functions.core.settings import Settings
    from model_build.recipes.minilm_embed import MiniLMEmbed

    words = " ".join(MiniLMEmbed.SAMPLES).split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(8, 61))).tolist()) for _ in range(rows)]
    source, warm = work / "texts.jsonl", work / "warm.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(t) for t in texts) + b"\n")
    warm.write_bytes(b"\n".join(orjson.dumps(t) for t in texts[:WARM_ROWS]) + b"\n")
    settings = for_batch(Settings(store=store.uri), gpu=True)  # auto: host processes
    threads = dataclasses.replace(settings, batch_host_processes=0)
    caches = {name: ModelCache(store, chosen, target=target, providers=providers)  # type: ignore[arg-type]
              for name, chosen in (("threads", threads), ("processes", settings))}
    rates: dict[str, float] = {}
    for name, cache in caches.items():
        run_local(cache, MODEL, warm, work / f"warm-{name}")  # warm-up: CUDA kernels for the batch shapes
        shutil.rmtree(work / f"warm-{name}")
        started = time.perf_counter()
        run_local(cache, MODEL, source, work / f"timed-{name}")
        rates[name] = rows / (time.perf_counter() - started)
    same = _same_file(work / "timed-threads/predictions.jsonl", work / "timed-processes/predictions.jsonl")
    for name in caches:
        shutil.rmtree(work / f"timed-{name}")
    parquet: dict[str, Any] = {}
    try:
        import pyarrow  # noqa: F401  (the worker image has it; a bare CUDA machine may not)
    except ImportError:
        pass
    else:
        for name, cache in caches.items():
            started = time.perf_counter()
            run_local(cache, MODEL, source, work / f"timed-parquet-{name}", output_format="parquet")
            label = "end-to-end rows/s, Parquet output" + (", host processes" if name == "processes" else "")
            parquet[label] = rows / (time.perf_counter() - started)
            shutil.rmtree(work / f"timed-parquet-{name}")
    startup = _pool_start(caches["processes"].get(MODEL, version), settings.batch_host_processes or 1)
    model = caches["threads"].get(MODEL, version)
    chunk = settings.batch_chunk_rows
    preprocessor = model.preprocessor
    assert isinstance(preprocessor, TokenizerPreprocessor)
    if settings.batch_bucketing:
        batches = [b for i in range(0, len(texts), chunk) for b in bucket(preprocessor, texts[i:i + chunk]).batches]
    else:  # the GPU worker's file-order chunks, each padded to its longest text
        batches = [preprocessor.encode(texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
    for feed in batches:  # warm: every shape seen once, as run_local's warm-up did
        model.session.run(None, feed)
    started = time.perf_counter()
    for feed in batches:
        model.session.run(None, feed)
    session = time.perf_counter() - started
    return {"end-to-end rows": rows, "end-to-end rows/s": rates["threads"],
            "end-to-end rows/s, host processes": rates["processes"], "host processes": settings.batch_host_processes,
            "host processes start (s)": startup,
            "host processes write the same bytes": same, "session rows/s, same batches": rows / session,
            "bucketing": settings.batch_bucketing, **parquet}


def _same_file(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (read in blocks: the outputs are over a gigabyte)."""
    with a.open("rb") as first, b.open("rb") as second:
        while True:
            block = first.read(1 << 24)
            if block != second.read(1 << 24):
                return False
            if not block:
                return True


def _pool_start(model: Any, processes: int) -> float:
    """Seconds until ``processes`` host processes have started and each done one small job (once per run)."""
    from functions.batch.hostwork import Encoder, HostPool
    from functions.batch.lines import JsonLinesFormatter

    started = time.perf_counter()
    with HostPool(processes, Encoder(model.preprocessor, model.manifest.preprocessing),
                  JsonLinesFormatter(model.manifest)) as pool:
        for future in [pool.encode([1], ["a warm-up text"]) for _ in range(processes)]:
            pool.result(future)
        seconds = time.perf_counter() - started
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    present, message = cuda_status()
    print(message, flush=True)
    if not present:
        return 0
    result = measure(args.rounds)
    for key, value in result.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    _store(result, message, args.rounds)
    return 0


def _store(result: dict[str, Any], device: str, rounds: int) -> None:
    import orjson

    from bench import machine
    from bench.run import DOC, RESULTS, write_doc

    document = {"benchmark": "gpu", "machine": machine.describe(), "command": "make bench-gpu", "device": device,
                "rounds": rounds, **result}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    write_doc(RESULTS, DOC)


def render(result: dict[str, Any]) -> str:
    worker = result["worker fp16 on CUDA (ms)"]
    rows = [("worker: shipped " + result["gpu_variant"] + " variant on CUDA (onnxruntime)", worker),
            ("shipped " + result["cpu_variant"] + " variant on the CPU, 1 intra-op thread",
             result["CPU variant on the CPU (ms)"]),
            ("PyTorch fp16 eager on CUDA", result["PyTorch fp16 eager on CUDA (ms)"])]
    lines = [f"{result['device']}; batch {result['batch']}, median of {result['rounds']} runs.", "",
             "| contender | ms per batch | texts/s | worker's speed-up |", "|---|---|---|---|"]
    lines += [f"| {name} | {ms:.2f} | {result['batch'] / ms * 1000:,.0f} | {ms / worker:.1f}x |" for name, ms in rows]
    if "worker fp16 on CUDA, long batch (ms)" in result:
        session = result["session rows/s, same batches"]
        long_worker = result["worker fp16 on CUDA, long batch (ms)"]
        long_torch = result["PyTorch fp16 eager on CUDA, long batch (ms)"]
        batches = "bucketing" if result.get("bucketing", True) else "file-order chunks"
        lines += ["", f"Batch of {result['long batch']}: worker {long_worker:.2f} ms, PyTorch fp16 eager "
                  f"{long_torch:.2f} ms (**{long_torch / long_worker:.2f}x**).",
                  "", f"End to end (`run_local`, {result['end-to-end rows']:,} texts of 8 to 60 words, the GPU "
                  f"worker's settings: the overlapped pipeline, {batches}) against the session's own "
                  f"{session:,.0f} rows/s on the same batches (target 60%):", "",
                  "| host work | JSON lines (rows/s) | share | Parquet (rows/s) | share |", "|---|---|---|---|---|"]
        processes = "end-to-end rows/s, host processes" in result
        kinds = [("threads only (one process)" if processes else "one process (the code before host processes)",
                  "end-to-end rows/s", "end-to-end rows/s, Parquet output")]
        if processes:
            kinds.append((f"{result['host processes']} host processes (`auto`)", "end-to-end rows/s, host processes",
                          "end-to-end rows/s, Parquet output, host processes"))
        for label, jsonl, parquet in kinds:
            rate = result[jsonl]
            cells = f"{rate:,.0f} | **{rate / session:.0%}**"
            cells += (f" | {result[parquet]:,.0f} | **{result[parquet] / session:.0%}**" if parquet in result
                      else " | not measured | ")
            lines.append(f"| {label} | {cells} |")
        if "host processes write the same bytes" in result:
            lines += ["", "Predictions with host processes equal the threads' byte for byte: "
                      f"{'yes' if result['host processes write the same bytes'] else '**no**'}. The host processes "
                      f"start in {result.get('host processes start (s)', float('nan')):.2f} s (once per run, "
                      "included above)."]
    else:
        lines += ["", "The batch 256 x 128 tokens row and the end-to-end row against the session's own throughput "
                  "are not measured yet: `make bench-gpu` on a CUDA machine adds them."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
