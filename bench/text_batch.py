"""Text batch throughput: length bucketing and the overlapped pipeline against raw session.run, and Parquet
against JSON-lines output.

A mixed-length .jsonl of 8 to 200 words per text (the project's topic sentences, joined and cut) goes through
``maas batch``'s runner (fresh process per run, model load not timed, every core) for minilm-embed and
text-lstm (their shipped CPU variants): with bucketing, without it (``MAAS_BATCH_BUCKETING=off``: one run per
chunk padded to its longest text), and raw ``session.run`` on the same texts encoded up front in file-order
chunks padded the same way (one session with every core as intra-op threads, nothing read or written). Then
minilm-embed's embeddings written as JSON lines and as Parquet (size and rows/s), and digits-cnn (.npy) runner
against raw, the check that the threaded pipeline costs small models nothing.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

TITLE = "Batch: text bucketing, the overlapped pipeline and Parquet output"
CHUNK = 256


def _texts(path: Path, rows: int, seed: int = 0) -> float:
    """``rows`` texts of 8 to 200 words; returns the mean word count."""
    from model_build.recipes.topic_corpus import paraphrase_sentences, topic_sentences

    words = " ".join(topic_sentences()[0] + paraphrase_sentences()[0]).split()
    rng = np.random.default_rng(seed)
    counts = rng.integers(8, 201, size=rows)
    starts = rng.integers(0, len(words) - 201, size=rows)
    path.write_bytes(b"\n".join(orjson.dumps(" ".join(words[s:s + n])) for s, n in zip(starts, counts, strict=True))
                     + b"\n")
    return float(counts.mean())


def _median_rps(runs: list[dict[str, Any]]) -> float:
    return float(statistics.median(r["rows"] / r["seconds"] for r in runs))


def run(quick: bool) -> dict[str, Any]:
    from bench.batch import _child
    from functions.core.store import LocalStore
    from model_build.pipeline import build
    from model_build.pretrained import build_pretrained
    from model_build.recipes import load_recipe

    repeats = 1 if quick else 2
    sizes = {"minilm-embed": 300 if quick else 1_000, "text-lstm": 10_000 if quick else 50_000}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = LocalStore(work / "store")
        manifests = {"minilm-embed": build_pretrained(load_recipe("minilm-embed"), store, quick=True),  # type: ignore[arg-type]
                     "text-lstm": build(load_recipe("text-lstm"), store, quick=True),  # type: ignore[arg-type]
                     "digits-cnn": build(load_recipe("digits-cnn"), store, quick=True)}  # type: ignore[arg-type]
        models = []
        for name, rows in sizes.items():
            source = work / f"{name}.jsonl"
            mean_words = _texts(source, rows)
            runs: dict[str, list[dict[str, Any]]] = {"bucketed": [], "unbucketed": [], "raw": [], "parquet": []}
            for attempt in range(repeats):
                out = work / f"{name}-{attempt}"
                runs["bucketed"].append(_child("runner", store.uri, name, str(source), f"{out}-on", str(CHUNK), "on"))
                runs["unbucketed"].append(_child("runner", store.uri, name, str(source), f"{out}-off", str(CHUNK),
                                                 "off"))
                runs["raw"].append(_child("raw-model", store.uri, name, str(source), str(CHUNK)))
                if name == "minilm-embed":
                    runs["parquet"].append(_child("runner", store.uri, name, str(source), f"{out}-pq", str(CHUNK),
                                                  "on", "parquet"))
            rps = {kind: round(_median_rps(found), 1) for kind, found in runs.items() if found}
            entry: dict[str, Any] = {
                "model": name, "variant": manifests[name].selected["cpu"], "rows": rows,
                "mean_words": round(mean_words, 1), "rows_per_s": rps,
                "bucketed_vs_unbucketed": round(rps["bucketed"] / rps["unbucketed"], 3),
                "bucketed_vs_raw": round(rps["bucketed"] / rps["raw"], 3),
                "unbucketed_vs_raw": round(rps["unbucketed"] / rps["raw"], 3), "runs": runs}
            if runs["parquet"]:
                entry["output"] = {"jsonl_bytes": runs["bucketed"][0]["output_bytes"],
                                   "parquet_bytes": runs["parquet"][0]["output_bytes"],
                                   "parquet_vs_jsonl_size": round(runs["parquet"][0]["output_bytes"]
                                                                  / runs["bucketed"][0]["output_bytes"], 3),
                                   "parquet_vs_jsonl_rows_per_s": round(rps["parquet"] / rps["bucketed"], 3)}
            models.append(entry)
        digits = _digits(work, store, manifests["digits-cnn"], 50_000 if quick else 200_000, repeats)
    return {"quick": quick, "chunk_rows": CHUNK, "models": models, "digits": digits}


def _digits(work: Path, store: Any, manifest: Any, size: int, repeats: int) -> dict[str, Any]:
    from bench.batch import _child

    variant = manifest.variant(manifest.selected["cpu"])
    onnx_path = store.root / "models/digits-cnn/versions" / manifest.version / str(variant.file)
    source = work / "images.npy"
    np.save(source, np.random.default_rng(0).integers(0, 17, size=(size, 8, 8)).astype(np.float32))
    runner = [_child("runner", store.uri, "digits-cnn", str(source), str(work / f"digits-{i}"), "1024")
              for i in range(repeats)]
    raw = [_child("raw", str(onnx_path), str(source), "1024") for _ in range(repeats)]
    return {"rows": size, "variant": variant.name, "runner_rows_per_s": round(_median_rps(runner)),
            "raw_rows_per_s": round(_median_rps(raw)), "ratio": round(_median_rps(runner) / _median_rps(raw), 3),
            "runs": {"runner": runner, "raw": raw}}


def render(result: dict[str, Any]) -> str:
    lines = [f"Mixed-length texts (8 to 200 words), chunks of {result['chunk_rows']} rows, every core; ratios from "
             "runs side by side in one session.", "",
             "| model (variant) | texts | mean words | runner, bucketing (rows/s) | runner, no bucketing | raw "
             "session.run, file-order chunks | bucketing / none | bucketing / raw | none / raw |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        rps = m["rows_per_s"]
        lines.append(f"| {m['model']} ({m['variant']}) | {m['rows']:,} | {m['mean_words']} | {rps['bucketed']:,} "
                     f"| {rps['unbucketed']:,} | {rps['raw']:,} | **{m['bucketed_vs_unbucketed']:.2f}x** "
                     f"| {m['bucketed_vs_raw']:.2f}x | {m['unbucketed_vs_raw']:.2f}x |")
    for m in result["models"]:
        if "output" in m:
            o = m["output"]
            lines += ["", f"{m['model']} predictions as Parquet against JSON lines: {o['parquet_bytes'] / 2**20:.1f} "
                      f"MiB against {o['jsonl_bytes'] / 2**20:.1f} MiB (**{o['parquet_vs_jsonl_size']:.2f}x** the "
                      f"size), {o['parquet_vs_jsonl_rows_per_s']:.2f}x the rows/s of the same run writing JSON lines."]
    d = result["digits"]
    lines += ["", f"digits-cnn ({d['variant']}), {d['rows']:,} rows of .npy: runner {d['runner_rows_per_s']:,} rows/s, "
              f"raw session.run {d['raw_rows_per_s']:,} rows/s: **{d['ratio']:.2f}x** (target >= 0.8x).", "",
              "text-lstm pads every text to its fixed 32 tokens, so it is not bucketed (its two runner columns are "
              "the same code); its gain over raw comes from the overlapped pipeline alone. GPU figures: "
              "`make bench-gpu` (bench/gpu.py) on a CUDA machine."]
    return "\n".join(lines)
