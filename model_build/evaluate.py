"""Run ONNX variants with onnxruntime: held-out metric, parity and latency on this machine."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from functions.core.manifest import Task


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session like the API's: ``threads`` intra-op threads, no spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(session: ort.InferenceSession, x: npt.NDArray[Any], batch: int = 512) -> npt.NDArray[np.float32]:
    """Outputs of the first model output for all of ``x``, in batches."""
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)


def metric(task: Task, outputs: npt.NDArray[Any], y: npt.NDArray[Any]) -> float:
    """Accuracy for classifiers, RMSE (natural units) for regressors."""
    if task == "classification":
        return float((outputs.argmax(axis=1) == y).mean())
    return float(np.sqrt(np.mean((outputs.reshape(-1) - y.reshape(-1)) ** 2)))


def trivial_metric(task: Task, y_train: npt.NDArray[Any], y_test: npt.NDArray[Any]) -> float:
    """The score of a model that ignores its input: majority class, or the training mean."""
    if task == "classification":
        majority = np.bincount(y_train.astype(np.int64)).argmax()
        return float((y_test == majority).mean())
    return float(np.sqrt(np.mean((y_test - y_train.mean()) ** 2)))


def tile_batch(x: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    """A batch of ``size`` rows taken cyclically from ``x``."""
    return np.take(x, np.arange(size) % len(x), axis=0)


def run_feeds(session: ort.InferenceSession, feeds: dict[str, npt.NDArray[Any]],
              batch: int = 512) -> npt.NDArray[np.float32]:
    """Like ``run`` for named input tensors (several inputs, e.g. a tokenizer's), rows in batches."""
    rows = len(next(iter(feeds.values())))
    parts = [session.run(None, {k: v[i:i + batch] for k, v in feeds.items()})[0] for i in range(0, rows, batch)]
    return np.concatenate(parts).astype(np.float32)


def latency_ms(session: ort.InferenceSession, x: npt.NDArray[Any], batch: int, runs: int, warmup: int = 3) -> float:
    """Median wall time of one ``session.run`` at ``batch`` rows, in milliseconds."""
    return latency_ms_feeds(session, {session.get_inputs()[0].name: x}, batch, runs, warmup)


def latency_ms_feeds(session: ort.InferenceSession, feeds: dict[str, npt.NDArray[Any]], batch: int, runs: int,
                     warmup: int = 3) -> float:
    """Median wall time of one ``session.run`` at ``batch`` rows (taken cyclically from ``feeds``), in ms."""
    feed = {name: tile_batch(x, batch) for name, x in feeds.items()}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)
