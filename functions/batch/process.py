"""Process one input object from the data bucket, exactly once.

Input keys look like ``inputs/NAME[@ALIAS|:VERSION]/PATH.{csv,jsonl,npy,parquet}``. Outputs go to the
deterministic prefix ``outputs/NAME/VERSION/PATH.ETAG/`` (predictions.jsonl or .parquet, errors.jsonl,
report.json). report.json is
written last and only if absent, so a duplicate or concurrent delivery of the same event finds it and stops;
the other two files are deterministic for a given input, etag and model version, so a delivery that races
another one writes the same bytes. Permanent problems (unknown model, unreadable file, superseded object)
produce a report under ``outputs/_failed/`` and are not retried; transient ones raise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from functions.batch.dispatch import Dispatcher
from functions.batch.formats import UnreadableInputError, input_format, read_chunks
from functions.batch.local import output_files, predictions_sink
from functions.batch.objects import INPUTS, BucketFactory, DataBucket, InputObject
from functions.batch.parquet import pyarrow_available
from functions.batch.report import make_report, model_info
from functions.batch.runner import run_batch
from functions.core.errors import AlreadyExistsError, InvalidNameError, NotFoundError
from functions.core.manifest import Manifest
from functions.core.model_cache import ModelCache
from functions.core.names import check_alias, check_model_name, check_version
from functions.core.settings import ENV_KEYS
from functions.core.store import S3Store, check_key
from functions.core.telemetry import emit_batch_metrics
from functions.drift.batch import batch_drift

FAILED = "outputs/_failed"
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class ModelRef:
    """The model an input key asks for, and the path below the model folder."""

    name: str
    alias: str | None
    version: str | None
    path: str


def parse_key(key: str) -> ModelRef:
    """``inputs/NAME[@ALIAS|:VERSION]/PATH`` -> ModelRef; InvalidNameError for anything else."""
    if not key.startswith(INPUTS) or key.count("/") < 2:
        raise InvalidNameError(f"input key {key!r} is not inputs/MODEL/FILE")
    model, _, path = key.removeprefix(INPUTS).partition("/")
    name, _, version = model.partition(":")
    name, _, alias = name.partition("@")
    if not path or path.endswith("/") or ".." in path.split("/"):
        raise InvalidNameError(f"input key {key!r} has no file name")
    return ModelRef(check_model_name(name), check_alias(alias) if alias else None,
                    check_version(version) if version else None, path)


def output_prefix(name: str, version: str, path: str, etag: str) -> str:
    """Where the outputs of one input object (at one etag) by one model version go."""
    return f"outputs/{name}/{version}/{path}.{etag}"


class Processor:
    """Runs the batch runner for objects named by events; shared by the Lambda handler and the worker."""

    def __init__(self, cache: ModelCache, data: BucketFactory, dispatcher: Dispatcher | None = None,
                 dispatch_bytes: int = 0, job_id: str | None = None, router: Any = None) -> None:
        self.cache = cache
        self.router = router  # functions.batch.routing.Router: routes by estimated work (fan-out, AWS Batch)
        self.data = data
        self.dispatcher = dispatcher
        self.dispatch_bytes = dispatch_bytes
        self.job_id = job_id

    def process(self, item: InputObject, out_of_time: Callable[[], bool] | None = None) -> str:
        """Returns done, duplicate, dispatched or failed (a failure report was written); raises if transient."""
        bucket = self.data(item.bucket)
        source = {"bucket": item.bucket, "key": item.key, "etag": item.etag, "bytes": item.size}
        try:
            ref = parse_key(item.key)
            fmt = input_format(item.key)
            version = ref.version or self.cache.resolve(ref.name, ref.alias)
            self.cache.manifest(ref.name, version)
        except (NotFoundError, UnreadableInputError) as exc:
            return self._fail(bucket, item, source, exc.message)
        prefix = output_prefix(ref.name, version, ref.path, item.etag)
        if bucket.exists(f"{prefix}/report.json"):
            return "duplicate"
        settings = self.cache.settings
        output_format = output_format_of(item.key) or settings.batch_output_format
        if (fmt == ".parquet" or output_format == "parquet") and not pyarrow_available():
            return self._without_pyarrow(bucket, item, source, prefix, fmt, self.cache.manifest(ref.name, version),
                                         output_format)
        if self.router is not None:
            try:
                _, routed = self.router.route(bucket, item, fmt, self.cache.manifest(ref.name, version), prefix,
                                              output_format=output_format)
            except UnreadableInputError:  # a Parquet footer that does not decode: the runner below reports it
                routed = None
            if routed is not None:
                return str(routed)
        if self.dispatcher is not None and self.dispatch_bytes and item.size > self.dispatch_bytes:
            return self._dispatch(bucket, item, source, prefix)
        model = self.cache.get(ref.name, version)
        with tempfile.TemporaryDirectory(prefix="maas-batch-") as tmp:
            work = Path(tmp)
            local = work / f"input{fmt}"
            try:
                bucket.download(item.key, local, if_match=f'"{item.etag}"')
            except NotFoundError:
                return self._fail(bucket, item, source, "the input object no longer exists")
            except AlreadyExistsError:  # 412: the object was replaced; its own event will follow
                return self._fail(bucket, item, source, "the input object was replaced by a newer version")
            files = output_files(output_format)
            with predictions_sink(work / files[0], model, output_format,
                                  id_column_of(item.key) is not None) as predictions, \
                    (work / files[1]).open("wb") as errors:
                try:
                    chunks = read_chunks(local, fmt, model.manifest.preprocessing, settings.batch_chunk_rows,
                                         settings.batch_max_line_bytes, id_column_of(item.key))
                    stats = run_batch(model, chunks, predictions, errors, out_of_time,
                                      drift=batch_drift(self.cache.store, model), lanes=settings.batch_lanes,
                                      bucketing=settings.batch_bucketing,
                                      host_processes=settings.batch_host_processes or 0)
                except UnreadableInputError as exc:
                    return self._fail(bucket, item, source, exc.message)
            outputs = {name: f"{prefix}/{name}" for name in files[:2]}
            for name, key in outputs.items():
                bucket.upload_file(key, work / name)
            report = make_report("ok", source, model_info(model), stats, outputs, job_id=self.job_id)
        try:
            bucket.put_new(f"{prefix}/report.json", report)
        except AlreadyExistsError:
            return "duplicate"
        emit_batch_metrics(ref.name, version, stats.rows_ok, stats.rows_failed, stats.seconds_total)
        count_input_usage(bucket, item.key, ref.name, version, stats.rows_ok)
        return "done"

    def _without_pyarrow(self, bucket: DataBucket, item: InputObject, source: dict[str, Any], prefix: str,
                         fmt: str, manifest: Manifest, output_format: str) -> str:
        """Parquet in or out where pyarrow is missing (the Lambda bundle: pyarrow alone is over its size budget):
        AWS Batch runs it, whose image has pyarrow: an array job split by row groups (or lines) when the work is
        more than one child's share and the fan-out is configured, else one job; plan.json says which and why.
        Without AWS Batch, a failure report."""
        from functions.batch.plan import Limits
        from functions.batch.routing import PLAN_FILE, Router

        what = "Parquet input" if fmt == ".parquet" else "Parquet output"
        reason = (f"{what} needs pyarrow, which the Lambda bundle leaves out (about 170 MB unzipped, over the "
                  "bundle's size budget)")
        router = self.router
        splits = router is not None and router.launcher is not None and router.limits.batch
        if self.dispatcher is None and not splits:
            return self._fail(bucket, item, source, f"{reason}; no AWS Batch job queue is configured to take it")
        if router is None:
            router = Router(Limits.from_env(batch=True, safety_ms=self.cache.settings.batch_safety_ms), None)
        try:
            plan, routed = router.route(cast(S3Store, bucket), item, fmt, manifest, prefix,
                                        only_batch=f"{reason}: sent to AWS Batch", output_format=output_format,
                                        input=source)
            single = plan.reason
        except UnreadableInputError as exc:  # the worker, which has pyarrow, writes the failure report
            single = (f"{reason}: sent to AWS Batch as one job (its footer could not be read here: "
                      f"{exc.message})")
            bucket.put_bytes(f"{prefix}/{PLAN_FILE}", orjson.dumps(
                {"route": "batch", "reason": single, "parts": 1, "input": source}, option=orjson.OPT_INDENT_2))
            routed = None
        if routed is not None:
            return str(routed)
        if self.dispatcher is None:
            return self._fail(bucket, item, source, f"{reason}; no AWS Batch job queue is configured to take it")
        return self._dispatch(bucket, item, source, prefix, reason=single)

    def _dispatch(self, bucket: DataBucket, item: InputObject, source: dict[str, Any], prefix: str,
                  reason: str | None = None) -> str:
        assert self.dispatcher is not None
        marker = f"{prefix}/dispatch.json"
        try:
            bucket.put_new(marker, orjson.dumps({"status": "submitting", "input": source}))
        except AlreadyExistsError:
            return "duplicate"
        try:
            job_id = self.dispatcher.submit(item.bucket, item.key, item.etag)
        except Exception:
            bucket.delete(marker)  # let a retry submit again
            raise
        bucket.put_bytes(marker, make_report("dispatched", source, job_id=job_id,
                                             reason=reason or f"{item.size} bytes exceed the Lambda threshold of "
                                                              f"{self.dispatch_bytes} bytes"))
        return "dispatched"

    def _fail(self, bucket: DataBucket, item: InputObject, source: dict[str, Any], reason: str) -> str:
        key = failure_report_key(item.key, item.etag)
        with contextlib.suppress(AlreadyExistsError):
            bucket.put_new(key, make_report("failed", source, error=reason, job_id=self.job_id))
        return "failed"


def count_input_usage(bucket: DataBucket, key: str, name: str, version: str, rows_ok: int) -> None:
    """A job input's ok rows to the consumer that submitted it (``MAAS_KEYS`` set; once its final report is
    written, so a repeated event counts nothing). Never raises."""
    if rows_ok > 0 and os.environ.get(ENV_KEYS):
        from functions.consumers.jobs import count_input_rows

        count_input_rows(bucket, key, name, version, rows_ok)


def failure_report_key(key: str, etag: str) -> str:
    """Where the failure report of an input goes: beside its own name when that is a safe store key, else
    under ``_failed/_unsafe/`` named by the sha256 of the raw key (the report itself records the raw key)."""
    natural = f"{FAILED}/{key.removeprefix(INPUTS)}.{etag}/report.json"
    try:
        if re.fullmatch(r"[0-9A-Za-z-]{1,64}", etag) and len(natural.encode()) <= MAX_KEY_BYTES:
            return check_key(natural)
    except NotFoundError:
        pass
    digest = hashlib.sha256(f"{key}\x00{etag}".encode()).hexdigest()
    return f"{FAILED}/_unsafe/{digest}/report.json"


_SUFFIX = re.compile(r"@(output|id)=([A-Za-z0-9_.-]{1,64})\Z")
_SUFFIX_EXTENSIONS = (".csv", ".jsonl", ".npy", ".parquet")


def key_suffixes(key: str) -> dict[str, str]:
    """The ``@output=jsonl|parquet`` and ``@id=COLUMN`` suffixes of an input key's file name, before its
    extension and in either order (``inputs/iris/scores@output=parquet@id=customer.csv``); a suffix named twice
    counts once, the last one. Only the file name is read (a folder's ``@...`` is part of the path), the
    extension as ``input_format`` reads it (any case), and ``@id=`` not on ``.npy`` (its rows have no
    columns)."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    extension = f"{dot}{extension}".lower()
    found: dict[str, str] = {}
    if extension not in _SUFFIX_EXTENSIONS:
        return found
    while (match := _SUFFIX.search(stem)) is not None:
        kind, value = match.groups()
        if kind == "output" and value not in ("jsonl", "parquet"):
            break
        found.setdefault(kind, value)
        stem = stem[:match.start()]
    if extension == ".npy":
        found.pop("id", None)
    return found


def output_format_of(key: str) -> str | None:
    """The output format an input key names by its ``@output=jsonl|parquet`` suffix (``key_suffixes``), or None
    (the setting, ``MAAS_BATCH_OUTPUT_FORMAT``, decides)."""
    return key_suffixes(key).get("output")


def id_column_of(key: str) -> str | None:
    """The id column an input key names by its ``@id=COLUMN`` suffix (``key_suffixes``:
    ``inputs/iris/scores@id=customer_id.csv``), or None."""
    return key_suffixes(key).get("id")
