"""The batch runner's host work as jobs a pool of host processes can run beside the one model session.

Two jobs per chunk: **encoding** (validate the rows, tokenize, pad or bucket by length, and measure the inputs
for drift: ``Encoder``) and **formatting** (one chunk's outputs as JSON-lines bytes or a Parquet record batch:
the sink's formatter). Without host processes (``MAAS_BATCH_HOST_PROCESSES=0``) the runner calls the same
objects in its threads; with N of them, a ``HostPool`` runs them in N worker processes while the main process
reads, runs the session (the GPU's, or the CPU lanes) and writes. The code is the same either way, so the
output bytes are too.

Worker processes are started with ``spawn`` (safe beside the main process's onnxruntime and pipeline threads,
where ``fork`` is not), on demand up to N, and get the encoder and the formatter once (the preprocessor with
its tokenizer, the manifest): they import numpy, the ``tokenizers`` library and these modules, never
onnxruntime's session or torch. Each tokenizes on one thread (the processes are the parallelism). A job's
exception is raised by the runner at that chunk, after the chunks before it were written; a worker that dies
(killed, out of memory) breaks the pool and the run stops with ``HostProcessError``, never waits. A pool that
cannot start (no ``/dev/shm``, as in AWS Lambda) is a ``HostProcessError`` the runner answers with threads.
Closing the pool joins every worker: no process outlives the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.batch.bucketing import Buckets, group
from functions.core.errors import HostProcessError, InvalidInputError
from functions.core.manifest import Preprocessing
from functions.core.preprocessing import Preprocessor, Tensors, TokenizerPreprocessor, check_texts
from functions.core.profile import input_matrix

Formatter = Callable[[npt.NDArray[Any], Sequence[int], "dict[int, Any] | None"], Any]
"""``(output, lines, ids) -> piece``: a chunk's predictions as the sink takes them (bytes for JSON lines)."""


@dataclass
class Encoded:
    """A chunk's valid rows as session runs (``buckets`` puts their outputs back in input order), the rows it
    reports, and the measured inputs of the valid rows for drift (None when drift is not tracked)."""

    batches: list[Tensors]
    buckets: Buckets | None
    good_lines: list[int]
    bad: list[tuple[int, str]]
    drift_inputs: npt.NDArray[Any] | None = None


@dataclass
class Encoder:
    """Encodes chunks for one model version: picklable (a host process gets it once)."""

    preprocessor: Preprocessor
    spec: Preprocessing
    bucketed: bool = False
    """group a text chunk's rows by token length (functions/batch/bucketing.py); else one run per chunk"""
    drift: bool = False
    """also measure the valid rows' inputs (``input_matrix``) for the drift counts"""

    def __call__(self, lines: list[int], instances: Any) -> Encoded:
        if not lines:
            return Encoded([], None, [], [])
        if isinstance(self.preprocessor, TokenizerPreprocessor):
            return self._texts(self.preprocessor, lines, instances)
        return self._rows(lines, instances)

    def _texts(self, preprocessor: TokenizerPreprocessor, lines: list[int], instances: Any) -> Encoded:
        """One tokenizer pass for the valid texts, then length buckets or one run padded to the longest."""
        max_chars = preprocessor.spec.max_chars
        bad: list[tuple[int, str]] = []
        try:
            texts, good = check_texts(instances, max_chars), list(lines)
        except InvalidInputError:
            texts, good = [], []
            for line, instance in zip(lines, instances, strict=True):
                try:
                    texts += check_texts([instance], max_chars)
                    good.append(line)
                except InvalidInputError as exc:
                    bad.append((line, exc.message.removeprefix("instance 0: ")))
        if not texts:
            return Encoded([], None, [], bad)
        encodings = preprocessor.tokenize(texts)
        inputs = input_matrix(self.spec, texts, preprocessor, encodings) if self.drift else None
        if self.bucketed:
            buckets = group(preprocessor, encodings)
            return Encoded(buckets.batches, buckets, good, bad, inputs)
        # One run padded to the longest text: the tensors ``encode`` gives.
        return Encoded([preprocessor.pad(encodings, max(len(e) for e in encodings))], None, good, bad, inputs)

    def _rows(self, lines: list[int], instances: Any) -> Encoded:
        """The whole chunk at once; if any row is invalid, row by row to separate the bad ones."""
        encode = self.preprocessor.encode
        bad: list[tuple[int, str]]
        try:
            tensors, good, kept, bad = encode(instances), list(lines), instances, []
        except InvalidInputError:
            good, rows, bad = [], [], []
            for line, instance in zip(lines, instances, strict=True):
                try:
                    encode([instance])
                    good.append(line)
                    rows.append(instance)
                except InvalidInputError as exc:
                    bad.append((line, exc.message.removeprefix("instance 0: ")))
            if not rows:
                return Encoded([], None, [], bad)
            kept = np.asarray(rows) if isinstance(instances, np.ndarray) else rows
            tensors = encode(rows)  # encoded again together: text models pad to the longest text of the batch
        inputs = input_matrix(self.spec, kept, self.preprocessor) if self.drift else None
        return Encoded([tensors], None, good, bad, inputs)


