"""Sampled prediction capture: a request's (masked) inputs and outputs as one JSON record, off the request path.

``record(...)`` is called by every prediction; when capture is off it returns after one attribute check. When on,
a share ``MAAS_CAPTURE_RATE`` of requests (0.0 to 1.0) is kept. Sinks:

- in Lambda: one JSON line on stdout carrying ``"maas_capture": 1`` (no network call); a CloudWatch Logs
  subscription filter routes those lines to Firehose, which partitions them by model/version/day into the data
  bucket (``infra/monitoring.py``). The API handler only queues the record; it is serialized and written once
  the runtime has posted the response (``capture_after_response``; ``MAAS_CAPTURE_AFTER_RESPONSE=off``
  writes inline);
- locally (``maas serve --capture DIR`` or ``MAAS_CAPTURE_DIR``): JSON lines in ``DIR/NAME/VERSION/DAY.jsonl``,
  written by a background thread behind a bounded queue.

A failing or missing sink never fails a prediction: every error is caught and counted in ``dropped``.

Masking (``MAAS_CAPTURE_MASK``: JSON, or ``@FILE`` holding it): an object of model name (or ``"*"`` for every
model) to rules ``{"drop": [features], "hash": [features], "raw_text": false}``. Dropped features are left out,
hashed ones replaced by ``"hmac:"`` + the first 16 hex digits of HMAC-SHA256 keyed with ``MAAS_CAPTURE_HASH_KEY``
(set a secret key: unkeyed hashes of low-cardinality values can be reversed by trying every value). Raw text
is never stored unless ``raw_text`` is true: only its length and token statistics are. On API-key stages a
record names its ``consumer``; the rule ``"consumer": "hash"`` (or ``"drop"``) hashes it like a feature (or
leaves it out).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from functions.core.settings import parse_flag

if TYPE_CHECKING:
    import queue

    from functions.core.model_cache import LoadedModel

ENV_CAPTURE_RATE = "MAAS_CAPTURE_RATE"
ENV_CAPTURE_DIR = "MAAS_CAPTURE_DIR"
ENV_CAPTURE_MASK = "MAAS_CAPTURE_MASK"
ENV_CAPTURE_HASH_KEY = "MAAS_CAPTURE_HASH_KEY"
ENV_CAPTURE_AFTER_RESPONSE = "MAAS_CAPTURE_AFTER_RESPONSE"
PENDING_LIMIT = 100  # records one request may queue for after its response
MARKER = "maas_capture"
MAX_RECORD_BYTES = 200_000  # CloudWatch Logs events are at most 256 KiB
QUEUE_RECORDS = 10_000
EMBEDDING_DIGITS = 4


Pending = tuple["LoadedModel", Any, Any, str, float, str | None]  # model, instances, output, request id, time, consumer
CONSUMER_RULES = ("keep", "hash", "drop")


class CaptureConfigError(ValueError):
    """A capture setting that cannot be used (raised at start-up, never during a request)."""


@dataclass(frozen=True)
class MaskRules:
    """What to keep of one model's inputs."""

    drop: frozenset[str] = frozenset()
    hash: frozenset[str] = frozenset()
    raw_text: bool = False
    consumer: str = "keep"
    """the consumer id on API-key stages: keep, hash or drop"""


def parse_masks(text: str | None) -> dict[str, MaskRules]:
    """``MAAS_CAPTURE_MASK``: JSON text, or ``@PATH`` of a JSON file."""
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CaptureConfigError(f"{ENV_CAPTURE_MASK} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CaptureConfigError(f"{ENV_CAPTURE_MASK} must be an object of model name -> rules")
    masks = {}
    for model, rules in raw.items():
        if not isinstance(rules, dict) or set(rules) - {"drop", "hash", "raw_text", "consumer"}:
            raise CaptureConfigError(f"{ENV_CAPTURE_MASK}[{model!r}]: rules are drop, hash, raw_text and consumer")
        lists = {key: rules.get(key, []) for key in ("drop", "hash")}
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()):
            raise CaptureConfigError(f"{ENV_CAPTURE_MASK}[{model!r}]: drop and hash are lists of feature names")
        if not isinstance(rules.get("raw_text", False), bool):
            raise CaptureConfigError(f"{ENV_CAPTURE_MASK}[{model!r}]: raw_text is true or false")
        if rules.get("consumer", "keep") not in CONSUMER_RULES:
            raise CaptureConfigError(f"{ENV_CAPTURE_MASK}[{model!r}]: consumer is keep, hash or drop")
        masks[str(model)] = MaskRules(frozenset(lists["drop"]), frozenset(lists["hash"]),
                                      bool(rules.get("raw_text", False)), str(rules.get("consumer", "keep")))
    return masks


