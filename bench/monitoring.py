"""Model monitoring: what capture costs a prediction, and how fast the drift job reads captured records.

Capture: warm p50 of the Lambda handler (API Gateway HTTP API v2 event, digits-cnn and cancer-mlp, local
store) with capture off and at rate 1.0 (the Lambda sink: one JSON line on stdout, flushed per line as Lambda's
runtime does, to /dev/null here), in 200 short interleaved blocks of each in one process; the ratio pairs each
block with the off block before it. At rate 1.0 two ways: written once the runtime has posted the response
(Lambda's default) and inline, in the handler. Each invocation follows the runtime's order against a stand-in
of its client (``tests.lambda_runtime``): handler (timed), then the post, which writes the queued records. The
post's extra time is reported too: Lambda bills it, though the response does not wait for it.

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

MODES = ("off", "after response", "inline")
SETTLE_RUNS = 2  # untimed calls after each switch of mode

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


class _Unbuffered:
    """Lambda's runtime makes stdout flush on every write (a system call per log line); the same, to /dev/null."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        self.stream.flush()
        return int(written)

    def flush(self) -> None:
        self.stream.flush()


def _capture_overhead(handler: Any, model: str, instances: list[Any], blocks: int, runs: int) -> dict[str, Any]:
    """Many short interleaved blocks of each mode (this VM's speed drifts by more than the 5% being measured,
    within seconds); each invocation runs in the order of Lambda's runtime: handler (timed: what the response
    waits for), marshal the result, post it (timed apart: after the response). The ratio is the median over
    blocks of each block's p50 against the off block just before it; the pooled p50s are kept too."""
    from functions.core import capture
    from tests.lambda_runtime import runtime_client_class

    event, context = predict_event(model, instances), LambdaContext()
    client_class = runtime_client_class()
    client = client_class()
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "bench"}
    modes = {"off": lambda_env, "after response": {**lambda_env, "MAAS_CAPTURE_RATE": "1"},
             "inline": {**lambda_env, "MAAS_CAPTURE_RATE": "1", "MAAS_CAPTURE_AFTER_RESPONSE": "off"}}
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    posts: dict[str, list[float]] = {mode: [] for mode in MODES}
    block_p50: dict[str, list[float]] = {mode: [] for mode in MODES}
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(_Unbuffered(devnull)):  # noqa: PTH123
        for _ in range(50):
            handler(event, context)
        for _ in range(blocks):
            for mode, env in modes.items():
                state = capture.configure(env=env)
                assert capture.start_after_response(env, client_class) == (mode == "after response")
                timings = []
                for run in range(-SETTLE_RUNS, runs):
                    started = time.perf_counter()
                    response = handler(event, context)
                    answered = time.perf_counter()
                    client.post_invocation_result(context.aws_request_id, json.dumps(response), "application/json")
                    if run >= 0:
                        timings.append((answered - started) * 1000)
                        posts[mode].append((time.perf_counter() - answered) * 1000)
                samples[mode] += timings
                block_p50[mode].append(statistics.median(timings))
                assert response["statusCode"] == 200
                assert (state.captured == runs + SETTLE_RUNS) == (mode != "off") and state.dropped == 0
    capture.configure(env={})
    p50 = {mode: statistics.median(s) for mode, s in samples.items()}

    def paired(mode: str) -> float:
        return statistics.median(on / off for off, on in zip(block_p50["off"], block_p50[mode], strict=True))

    post_p50 = {mode: statistics.median(s) for mode, s in posts.items()}
    return {"p50_ms": {m: round(v, 4) for m, v in p50.items()}, "runs": len(samples["off"]), "blocks": blocks,
            "ratio": round(paired("after response"), 3), "ratio_inline": round(paired("inline"), 3),
            "ratio_pooled": round(p50["after response"] / p50["off"], 3),
            "after_response_ms": round(post_p50["after response"] - post_p50["off"], 4),
            "billed_ratio": round((p50["after response"] + post_p50["after response"])
                                  / (p50["off"] + post_p50["off"]), 3)}


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
    blocks, runs, records = (10, 20, 100_000) if quick else (200, 20, 1_000_000)
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
    lines = ["| warm handler p50, capture | off (ms) | rate 1.0, after response (ms) | ratio | target "
             "| rate 1.0, inline (ms) | ratio | written after the response (ms) | billed ratio | runs each |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {model} | {c['p50_ms']['off']:.3f} | {c['p50_ms']['after response']:.3f} | {c['ratio']:.3f}x "
              f"| <= 1.05x | {c['p50_ms']['inline']:.3f} | {c['ratio_inline']:.3f}x | {c['after_response_ms']:.3f} "
              f"| {c['billed_ratio']:.3f}x | {c['runs']} |" for model, c in result["capture"].items()]
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
