"""Shadow traffic: an alias's candidate version runs on the same instances after the live answer, and a
comparison record says how the two answers differ.

Nothing here is on the live answer's path. The service only hands over what it already has (the live model,
its output and service time, the instances) once the answer is decoded; the candidate runs later:

- in Lambda, after the runtime has posted the response (``start_after_response``: the hook capture uses), on
  the invocation's own thread, one job at a time, each bounded by ``MAAS_SHADOW_BUDGET_SECONDS``; what it
  adds is billed duration, never response latency;
- elsewhere (``maas serve``), once the response has been sent (the front releases what a request held), on a
  daemon thread behind a bounded queue; a full queue records ``busy``.

The candidate is loaded through the same model cache (verified like any version) and run without the batcher:
on a pool thread waited for at most the budget while it is not in memory (a hung store cannot hold the
runner), then on the runner's own thread.
A candidate that is missing, broken, slow (past the budget: ``timeout``), or rejects the instances
(``invalid_input``) only makes the record carry ``candidate_error``. Records go where capture records go
(masked the same way): stdout in Lambda (marker ``"maas_shadow": 1``, routed to ``shadow/`` of the data bucket),
else JSON lines under ``CAPTURE_DIR/_shadow/NAME/VERSION/DAY.jsonl``. docs/rollouts.md describes the format.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from functions.core import capture
from functions.core.errors import MaasError, NotFoundError
from functions.core.inference import class_labels

if TYPE_CHECKING:
    from functions.core.model_cache import LoadedModel, ModelCache

MARKER = "maas_shadow"
SHADOW_FOLDER = "_shadow"
DEFAULT_CAPTURE_DIR = Path(".maas/capture")
QUEUE_JOBS = 64
PENDING_JOBS = 16
MISSING_TTL_SECONDS = 10.0
REL_FLOOR = 1e-12


class Comparison:
    """One shadowed request: the live side, as the service answered it (made on the request path: a plain
    class with slots, the cheapest to build)."""

    __slots__ = ("alias", "at", "candidate", "instances", "live", "live_ms", "output", "request_id")

    def __init__(self, live: LoadedModel, candidate: str, alias: str, instances: Sequence[Any], output: Any,
                 live_ms: float, request_id: str, at: float | None = None) -> None:
        self.live = live
        self.candidate = candidate
        self.alias = alias
        self.instances = instances
        self.output = output
        self.live_ms = live_ms
        self.request_id = request_id
        self.at = time.time() if at is None else at


@dataclass
class Candidate:
    """The candidate's side: its output and time, or why there is none."""

    model: LoadedModel | None = None
    output: Any = None
    ms: float | None = None
    error: str | None = None


def default_sink(env: dict[str, str] | None = None) -> capture.Sink:
    """Where comparison records go: stdout in Lambda; else ``_shadow`` under the capture folder (``maas serve
    --capture DIR``, ``MAAS_CAPTURE_DIR``, else ``./.maas/capture``)."""
    env = dict(os.environ) if env is None else env
    if env.get("AWS_LAMBDA_FUNCTION_NAME"):
        return capture.StdoutSink()
    current = capture.state().sink
    if isinstance(current, capture.DirectorySink):
        root = current.root
    else:
        root = Path(env[capture.ENV_CAPTURE_DIR]) if env.get(capture.ENV_CAPTURE_DIR) else DEFAULT_CAPTURE_DIR
    return capture.DirectorySink(root / SHADOW_FOLDER)


