"""Structured JSON logs and CloudWatch embedded-metric-format (EMF) records, written to stdout.

Lambda ships stdout to CloudWatch Logs, which extracts EMF records into metrics without any API call.
EMF records are written only in Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) or when ``MAAS_METRICS=1`` asks for
them, so ``maas serve`` does not print a line per prediction. Payloads are never logged unless
MAAS_LOG_PAYLOADS is set.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson

NAMESPACE = "maas"
ENV_METRICS = "MAAS_METRICS"
_cold = True


def metrics_enabled() -> bool:
    """EMF records go to stdout in Lambda, or anywhere when MAAS_METRICS=1."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or os.environ.get(ENV_METRICS) == "1"


def log(level: str, message: str, **fields: Any) -> None:
    """One JSON log line."""
    record = {"level": level, "message": message, "timestamp": round(time.time(), 3), **fields}
    sys.stdout.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")


def log_metric(level: str, message: str, metric: str, value: float, dimensions: list[list[str]],
               **fields: Any) -> None:
    """One JSON log line that is also an EMF record of ``metric`` (a count) over ``dimensions`` (``[[]]``: one
    series without dimensions). Written wherever logs are, like ``log``: these are rare events, not requests."""
    log(level, message, **fields, **{metric: value}, _aws={"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [
        {"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": [{"Name": metric, "Unit": "Count"}]}]})


_METRICS = [{"Name": "Latency", "Unit": "Milliseconds"}, {"Name": "Instances", "Unit": "Count"},
            {"Name": "ColdStart", "Unit": "Count"}]
_LOAD_METRIC = {"Name": "ModelLoadTime", "Unit": "Milliseconds"}
_DIMENSIONS = [["model"], ["model", "version"]]


def emit_prediction_metrics(model: str, version: str, variant: str, latency_ms: float, instances: int,
                            load_ms: float | None, request_id: str, consumer: str | None = None) -> None:
    """An EMF record for one prediction request; the first one in a process carries ColdStart=1. ``consumer``
    (API-key stages) is a property, not a dimension: the dashboard's top consumers query it with Logs Insights."""
    global _cold
    cold, _cold = _cold, False
    if not metrics_enabled():
        return
    metrics = _METRICS if load_ms is None else [*_METRICS, _LOAD_METRIC]
    record: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000),
                 "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": _DIMENSIONS, "Metrics": metrics}]},
        "model": model, "version": version, "variant": variant, "request_id": request_id,
        "Latency": round(latency_ms, 3), "Instances": instances, "ColdStart": int(cold),
    }
    if load_ms is not None:
        record["ModelLoadTime"] = round(load_ms, 3)
    if consumer is not None:
        record["consumer"] = consumer
    sys.stdout.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE).decode())


_BATCH_METRICS = [{"Name": "RowsOk", "Unit": "Count"}, {"Name": "RowsFailed", "Unit": "Count"},
                  {"Name": "BatchSeconds", "Unit": "Seconds"}]


def emit_batch_metrics(model: str, version: str, rows_ok: int, rows_failed: int, seconds: float) -> None:
    """An EMF record for one finished batch input (the dashboard's batch rows)."""
    if not metrics_enabled():
        return
    record: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000),
                 "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["model"]], "Metrics": _BATCH_METRICS}]},
        "model": model, "version": version, "RowsOk": rows_ok, "RowsFailed": rows_failed,
        "BatchSeconds": round(seconds, 3),
    }
    sys.stdout.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE).decode())


_ERROR_METRICS = [{"Name": "Errors", "Unit": "Count"}]


def emit_error_metric(model: str, version: str, code: str, request_id: str | None = None) -> None:
    """An EMF record for one failed prediction request of a known version: ``Errors`` = 1 over [model, version]
    (the dashboard's errors per version, e.g. during a split); ``code`` (the error table's code) is a property."""
    if not metrics_enabled():
        return
    record: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000),
                 "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["model", "version"]],
                                        "Metrics": _ERROR_METRICS}]},
        "model": model, "version": version, "error": code, "Errors": 1,
    }
    if request_id is not None:
        record["request_id"] = request_id
    sys.stdout.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE).decode())
