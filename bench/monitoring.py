"""Model monitoring: what capture costs a prediction, and how fast the drift job reads captured records.

Capture: warm p50 of the Lambda handler (API Gateway HTTP API v2 event, digits-cnn and cancer-mlp, local
store) with capture off and at rate 1.0 (the Lambda sink: one JSON line on stdout, sent to /dev/null here),
in interleaved blocks in one process.

Drift job: 1,000,000 capture records of cancer-mlp (30 features, one instance each, as the API writes them),
gzipped like Firehose's objects, streamed through the job's record reader and drift tracker in a fresh
process: records per second and the process's peak resident memory, against the drift function's default
timeout (900 s) and memory (1024 MB).
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.peers.event import DIGIT_ZERO, LambdaContext, predict_event

TITLE = "Monitoring: capture overhead and drift job throughput"
ROOT = Path(__file__).resolve().parents[1]
DRIFT_TIMEOUT_S = 900
DRIFT_MEMORY_MB = 1024


def _build(work: Path) -> Any:
    from bench.serving import trained_recipe
    from functions.core.store import LocalStore
    from model_build.pipeline import build

    store = LocalStore(work / "store")
    for name in ("digits-cnn", "cancer-mlp"):
        build(trained_recipe(name), store, quick=True)
    return store


def _handler(store: Any) -> Any:
    os.environ["MAAS_STORE"] = store.uri
    from functions.core.settings import get_settings

    get_settings.cache_clear()
    module = importlib.import_module("functions.api.handler")
    return importlib.reload(module).handler


def _capture_overhead(handler: Any, model: str, instances: list[Any], blocks: int, runs: int) -> dict[str, Any]:
    from functions.core import capture

    event, context = predict_event(model, instances), LambdaContext()
    samples: dict[str, list[float]] = {"off": [], "rate 1.0": []}
    modes = {"off": {}, "rate 1.0": {"AWS_LAMBDA_FUNCTION_NAME": "bench", "MAAS_CAPTURE_RATE": "1"}}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # noqa: PTH123
        for _ in range(50):
            handler(event, context)
        for _ in range(blocks):
            for mode, env in modes.items():
                state = capture.configure(env=env)
                for _ in range(runs):
                    started = time.perf_counter()
                    response = handler(event, context)
                    samples[mode].append((time.perf_counter() - started) * 1000)
                assert response["statusCode"] == 200
                assert (state.captured == runs) == (mode != "off") and state.dropped == 0
    capture.configure(env={})
    p50 = {mode: statistics.median(s) for mode, s in samples.items()}
    return {"p50_ms": {m: round(v, 4) for m, v in p50.items()}, "runs": len(samples["off"]),
            "ratio": round(p50["rate 1.0"] / p50["off"], 3)}


def _cancer_rows(count: int) -> tuple[list[str], np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    rows = data.data[rng.integers(0, len(data.data), count)] * rng.normal(1.0, 0.02, (count, data.data.shape[1]))
    return [str(n) for n in data.feature_names], rows.round(5)


def _write_capture(path: Path, count: int) -> int:
    names, rows = _cancer_rows(count)
    labels = ("malignant", "benign")
    with gzip.open(path, "wb", compresslevel=6) as f:
        for start in range(0, count, 10_000):
            block = rows[start:start + 10_000].tolist()
            f.write(b"".join(orjson.dumps(
                {"maas_capture": 1, "model": "cancer-mlp", "version": "1", "day": "2026-11-24",
                 "time": "2026-11-24T10:00:00.000+00:00", "request_id": f"r{start + i}",
                 "inputs": [dict(zip(names, row, strict=True))],
                 "outputs": [{"label": labels[(start + i) % 2], "probability": 0.9}]},
                option=orjson.OPT_APPEND_NEWLINE) for i, row in enumerate(block)))
    return path.stat().st_size


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drift_child(store_uri: str, capture_file: str) -> None:
    """Run in a fresh process: the drift job's reader and tracker over one gzipped capture object."""
    from functions.core import catalog
    from functions.core.profile import DriftTracker, read_profile
    from functions.core.store import open_store
    from functions.drift.records import RecordFeeder, file_lines

    store = open_store(store_uri)
    manifest = catalog.read_manifest(store, "cancer-mlp", "1")
    profile = read_profile(store, manifest)
    assert profile is not None
    started = time.perf_counter()
    feeder = RecordFeeder(DriftTracker(profile), manifest.preprocessing, "cancer-mlp", "1")
    feeder.add_lines(file_lines([Path(capture_file)]))
    report = feeder.tracker.report()
    seconds = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    print(json.dumps({"records": feeder.records, "seconds": seconds, "peak_rss_mb": peak_mb,
                      "status": report["status"]}))


def _drift_job(store: Any, work: Path, count: int) -> dict[str, Any]:
    capture_file = work / "part-0001.gz"
    size = _write_capture(capture_file, count)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "bench.monitoring", store.uri, str(capture_file)], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    child = json.loads(out.stdout.strip().splitlines()[-1])
    rate = child["records"] / child["seconds"]
    return {"records": child["records"], "gzip_mb": round(size / 2**20, 1), "seconds": round(child["seconds"], 2),
            "records_per_s": round(rate), "peak_rss_mb": round(child["peak_rss_mb"]),
            "seconds_per_million": round(1e6 / rate, 1),
            "timeout_share": round(1e6 / rate / DRIFT_TIMEOUT_S, 3),
            "memory_share": round(child["peak_rss_mb"] / DRIFT_MEMORY_MB, 3)}


def run(quick: bool) -> dict[str, Any]:
    blocks, runs, records = (4, 100, 100_000) if quick else (10, 300, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="maas-bench-monitoring-") as tmp:
        work = Path(tmp)
        store = _build(work)
        handler = _handler(store)
        from tests.api.samples import CANCER_ROW

        capture = {"digits-cnn": _capture_overhead(handler, "digits-cnn", [DIGIT_ZERO], blocks, runs),
                   "cancer-mlp": _capture_overhead(handler, "cancer-mlp", [CANCER_ROW], blocks, runs)}
        job = _drift_job(store, work, records)
    return {"quick": quick, "capture": capture, "drift_job": job}


def render(result: dict[str, Any]) -> str:
    lines = ["| warm handler p50, capture | off (ms) | rate 1.0 (ms) | ratio | target | runs each |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {model} | {c['p50_ms']['off']:.3f} | {c['p50_ms']['rate 1.0']:.3f} | {c['ratio']:.3f}x "
              f"| <= 1.05x | {c['runs']} |" for model, c in result["capture"].items()]
    job = result["drift_job"]
    lines += ["", "| drift job over captured records | value |", "|---|---|",
              f"| records (gzipped size) | {job['records']:,} ({job['gzip_mb']} MB) |",
              f"| records per second | {job['records_per_s']:,} |",
              f"| seconds for 1M records | {job['seconds_per_million']} (of the {DRIFT_TIMEOUT_S} s timeout: "
              f"{job['timeout_share']:.0%}) |",
              f"| peak resident memory | {job['peak_rss_mb']} MB "
              f"(of {DRIFT_MEMORY_MB} MB: {job['memory_share']:.0%}) |"]
    return "\n".join(lines)


if __name__ == "__main__":
    drift_child(sys.argv[1], sys.argv[2])