class ShadowRunner:
    """Runs candidates for shadowed requests off the answer's path and writes their comparison records."""

    def __init__(self, cache: ModelCache, budget_seconds: float, sink: capture.Sink | None = None) -> None:
        self.cache = cache
        self.budget = budget_seconds
        self._sink = sink
        self.after_post = False
        """In Lambda: jobs wait for the runtime's post (``drain``), not for a thread."""
        self.pending: list[Comparison] = []
        self._queue: queue.Queue[Comparison] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._missing: dict[tuple[str, str], tuple[str, float]] = {}
        self.compared = 0
        self.candidate_errors = 0
        self.written = 0
        self.dropped = 0

    @property
    def sink(self) -> capture.Sink:
        """Where records go (``default_sink`` unless one was given)."""
        if self._sink is None:
            self._sink = default_sink()
        return self._sink

    @sink.setter
    def sink(self, sink: capture.Sink) -> None:
        self._sink = sink

    comparison = Comparison
    """The record of the live side (the service builds it without importing this module itself)."""

    def submit(self, job: Comparison) -> None:
        """Queue a comparison to run after the answer (never blocks, never raises)."""
        try:
            if self.after_post:
                if len(self.pending) < PENDING_JOBS:
                    self.pending.append(job)
                else:
                    self.write(job, Candidate(error="busy"))
                return
            self._worker_queue().put_nowait(job)
        except queue.Full:
            self.write(job, Candidate(error="busy"))
        except Exception:  # the live answer is already out: nothing here may reach it
            self.dropped += 1

    def drain(self) -> None:
        """Run every pending comparison now (Lambda: after the runtime's post); never raises."""
        pending, self.pending = self.pending, []
        for job in pending:
            self.process(job)

    def process(self, job: Comparison) -> None:
        """Run one job's candidate within the budget and write its record; never raises."""
        try:
            self.write(job, self.run_candidate(job))
        except Exception:
            self.dropped += 1

    def run_candidate(self, job: Comparison) -> Candidate:
        """The candidate's answer on the job's instances, or why there is none (``timeout`` past the budget). A
        candidate not in memory yet is loaded and run on a pool thread, waited for at most the budget (a hung
        store cannot hold this thread); a loaded one runs here (no thread hop, nothing left running after)."""
        key = (job.live.name, job.candidate)
        missing = self._missing.get(key)
        if missing is not None and missing[1] > time.monotonic():
            return Candidate(error=missing[0])
        if self.cache.peek(*key) is not None:  # loaded: no store call to wait for, run it on this thread
            candidate = self._candidate(job)
            return Candidate(error="timeout") if (candidate.ms or 0.0) > self.budget * 1000 else candidate
        future: Future[Candidate] = self._executor().submit(self._candidate, job)
        try:
            return future.result(timeout=self.budget)
        except TimeoutError:
            future.cancel()  # still queued behind a hung run: never started
            return Candidate(error="timeout")

    def _candidate(self, job: Comparison) -> Candidate:
        started = time.perf_counter()
        try:
            model = self.cache.get(job.live.name, job.candidate)
            output = model.session.run(None, model.preprocessor.encode(job.instances))[0]
        except NotFoundError as exc:
            self._missing[(job.live.name, job.candidate)] = (exc.code, time.monotonic() + MISSING_TTL_SECONDS)
            return Candidate(error=exc.code)
        except MaasError as exc:
            return Candidate(error=exc.code)
        except Exception as exc:
            from functions.core.telemetry import log

            log("ERROR", "shadow candidate failed", model=job.live.name, candidate=job.candidate,
                error=type(exc).__name__, request_id=job.request_id)
            return Candidate(error="internal")
        return Candidate(model, output, (time.perf_counter() - started) * 1000)

    def write(self, job: Comparison, candidate: Candidate) -> None:
        """Serialize the comparison record and hand it to the sink (a failure counts as dropped)."""
        try:
            record = comparison_record(job, candidate)
            if record.get("candidate_error"):
                self.candidate_errors += 1
            else:
                self.compared += 1
            line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
            self.sink.write(record, line)
            self.written += 1
        except Exception:
            self.dropped += 1

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until queued comparisons are run and their records written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        if isinstance(self._sink, capture.DirectorySink):
            self._sink.flush(max(0.0, deadline - time.monotonic()))

    def _worker_queue(self) -> queue.Queue[Comparison]:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    jobs: queue.Queue[Comparison] = queue.Queue(maxsize=QUEUE_JOBS)
                    threading.Thread(target=self._work, args=(jobs,), name="maas-shadow", daemon=True).start()
                    self._queue = jobs
        return self._queue

    def _work(self, jobs: queue.Queue[Comparison]) -> None:
        while True:
            job = jobs.get()
            try:
                self.process(job)
            finally:
                jobs.task_done()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="maas-shadow-run")
        return self._pool


def comparison_record(job: Comparison, candidate: Candidate) -> dict[str, Any]:
    """The comparison record of one shadowed request (format: docs/rollouts.md)."""
    live = job.live
    state = capture.state()
    day, stamp = capture.clock(job.at)
    record: dict[str, Any] = {
        MARKER: 1, "model": live.name, "alias": job.alias, "version": live.version, "candidate": job.candidate,
        "task": live.manifest.task, "day": day, "time": stamp, "request_id": job.request_id,
        "rows": len(job.instances), "live_ms": round(job.live_ms, 3),
        "candidate_ms": None if candidate.ms is None else round(candidate.ms, 3),
        "candidate_error": candidate.error,
        "inputs": capture.masked_inputs(live, job.instances, state.rules(live.name), state.hash_key),
        "live": capture.compact_outputs(live, job.output), "candidate_outputs": None,
    }
    if candidate.error is None and candidate.model is not None:
        differences = compare(live, np.asarray(job.output), candidate.model, np.asarray(candidate.output))
        if differences is None:
            record["candidate_error"] = "incompatible"
            record["candidate_ms"] = None
        else:
            record["candidate_outputs"] = capture.compact_outputs(candidate.model, candidate.output)
            record.update(differences)
    return record


def compare(live: LoadedModel, live_output: np.ndarray, candidate: LoadedModel,
            candidate_output: np.ndarray) -> dict[str, list[Any]] | None:
    """Per-row differences: label agreement (classifiers), absolute and relative difference (regressors), cosine
    (embeddings); None when the answers cannot be compared (another task, row count or width)."""
    task = live.manifest.task
    if candidate.manifest.task != task or len(candidate_output) != len(live_output):
        return None
    if task == "classification":
        live_labels = class_labels(live.manifest, live_output.shape[1])
        candidate_labels = class_labels(candidate.manifest, candidate_output.shape[1])
        return {"agree": [live_labels[int(a)] == candidate_labels[int(b)] for a, b in
                          zip(live_output.argmax(axis=1), candidate_output.argmax(axis=1), strict=True)]}
    left = live_output.reshape(len(live_output), -1).astype(np.float64)
    right = candidate_output.reshape(len(candidate_output), -1).astype(np.float64)
    if task == "regression":
        difference = np.abs(right[:, 0] - left[:, 0])
        return {"abs_diff": difference.tolist(),
                "rel_diff": (difference / np.maximum(np.abs(left[:, 0]), REL_FLOOR)).tolist()}
    if left.shape != right.shape:
        return None
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    cosine = np.where(norms > 0, (left * right).sum(axis=1) / np.maximum(norms, REL_FLOOR), 0.0)
    return {"cosine": np.round(cosine, 6).tolist()}


def start_after_response(runner: ShadowRunner, client_class: type[Any] | None = None) -> bool:
    """In Lambda: run comparisons once the runtime has posted each response (the hook capture uses). False, and
    comparisons go to a thread, when no runtime client is loaded (not in Lambda)."""
    from functions.core import capture_after_response

    if capture_after_response.install_found(runner.drain, client_class) is None:
        return False
    runner.after_post = True
    return True
