"""Fan-out: ``maas batch --workers 1`` against ``--workers 2`` (the split, parts and merge of the cloud
fan-out, with processes as children) on digits-cnn (.npy images) and minilm-embed (.jsonl texts).

Each run is the whole CLI in a fresh process (model load, split, parts, merge included); rows/s is rows over
wall time; peak RSS is the largest single process (the CLI or one worker). The wall times of 1 GB and 50 GB
inputs are on paper, from the measured one-worker throughput of this machine: rows = bytes / bytes-per-row of
the measured input; rows/s = rows / (one worker's wall time - its fixed cost); N children take
rows / (N x rows/s) plus one child's fixed cost (a 10-row input's wall time: start, model load) plus the
split's newline count at READ_MB_S (.jsonl; .npy needs none); cost is the total child time at
Lambda's arm64 price for a 3,008 MB function (children x duration, about the same whatever N).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TITLE = "Fan-out: maas batch --workers 1 vs 2, and big inputs on paper"
ROOT = Path(__file__).resolve().parents[1]
READ_MB_S = 500.0  # the split step's newline count over parallel ranged GETs (assumed, not measured here)
GB_S_ARM64 = 0.0000133334
LAMBDA_GB = 3008 / 1024
CHILDREN = (100, 1000)
SIZES_GB = (1, 50)


def _cli(store: str, model: str, source: Path, output: Path, workers: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.peers.fanout_child", sys.executable, "-m", "maas", "batch",
               model, "--input", str(source), "--output", str(output), "--workers", str(workers), "--store", store]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=1800)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _measure(store: str, model: str, source: Path, tiny: Path, rows: int, work: Path) -> dict[str, Any]:
    runs = {w: _cli(store, model, source, work / f"{model}-{w}", w) for w in (1, 2)}
    fixed = _cli(store, model, tiny, work / f"{model}-tiny", 1)["seconds"]
    bytes_per_row = source.stat().st_size / rows
    return {"model": model, "rows": rows, "input_mb": round(source.stat().st_size / 2**20, 1),
            "bytes_per_row": round(bytes_per_row, 1), "fixed_s": round(fixed, 2),
            "workers": {str(w): {"rows_per_s": round(rows / r["seconds"], 1), "seconds": round(r["seconds"], 2),
                            "peak_mb": r["peak_mb"]} for w, r in runs.items()},
            "speedup": round(runs[1]["seconds"] / runs[2]["seconds"], 2)}


def paper(m: dict[str, Any], read_mb_s: float) -> list[dict[str, Any]]:
    """1 GB and 50 GB on one worker and on N children, from one worker's rows/s net of its fixed cost."""
    one = m["workers"]["1"]
    rps = m["rows"] / max(one["seconds"] - m["fixed_s"], 1e-3)
    rows = []
    for gb in SIZES_GB:
        size = gb * 1e9
        big_rows = size / m["bytes_per_row"]
        alone = big_rows / rps
        row = {"gb": gb, "rows": round(big_rows), "one_worker_h": round(alone / 3600, 2),
               "cost_usd": round(alone * LAMBDA_GB * GB_S_ARM64, 2)}
        for n in CHILDREN:
            split = 0.0 if m["model"] == "digits-cnn" else size / (read_mb_s * 1e6)  # .npy needs no count
            row[f"children_{n}_min"] = round((split + m["fixed_s"] + big_rows / (n * rps)) / 60, 1)
        rows.append(row)
    return rows


def run(quick: bool) -> dict[str, Any]:
    import orjson

    from functions.core.store import LocalStore
    from model_build.pipeline import build
    from model_build.pretrained import build_pretrained
    from model_build.recipes import load_recipe
    from model_build.recipes.minilm_embed import MiniLMEmbed
    from model_build.recipes.topic_corpus import paraphrase_sentences, topic_sentences

    images, texts = (100_000, 1_000) if quick else (400_000, 4_000)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = LocalStore(work / "store")
        build(load_recipe("digits-cnn"), store, quick=True)
        build_pretrained(MiniLMEmbed(), store, quick=True)
        rng = np.random.default_rng(0)
        np.save(work / "images.npy", rng.integers(0, 17, size=(images, 8, 8)).astype(np.float32))
        np.save(work / "tiny.npy", rng.integers(0, 17, size=(10, 8, 8)).astype(np.float32))
        sentences = topic_sentences()[0] + paraphrase_sentences()[0]
        (work / "texts.jsonl").write_bytes(
            b"\n".join(orjson.dumps(sentences[i % len(sentences)]) for i in range(texts)) + b"\n")
        (work / "tiny.jsonl").write_bytes(b"\n".join(orjson.dumps(s) for s in sentences[:10]) + b"\n")
        results = [_measure(store.uri, "digits-cnn", work / "images.npy", work / "tiny.npy", images, work),
                   _measure(store.uri, "minilm-embed", work / "texts.jsonl", work / "tiny.jsonl", texts, work)]
    return {"quick": quick, "read_mb_s": READ_MB_S, "models": results}


def render(result: dict[str, Any]) -> str:
    lines = [f"Note: {result['note']}.", ""] if result.get("note") else []
    lines += ["| model | rows | input (MiB) | workers | rows/s | wall (s) | peak RSS per process (MiB) | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        for w, r in m["workers"].items():
            lines.append(f"| {m['model']} | {m['rows']:,} | {m['input_mb']} | {w} | {r['rows_per_s']:,} | "
                         f"{r['seconds']} | {r['peak_mb']:.0f} | {m['speedup'] if str(w) == '2' else ''} |")
    lines += ["", "On paper, from one worker's rows/s net of its fixed cost (this machine's cores, not Lambda's): "
              f"the .jsonl split counts newlines at {result['read_mb_s']:.0f} MB/s (.npy needs no count), each "
              "child's fixed cost = a 10-row run's wall time.", "",
              "| model | input | rows | one worker | 100 children | 1,000 children "
              "| Lambda cost (children x duration) |",
              "|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        for p in paper(m, result["read_mb_s"]):
            lines.append(f"| {m['model']} | {p['gb']} GB | {p['rows']:,} | {p['one_worker_h']} h | "
                         f"{p['children_100_min']} min | {p['children_1000_min']} min | ${p['cost_usd']} |")
    return "\n".join(lines)
