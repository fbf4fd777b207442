"""Text batch throughput: length bucketing and the overlapped pipeline against raw session.run, host
processes, and Parquet against JSON-lines output.

A mixed-length .jsonl of 8 to 200 words per text (the project's topic sentences, joined and cut) goes through
``maas batch``'s runner (fresh process per run, model load not timed, every core) for minilm-embed and
text-lstm (their shipped CPU variants): with bucketing, without it (``MAAS_BATCH_BUCKETING=off``: one run per
chunk padded to its longest text), with bucketing and host processes, and raw ``session.run`` on the same texts
encoded up front in file-order chunks padded the same way (one session with every core as intra-op threads,
nothing read or written). Each figure is the best of the interleaved repeats (on a shared machine other work
only slows a run down). Then embeddings written as the runner writes them, as JSON lines and as Parquet (size
and time, in-process), digits-cnn (.npy) runner against raw, the check that the threaded pipeline costs small
models nothing, and the host stages' capacity: the GPU worker's runner with a stand-in session that costs
nothing, with 0, 1 and 2 host processes and the code from before them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

TITLE = "Batch: text bucketing, the overlapped pipeline, host processes and Parquet output"
CHUNK = 256
CPU_HOST_PROCESSES = 2
DIGITS_REPEATS = 5
"""digits-cnn's runs are short (about 2 s): more of them, so a busy spell on the shared machine matters less"""
"""Host processes in the CPU runs measured beside the default (threads only): one per core here."""


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


def _best_rps(runs: list[dict[str, Any]]) -> float:
    """The best of the runs: on a shared machine other work only ever slows a run down."""
    return float(max(r["rows"] / r["seconds"] for r in runs))