NO_RULES = MaskRules()


class Sink(Protocol):
    def write(self, record: dict[str, Any], line: bytes) -> None:
        """Deliver one serialized record (may raise: the caller counts it as dropped)."""


class StdoutSink:
    """One line on stdout; in Lambda, CloudWatch Logs takes it from there."""

    def write(self, record: dict[str, Any], line: bytes) -> None:
        sys.stdout.write(line.decode())


class DirectorySink:
    """``DIR/NAME/VERSION/DAY.jsonl``, appended by one background thread; a full queue drops records."""

    def __init__(self, root: Path) -> None:
        import queue  # local capture only: off Lambda's cold path

        self.root = root
        self.queue: queue.Queue[tuple[dict[str, Any], bytes]] = queue.Queue(maxsize=QUEUE_RECORDS)
        self.failed = 0
        self.written = 0
        self._thread = threading.Thread(target=self._drain, name="maas-capture", daemon=True)
        self._thread.start()

    def write(self, record: dict[str, Any], line: bytes) -> None:
        self.queue.put_nowait((record, line))  # queue.Full is a drop

    def _drain(self) -> None:
        while True:
            record, line = self.queue.get()
            try:
                folder = self.root / record["model"] / record["version"]
                folder.mkdir(parents=True, exist_ok=True)
                with (folder / f"{record['day']}.jsonl").open("ab") as f:
                    f.write(line)
                self.written += 1
            except Exception:  # a dead sink must never reach a request
                self.failed += 1
            finally:
                self.queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued records are written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)


@dataclass
class Capture:
    """The process's capture settings and counters."""

    rate: float = 0.0
    sink: Sink | None = None
    masks: dict[str, MaskRules] = field(default_factory=dict)
    hash_key: bytes = b""
    pending: list[Pending] | None = None  # in Lambda: records queued until the runtime has posted the response
    captured: int = 0
    dropped: int = 0

    def rules(self, model: str) -> MaskRules:
        if not self.masks:
            return NO_RULES
        return self.masks.get(model) or self.masks.get("*") or NO_RULES


_state = Capture()


def configure(rate: float | None = None, directory: Path | None = None, masks: str | None = None,
              env: Mapping[str, str] | None = None) -> Capture:
    """Set capture up from arguments, else the environment; returns the new state. Bad settings raise here, at
    start-up. In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) the sink is stdout; elsewhere a directory, if any."""
    global _state
    env = os.environ if env is None else env
    write_pending()  # nothing queued under the old settings is lost
    directory = directory or (Path(env[ENV_CAPTURE_DIR]) if env.get(ENV_CAPTURE_DIR) else None)
    if rate is None:
        default = 1.0 if directory is not None else 0.0
        try:
            rate = float(env.get(ENV_CAPTURE_RATE) or default)
        except ValueError:
            raise CaptureConfigError(f"{ENV_CAPTURE_RATE} must be a number from 0 to 1") from None
    if not 0.0 <= rate <= 1.0:
        raise CaptureConfigError(f"{ENV_CAPTURE_RATE} must be a number from 0 to 1, got {rate}")
    sink: Sink | None = None
    if directory is not None:
        sink = DirectorySink(directory)
    elif env.get("AWS_LAMBDA_FUNCTION_NAME"):
        sink = StdoutSink()
    _state = Capture(rate=rate if sink is not None else 0.0, sink=sink,
                     masks=parse_masks(masks if masks is not None else env.get(ENV_CAPTURE_MASK)),
                     hash_key=env.get(ENV_CAPTURE_HASH_KEY, "").encode())
    return _state


def state() -> Capture:
    return _state


