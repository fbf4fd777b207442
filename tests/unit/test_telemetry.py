"""EMF records the dashboard reads per model version: one error record per failed request of a version."""

from __future__ import annotations

import orjson
import pytest

from functions.core.telemetry import emit_error_metric


def test_an_error_record_counts_one_error_per_model_version(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("MAAS_METRICS", raising=False)
    emit_error_metric("cancer-mlp", "2", "invalid_input")
    assert capsys.readouterr().out == ""  # `maas serve` prints no line per request
    monkeypatch.setenv("MAAS_METRICS", "1")
    emit_error_metric("cancer-mlp", "2", "model_unavailable", request_id="r1")
    (line,) = capsys.readouterr().out.splitlines()
    record = orjson.loads(line)
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "maas" and directive["Dimensions"] == [["model", "version"]]
    assert directive["Metrics"] == [{"Name": "Errors", "Unit": "Count"}]
    assert {k: record[k] for k in ("model", "version", "error", "Errors", "request_id")} == {
        "model": "cancer-mlp", "version": "2", "error": "model_unavailable", "Errors": 1, "request_id": "r1"}