def run(quick: bool) -> dict[str, Any]:
    from bench.batch import _child
    from functions.core.store import LocalStore
    from model_build.pipeline import build
    from model_build.pretrained import build_pretrained
    from model_build.recipes import load_recipe

    repeats = 1 if quick else 3
    sizes = {"minilm-embed": 256 if quick else 512, "text-lstm": 10_000 if quick else 20_000}
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
            runs: dict[str, list[dict[str, Any]]] = {"bucketed": [], "unbucketed": [], "raw": [], "processes": []}
            commands = {"bucketed": ("runner", "on", "jsonl"), "unbucketed": ("runner", "off", "jsonl"),
                        "raw": ("raw-model",), "processes": ("runner", "on", "jsonl", str(CPU_HOST_PROCESSES))}
            kinds = list(commands)
            for attempt in range(repeats):  # interleaved, in a rotating order: a busy spell hits them alike
                for kind in kinds[attempt % len(kinds):] + kinds[:attempt % len(kinds)]:
                    command = commands[kind]
                    if command[0] == "raw-model":
                        runs[kind].append(_child("raw-model", store.uri, name, str(source), str(CHUNK)))
                    else:
                        runs[kind].append(_child("runner", store.uri, name, str(source),
                                                 str(work / f"{name}-{kind}-{attempt}"), str(CHUNK), *command[1:]))
            rps = {kind: round(_best_rps(found), 1) for kind, found in runs.items() if found}
            entry: dict[str, Any] = {
                "model": name, "variant": manifests[name].selected["cpu"], "rows": rows,
                "mean_words": round(mean_words, 1), "rows_per_s": rps,
                "bucketed_vs_unbucketed": round(rps["bucketed"] / rps["unbucketed"], 3),
                "bucketed_vs_raw": round(rps["bucketed"] / rps["raw"], 3),
                "unbucketed_vs_raw": round(rps["unbucketed"] / rps["raw"], 3),
                "processes_vs_threads": round(rps["processes"] / rps["bucketed"], 3), "runs": runs}
            models.append(entry)
        output = _output_formats(store, work, OUTPUT_ROWS // 4 if quick else OUTPUT_ROWS, repeats)
        digits = _digits(work, store, manifests["digits-cnn"], 50_000 if quick else 200_000,
                         max(repeats, DIGITS_REPEATS))
        host = _host_capacity(store, work, HOST_ROWS // 4 if quick else HOST_ROWS, repeats)
    return {"quick": quick, "chunk_rows": CHUNK, "repeats": repeats, "models": models, "output": output,
            "digits": digits, "host": host, "cpu_host_processes": CPU_HOST_PROCESSES}


OUTPUT_ROWS = 20_000
HOST_ROWS = 20_000
HOST_PROCESSES = (0, 1, 2)


def _host_capacity(store: Any, work: Path, rows: int, repeats: int) -> dict[str, Any]:
    """The host stages' capacity: ``run_local`` with the GPU worker's settings on ``rows`` texts of 8 to 60
    words (as bench/gpu.py's end-to-end row) for minilm-embed with a stand-in session that costs nothing
    (bench/peers/batch_child.py ``host``), JSON lines out, with 0, 1 and 2 host processes and with the code
    from before host processes (its tree from git, when there is one), interleaved; rows/s (best of
    ``repeats``) and CPU seconds per row of the main process and of the host processes, their start-up
    apart."""
    import os
    import subprocess
    import sys

    from bench.batch import ROOT
    from model_build.recipes.minilm_embed import MiniLMEmbed

    words = " ".join(MiniLMEmbed.SAMPLES).split()
    rng = np.random.default_rng(0)
    source = work / "host-texts.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(" ".join(rng.choice(words, size=int(rng.integers(8, 61))).tolist()))
                                  for _ in range(rows)) + b"\n")
    child = str(ROOT / "bench/peers/batch_child.py")
    kinds: dict[str, tuple[str, int]] = {f"{n} host processes": (str(ROOT), n) for n in HOST_PROCESSES}
    before = _tree_before_host_processes(work / "before")
    if before is not None:
        kinds["before host processes"] = (str(before), 0)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    names = list(kinds)
    for attempt in range(repeats):
        for kind in names[attempt % len(names):] + names[:attempt % len(names)]:
            tree, processes = kinds[kind]
            env = {**os.environ, "PYTHONPATH": tree}
            done = subprocess.run([sys.executable, child, "host", store.uri, str(source),
                                   str(work / f"host-{names.index(kind)}-{attempt}"), str(processes),
                                   "jsonl"], cwd=tree, env=env, capture_output=True, text=True, check=True,
                                  timeout=1200)
            runs[kind].append(orjson.loads(done.stdout.strip().splitlines()[-1]))
    figures: dict[str, Any] = {}
    for kind, found in runs.items():
        best = max(found, key=lambda r: r["rows"] / r["seconds"])
        worker_cpu = best.get("host_processes_cpu_s", 0.0) - best.get("host_processes_startup_cpu_s", 0.0)
        figures[kind] = {"rows_per_s": round(best["rows"] / best["seconds"]),
                         "main_cpu_us_per_row": round(best["main_cpu_s"] / best["rows"] * 1e6, 1),
                         "host_processes_cpu_us_per_row": round(max(0.0, worker_cpu) / best["rows"] * 1e6, 1),
                         "host_processes_startup_cpu_s": best.get("host_processes_startup_cpu_s", 0.0)}
    threads = figures["0 host processes"]["rows_per_s"]
    for entry in figures.values():
        entry["vs_threads"] = round(entry["rows_per_s"] / threads, 3)
    return {"rows": rows, "figures": figures, "runs": runs}


def _tree_before_host_processes(dest: Path) -> Path | None:
    """The ``functions`` package as it was before host processes came (the parent of the commit that added
    functions/batch/hostwork.py), or None without git or that history."""
    import subprocess

    from bench.batch import ROOT

    try:
        added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "functions/batch/hostwork.py"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        if not added:
            return None
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", f"{added[-1]}^", "functions"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return dest