def start_after_response(env: Mapping[str, str] | None = None, client_class: type[Any] | None = None) -> bool:
    """Write records after the response: wrap the Lambda runtime client's posts (``client_class``, default the
    one this process was started by) so that they write what the handler queued. Only the API handler module
    calls this, at import; in Lambda with capture on, it logs which way records are written. False, and
    records stay inline, when capture is off or not in Lambda, ``MAAS_CAPTURE_AFTER_RESPONSE`` is off, or no
    runtime client is loaded."""
    env = os.environ if env is None else env
    try:
        after_response = parse_flag(ENV_CAPTURE_AFTER_RESPONSE, env.get(ENV_CAPTURE_AFTER_RESPONSE, "on"))
    except ValueError as exc:
        raise CaptureConfigError(str(exc)) from None
    if not (_state.rate and isinstance(_state.sink, StdoutSink)):
        return False
    from functions.core import capture_after_response  # only in Lambda with capture on: off the cold path
    from functions.core.telemetry import log

    if not after_response:
        log("INFO", f"capture records are written inside the handler ({ENV_CAPTURE_AFTER_RESPONSE}=off)")
        return False
    client_class = capture_after_response.install_found(write_pending, client_class)
    if client_class is None:
        log("WARNING", "capture records are written inside the handler: Lambda's runtime client was not found")
        return False
    _state.pending = []
    log("INFO", "capture records are written after the response",
        runtime_client=f"{client_class.__module__}.{client_class.__qualname__}")
    return True


def write_pending() -> None:
    """Write the records queued during the handler (called once the response is posted); never raises."""
    capture = _state
    pending = capture.pending
    if pending:
        capture.pending = []
        write_records(capture, pending)


def record(model: LoadedModel, instances: Sequence[Any] | np.ndarray, output: Any, request_id: str,
           consumer: str | None = None) -> None:
    """Capture one prediction request, sampled; never raises and costs one attribute check when off. Queued
    for after the response where the runtime allows it (``start_after_response``), else written now."""
    capture = _state
    if not capture.rate:
        return
    try:
        if capture.rate < 1.0 and random.random() >= capture.rate:
            return
        item = (model, instances, output, request_id, time.time(), consumer)
        pending = capture.pending
        if pending is None:
            write_records(capture, (item,))
        elif not pending or (pending[-1][3] == request_id and len(pending) < PENDING_LIMIT):
            pending.append(item)
        else:  # a new request while the last one's records wait (no post wrote them), or a request queuing more
            # than PENDING_LIMIT: write everything now, and inline from here on
            capture.pending = None
            write_records(capture, [*pending, item])
    except Exception:  # capture must never fail a prediction
        capture.dropped += 1


def write_records(capture: Capture, items: Sequence[Pending]) -> None:
    """Serialize each record and hand it to the sink; a failing record is counted as dropped, never raised."""
    for model, instances, output, request_id, now, consumer in items:
        try:
            assert capture.sink is not None
            where, line = _line(model, instances, output, request_id, capture, now, consumer)
            if len(line) > MAX_RECORD_BYTES:
                document = _truncated(make_record(model, instances, output, request_id, capture, now, consumer),
                                      len(line))
                line = orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
            capture.sink.write(where, line)
            capture.captured += 1
        except Exception:  # capture must never fail a prediction, nor the runtime's post
            capture.dropped += 1


_heads: dict[tuple[str, str], tuple[int, bytes, dict[str, Any]]] = {}


def _line(model: LoadedModel, instances: Sequence[Any] | np.ndarray, output: Any, request_id: str,
          capture: Capture, now: float | None = None, consumer: str | None = None) -> tuple[dict[str, Any], bytes]:
    """The record's JSON line, byte for byte ``make_record``'s, and the fields a sink files it by (model,
    version, day), stamped ``now`` (default: the current time). Everything up to the time's seconds is cached
    per model version and rebuilt once a second; one orjson call writes the rest."""
    now = time.time() if now is None else now
    second = int(now)
    key = (model.name, model.version)
    cached = _heads.get(key)
    if cached is None or cached[0] != second:
        moment = datetime.fromtimestamp(second, UTC)
        day = moment.strftime("%Y-%m-%d")
        head = b'{"%s":1,"model":%s,"version":%s,"day":"%s","time":"%s' % (
            MARKER.encode(), orjson.dumps(model.name), orjson.dumps(model.version), day.encode(),
            moment.strftime("%Y-%m-%dT%H:%M:%S").encode())
        cached = _heads[key] = (second, head, {"model": model.name, "version": model.version, "day": day})
    rules = capture.rules(model.name)
    body: dict[str, Any] = {"request_id": request_id}
    if consumer is not None and rules.consumer != "drop":
        body["consumer"] = _hashed(consumer, capture.hash_key) if rules.consumer == "hash" else consumer
    body["inputs"] = masked_inputs(model, instances, rules, capture.hash_key)
    body["outputs"] = compact_outputs(model, output)
    rest = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return dict(cached[2]), b'%s.%03dZ",%s\n' % (cached[1], int((now - second) * 1000), rest[1:])