class HostPool:
    """``processes`` worker processes running a run's encoding and formatting jobs (see the module doc)."""

    def __init__(self, processes: int, encoder: Encoder, formatter: Formatter) -> None:
        import multiprocessing  # only runs with host processes pay for the process pool's imports
        from concurrent.futures import ProcessPoolExecutor

        try:
            self._executor = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_install, initargs=(encoder, formatter))
        except OSError as exc:  # no POSIX semaphores (AWS Lambda has no /dev/shm)
            raise HostProcessError(f"batch host processes cannot start here ({exc.strerror or exc})") from None

    def encode(self, lines: list[int], instances: Any) -> Future[Encoded]:
        return self._submit(_encode_job, lines, instances)

    def format(self, output: npt.NDArray[Any], lines: list[int], ids: dict[int, Any] | None) -> Future[Any]:
        return self._submit(_format_job, output, lines, ids)

    def _submit(self, job: Callable[..., Any], *args: Any) -> Future[Any]:
        try:
            return self._executor.submit(job, *args)
        except BrokenExecutor:  # BrokenProcessPool: a worker process died
            raise _died() from None

    @staticmethod
    def result(future: Future[Any]) -> Any:
        """The job's result; its own exception if it raised; HostProcessError if its process died."""
        try:
            return future.result()
        except BrokenExecutor:  # BrokenProcessPool: a worker process died
            raise _died() from None

    def close(self) -> None:
        """Drop jobs not started, wait for those running, and join every worker process."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> HostPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _died() -> HostProcessError:
    return HostProcessError("a batch host process ended unexpectedly (killed, or out of memory?): the run stopped "
                            "after the rows before it were written; MAAS_BATCH_HOST_PROCESSES=0 runs the host work "
                            "in threads instead")


_installed: tuple[Encoder, Formatter] | None = None


def _install(encoder: Encoder, formatter: Formatter) -> None:
    """A worker process's start: keep the run's encoder and formatter; tokenize on this process's one thread."""
    global _installed
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _installed = (encoder, formatter)


def _encode_job(lines: list[int], instances: Any) -> Encoded:
    assert _installed is not None
    return _installed[0](lines, instances)


def _format_job(output: npt.NDArray[Any], lines: list[int], ids: dict[int, Any] | None) -> Any:
    assert _installed is not None
    return _installed[1](output, lines, ids)


def loaded_modules(names: Sequence[str] = ("onnxruntime", "torch")) -> list[str]:
    """Which of ``names`` this process has imported (the tests ask a worker: it must load neither)."""
    import sys

    return [name for name in names if name in sys.modules]