def _output_formats(store: Any, work: Path, rows: int, repeats: int) -> dict[str, Any]:
    """minilm-embed's outputs (``rows`` embeddings of 384 float32) written as the runner writes them, chunk by
    chunk: JSON lines against Parquet, in this process (best of ``repeats``, interleaved), and their sizes."""
    import time

    from functions.batch.lines import prediction_lines
    from functions.batch.parquet import ParquetPredictions
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings

    model = ModelCache(store, Settings(store=store.uri, cache_dir=str(work / "cache"))).get("minilm-embed")
    vectors = np.random.default_rng(1).normal(0, 0.05, size=(rows, 384)).astype(np.float32)
    chunks = [(vectors[i:i + CHUNK], list(range(i + 1, i + 1 + len(vectors[i:i + CHUNK]))))
              for i in range(0, rows, CHUNK)]
    seconds: dict[str, list[float]] = {"jsonl": [], "parquet": []}
    sizes: dict[str, int] = {}
    for attempt in range(repeats):
        started = time.perf_counter()
        with (work / f"p{attempt}.jsonl").open("wb") as f:
            for output, lines in chunks:
                f.write(prediction_lines(model, output, lines))
        seconds["jsonl"].append(time.perf_counter() - started)
        started = time.perf_counter()
        sink = ParquetPredictions(work / f"p{attempt}.parquet", model)
        for output, lines in chunks:
            sink.add(model, output, lines, None)
        sink.close()
        seconds["parquet"].append(time.perf_counter() - started)
        if attempt == 0:
            sizes = {kind: (work / f"p0.{kind}").stat().st_size for kind in seconds}
        for kind in seconds:
            (work / f"p{attempt}.{kind}").unlink()
    best = {kind: min(found) for kind, found in seconds.items()}
    return {"rows": rows, "dimensions": 384, "bytes": sizes, "seconds": {k: round(v, 3) for k, v in best.items()},
            "parquet_vs_jsonl_size": round(sizes["parquet"] / sizes["jsonl"], 3),
            "parquet_vs_jsonl_rows_per_s": round(best["jsonl"] / best["parquet"], 2), "runs": seconds}


def _digits(work: Path, store: Any, manifest: Any, size: int, repeats: int) -> dict[str, Any]:
    from bench.batch import _child

    variant = manifest.variant(manifest.selected["cpu"])
    onnx_path = store.root / "models/digits-cnn/versions" / manifest.version / str(variant.file)
    source = work / "images.npy"
    np.save(source, np.random.default_rng(0).integers(0, 17, size=(size, 8, 8)).astype(np.float32))
    runner, raw, processes = [], [], []
    for i in range(repeats):  # interleaved
        runner.append(_child("runner", store.uri, "digits-cnn", str(source), str(work / f"digits-{i}"), "1024"))
        raw.append(_child("raw", str(onnx_path), str(source), "1024"))
        processes.append(_child("runner", store.uri, "digits-cnn", str(source), str(work / f"digits-p{i}"), "1024",
                                "on", "jsonl", str(CPU_HOST_PROCESSES)))
    return {"rows": size, "variant": variant.name, "repeats": repeats, "runner_rows_per_s": round(_best_rps(runner)),
            "raw_rows_per_s": round(_best_rps(raw)), "ratio": round(_best_rps(runner) / _best_rps(raw), 3),
            "processes_rows_per_s": round(_best_rps(processes)),
            "processes_ratio": round(_best_rps(processes) / _best_rps(raw), 3),
            "runs": {"runner": runner, "raw": raw, "processes": processes}}