def make_record(model: LoadedModel, instances: Sequence[Any] | np.ndarray, output: Any, request_id: str,
                capture: Capture, now: float | None = None, consumer: str | None = None) -> dict[str, Any]:
    """The capture record: model, version, day, time (``now``, default the current time), request id, the
    consumer (as masking says), masked inputs and compact outputs."""
    day, stamp = clock(now)
    rules = capture.rules(model.name)
    document: dict[str, Any] = {MARKER: 1, "model": model.name, "version": model.version, "day": day,
                                "time": stamp, "request_id": request_id}
    if consumer is not None and rules.consumer != "drop":
        document["consumer"] = _hashed(consumer, capture.hash_key) if rules.consumer == "hash" else consumer
    document["inputs"] = masked_inputs(model, instances, rules, capture.hash_key)
    document["outputs"] = compact_outputs(model, output)
    return document


_second: list[Any] = [-1, "", ""]


def clock(now: float | None = None) -> tuple[str, str]:
    """(UTC day, ISO time with milliseconds) of ``now`` (default: the current time); the date part is formatted
    once per second."""
    now = time.time() if now is None else now
    second = int(now)
    if second != _second[0]:
        moment = datetime.fromtimestamp(second, UTC)
        _second[:] = [second, moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m-%dT%H:%M:%S")]
    return _second[1], f"{_second[2]}.{int((now - second) * 1000):03d}Z"


def masked_inputs(model: LoadedModel, instances: Sequence[Any] | np.ndarray, rules: MaskRules, key: bytes) -> list[Any]:
    """Inputs as stored: tabular rows as feature dicts with dropped and hashed features applied, texts as
    statistics (plus the text only when ``raw_text``), images as they came."""
    spec = model.manifest.preprocessing
    kind = spec.kind
    if kind == "tabular":
        names: list[str] = spec.features  # type: ignore[union-attr]
        masking = bool(rules.drop or rules.hash)
        rows: list[Any] = []
        for instance in instances:
            if not masking and isinstance(instance, Mapping):
                rows.append(instance)  # serialized at once: no copy needed
                continue
            row = dict(instance) if isinstance(instance, Mapping) else dict(zip(names, _plain(instance), strict=False))
            for name in rules.drop:
                row.pop(name, None)
            for name in rules.hash & row.keys():
                row[name] = _hashed(row[name], key)
            rows.append(row)
        return rows
    if kind in ("text_vocab", "tokenizer"):
        from functions.core.profile import text_stats

        texts = [str(t) for t in instances]
        stats: list[dict[str, Any]] = list(text_stats(model.preprocessor, texts))
        if rules.raw_text:
            for row, text in zip(stats, texts, strict=True):
                row["text"] = text
        return stats
    if "image" in rules.drop:
        return [None] * len(instances)
    return [_plain(instance) for instance in instances]


def _plain(instance: Any) -> Any:
    return instance.tolist() if isinstance(instance, np.ndarray) else instance


def _hashed(value: Any, key: bytes) -> str:
    digest = hmac.new(key, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), hashlib.sha256).hexdigest()
    return f"hmac:{digest[:16]}"


def compact_outputs(model: LoadedModel, output: Any) -> list[dict[str, Any]]:
    """Classifiers: label and its probability; regressors: value; embedding models: the embedding (rounded)."""
    task = model.manifest.task
    if task == "classification":
        rows = output.tolist() if isinstance(output, np.ndarray) else list(output)
        labels = model.manifest.labels or [str(i) for i in range(len(rows[0]) if rows else 0)]
        shaped = []
        for row in rows:
            best = row.index(max(row))
            shaped.append({"label": labels[best], "probability": round(row[best], 4)})
        return shaped
    array = np.asarray(output)
    if task == "regression":
        return [{"value": v} for v in array.reshape(len(array), -1)[:, 0].astype(np.float64).tolist()]
    return [{"embedding": row} for row in array.astype(np.float64).round(EMBEDDING_DIGITS).tolist()]


def _truncated(document: dict[str, Any], size: int) -> dict[str, Any]:
    """Keep the leading instances that fit under MAX_RECORD_BYTES; say how many were left out."""
    count = len(document["inputs"])
    keep = max(1, int(count * MAX_RECORD_BYTES / size * 0.9))
    return {**document, "inputs": document["inputs"][:keep], "outputs": document["outputs"][:keep],
            "truncated": count - keep}


configure()
