"""Batch runner throughput and peak memory against raw batched ``session.run`` on the same rows.

digits-cnn (the heaviest demo model; shipped CPU variant) on .npy files of random 8x8 images. The runner
(``maas batch``'s code: streaming read, per-row validation, predictions and errors written as JSON lines)
and the raw loop (the whole array preprocessed in memory, then ``session.run`` per chunk, no output) each
run in a fresh process, chunks of 1024 rows, all cores as intra-op threads; the model load is not timed.
Peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TITLE = "Batch: runner throughput and peak memory vs raw session.run"
ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1024
TEXT_CHUNK = 256


def _child(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "bench.peers.batch_child", *args], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=1200)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run(quick: bool) -> dict[str, Any]:
    from functions.core.store import LocalStore
    from model_build.pipeline import build
    from model_build.recipes import load_recipe

    sizes = [20_000, 100_000] if quick else [100_000, 1_000_000]
    repeats = 1 if quick else 5
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = LocalStore(work / "store")
        manifest = build(load_recipe("digits-cnn"), store, quick=True)
        variant = manifest.variant(manifest.selected["cpu"])
        onnx_path = store.root / "models/digits-cnn/versions" / manifest.version / str(variant.file)
        for size in sizes:
            source = work / f"images-{size}.npy"
            np.save(source, np.random.default_rng(0).integers(0, 17, size=(size, 8, 8)).astype(np.float32))
            runner, raw = [], []
            for attempt in range(repeats):
                output = work / f"out-{size}-{attempt}"
                runner.append(_child("runner", store.uri, "digits-cnn", str(source), str(output), str(CHUNK)))
                raw.append(_child("raw", str(onnx_path), str(source), str(CHUNK)))
            runner_rps = statistics.median(r["rows"] / r["seconds"] for r in runner)
            raw_rps = statistics.median(r["rows"] / r["seconds"] for r in raw)
            rows_out.append({"rows": size, "input_mb": round(source.stat().st_size / 2**20, 1),
                             "runner_rows_per_s": round(runner_rps), "raw_rows_per_s": round(raw_rps),
                             "ratio": round(runner_rps / raw_rps, 3),
                             "runner_peak_mb": max(r["peak_mb"] for r in runner),
                             "raw_peak_mb": max(r["peak_mb"] for r in raw), "runs": {"runner": runner, "raw": raw}})
        text = _text_model(work, store, 1_000 if quick else 4_000, repeats)
    return {"quick": quick, "model": "digits-cnn", "variant": variant.name, "chunk_rows": CHUNK, "sizes": rows_out,
            "text": text}


def _text_model(work: Path, store: Any, size: int, repeats: int) -> dict[str, Any]:
    """The same comparison on minilm-embed (a heavy model): .jsonl texts, chunks of TEXT_CHUNK."""
    import orjson

    from model_build.pretrained import build_pretrained
    from model_build.recipes.minilm_embed import MiniLMEmbed
    from model_build.recipes.topic_corpus import paraphrase_sentences, topic_sentences

    manifest = build_pretrained(MiniLMEmbed(), store, quick=True)
    prefix = store.root / "models/minilm-embed/versions" / manifest.version
    variant = manifest.variant(manifest.selected["cpu"])
    sentences = topic_sentences()[0] + paraphrase_sentences()[0]
    source = work / "texts.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(sentences[i % len(sentences)]) for i in range(size)) + b"\n")
    runner, raw = [], []
    for attempt in range(repeats):
        runner.append(_child("runner", store.uri, "minilm-embed", str(source), str(work / f"text-out-{attempt}"),
                             str(TEXT_CHUNK)))
        raw.append(_child("raw-text", str(prefix / str(variant.file)), str(prefix / "tokenizer.json"), str(source),
                          str(TEXT_CHUNK)))
    runner_rps = statistics.median(r["rows"] / r["seconds"] for r in runner)
    raw_rps = statistics.median(r["rows"] / r["seconds"] for r in raw)
    return {"model": "minilm-embed", "variant": variant.name, "rows": size, "chunk_rows": TEXT_CHUNK,
            "runner_rows_per_s": round(runner_rps, 1), "raw_rows_per_s": round(raw_rps, 1),
            "ratio": round(runner_rps / raw_rps, 3), "runs": {"runner": runner, "raw": raw}}


def render(result: dict[str, Any]) -> str:
    lines = [f"Model: {result['model']} ({result['variant']}), chunks of {result['chunk_rows']} rows.", "",
             "| rows | input (MiB) | runner rows/s | raw session.run rows/s | runner / raw | runner peak RSS (MiB) "
             "| raw peak RSS (MiB) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['rows']:,} | {r['input_mb']} | {r['runner_rows_per_s']:,} | {r['raw_rows_per_s']:,} "
              f"| {r['ratio']:.2f}x | {r['runner_peak_mb']:.0f} | {r['raw_peak_mb']:.0f} |" for r in result["sizes"]]
    text = result.get("text")
    if text:
        lines += ["", f"Heavy model: {text['model']} ({text['variant']}), {text['rows']:,} texts from a .jsonl, "
                  f"chunks of {text['chunk_rows']}: runner {text['runner_rows_per_s']:,} texts/s, raw session.run "
                  f"on the same tokenized chunks {text['raw_rows_per_s']:,} texts/s: **{text['ratio']:.2f}x** "
                  "(the runner's per-row cost, tokenizing and writing JSON, matters less as the model gets heavier)."]
    lines += ["", "Targets: runner >= 0.8x raw; runner peak memory flat as the input grows (the raw loop holds the "
              "whole array)."]
    return "\n".join(lines)