def render(result: dict[str, Any]) -> str:
    lines = [f"Mixed-length texts (8 to 200 words), chunks of {result['chunk_rows']} rows, every core; best of "
             f"{result.get('repeats', 1)} interleaved runs each, ratios from runs side by side in one session.", "",
             "| model (variant) | texts | mean words | runner, bucketing (rows/s) | runner, no bucketing | raw "
             "session.run, file-order chunks | bucketing / none | bucketing / raw | none / raw |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        rps = m["rows_per_s"]
        lines.append(f"| {m['model']} ({m['variant']}) | {m['rows']:,} | {m['mean_words']} | {rps['bucketed']:,} "
                     f"| {rps['unbucketed']:,} | {rps['raw']:,} | **{m['bucketed_vs_unbucketed']:.2f}x** "
                     f"| {m['bucketed_vs_raw']:.2f}x | {m['unbucketed_vs_raw']:.2f}x |")
    o = result.get("output")
    if o:
        lines += ["", f"Writing {o['rows']:,} minilm-embed embeddings ({o['dimensions']} float32) chunk by chunk as "
                  f"the runner does: Parquet {o['bytes']['parquet'] / 2**20:.1f} MiB in "
                  f"{o['seconds']['parquet']:.2f} s, "
                  f"JSON lines {o['bytes']['jsonl'] / 2**20:.1f} MiB in {o['seconds']['jsonl']:.2f} s: "
                  f"**{o['parquet_vs_jsonl_size']:.2f}x** the size, **{o['parquet_vs_jsonl_rows_per_s']:.1f}x** the "
                  "rows/s."]
    d = result["digits"]
    lines += ["", f"digits-cnn ({d['variant']}), {d['rows']:,} rows of .npy, best of {d.get('repeats', 1)}: runner "
              f"{d['runner_rows_per_s']:,} rows/s, raw session.run {d['raw_rows_per_s']:,} rows/s: "
              f"**{d['ratio']:.2f}x** (target >= 0.8x).", "",
              "text-lstm pads every text to its fixed 32 tokens, so it is not bucketed (its two runner columns are "
              "the same code). Its session runs are so cheap that the runner is bound by the host work raw "
              "session.run leaves out (Python word tokenizing, JSON parsing and writing), done on the same two cores. "
              "minilm-embed's raw loop is one session over every core; the runner's single-threaded lanes beat it "
              "even without bucketing."]
    if "host" in result:
        lines += ["", *_render_host(result)]
    lines += ["", "GPU figures: not measured here (no GPU); `make bench-gpu` (bench/gpu.py) on a CUDA machine adds "
              "batch 256 x 128 tokens against PyTorch fp16 and the end-to-end rows (threads, host processes)."]
    return "\n".join(lines)


def _render_host(result: dict[str, Any]) -> list[str]:
    host = result["host"]
    processes = result["cpu_host_processes"]
    lines = [f"**Host processes** (`MAAS_BATCH_HOST_PROCESSES`). The host stages alone, as a GPU worker runs them: "
             f"`run_local` on {host['rows']:,} texts of 8 to 60 words, minilm-embed with a stand-in session that "
             "returns precomputed embeddings at no cost (one lane, file-order chunks, JSON lines out), so rows/s is "
             "what the host can feed a session. CPU per row is counted apart for the main process (reading, "
             "the session's side, writing) and the host processes (encoding and formatting; their start-up, "
             "spawn and imports once per process, is left out and shown beside).", "",
             "| host stages | rows/s | vs threads only | main process CPU (µs/row) | host processes CPU (µs/row) "
             "| start-up CPU (s) |", "|---|---|---|---|---|---|"]
    for kind, f in host["figures"].items():
        lines.append(f"| {kind} | {f['rows_per_s']:,} | {f['vs_threads']:.2f}x | {f['main_cpu_us_per_row']} "
                     f"| {f['host_processes_cpu_us_per_row']} | {f['host_processes_startup_cpu_s']} |")
    lines += ["", f"The real session on the CPU, threads only (the default there) against {processes} host "
              "processes:", "", "| model | threads only (rows/s) | host processes | processes / threads |",
              "|---|---|---|---|"]
    for m in result["models"]:
        rps = m["rows_per_s"]
        lines.append(f"| {m['model']} | {rps['bucketed']:,} | {rps['processes']:,} "
                     f"| {m['processes_vs_threads']:.2f}x |")
    d = result["digits"]
    lines.append(f"| digits-cnn (vs raw: {d['ratio']:.2f}x and {d['processes_ratio']:.2f}x) | "
                 f"{d['runner_rows_per_s']:,} | {d['processes_rows_per_s']:,} | "
                 f"{d['processes_rows_per_s'] / d['runner_rows_per_s']:.2f}x |")
    return lines
