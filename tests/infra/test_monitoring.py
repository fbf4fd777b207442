"""Template assertions for the monitoring construct: capture and shadow delivery, encryption, lifecycle, the
drift schedule, least-privilege grants, the dashboard (per-version rollout widgets included) and the alarm."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from infra.config import StageConfig
from infra.monitoring import CAPTURE_FILTER, DELIVERY_PREFIX, DRIFT_ALARM_THRESHOLD, PARTITION_QUERY
from tests.infra.conftest import Synthesized
from tests.infra.test_template import _as_list, _statements

DEFAULTS = StageConfig()


def _function(synth: Synthesized, handler: str) -> tuple[str, dict[str, Any]]:
    return next((lid, f) for lid, f in synth.resources("AWS::Lambda::Function").items() if f.get("Handler") == handler)


def _role_statements(synth: Synthesized, role_id: str) -> list[dict[str, Any]]:
    found = []
    for props in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in props.get("Roles", []):
            found += props["PolicyDocument"]["Statement"]
    return found


def _resource_of_type(synth: Synthesized, value: Any) -> str:
    return synth.template["Resources"][value["Fn::GetAtt"][0] if "Fn::GetAtt" in value else value["Ref"]]["Type"]


def test_capture_stream_partitions_by_model_version_day_gzipped_and_kms_encrypted(prod: Synthesized) -> None:
    stream = prod.one("AWS::KinesisFirehose::DeliveryStream")
    assert stream["DeliveryStreamType"] == "DirectPut"
    assert stream["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "AWS_OWNED_CMK"
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == DELIVERY_PREFIX == ("!{partitionKeyFromQuery:kind}/!{partitionKeyFromQuery:model}/"
                                               "!{partitionKeyFromQuery:version}/!{partitionKeyFromQuery:day}/")
    assert s3["ErrorOutputPrefix"].startswith("capture-errors/")
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert s3["CompressionFormat"] == "GZIP"
    key = s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"]
    assert _resource_of_type(prod, key) == "AWS::KMS::Key"
    assert _resource_of_type(prod, s3["BucketARN"]) == "AWS::S3::Bucket"
    processors = [p["Type"] for p in s3["ProcessingConfiguration"]["Processors"]]
    assert processors[:2] == ["Decompression", "CloudWatchLogProcessing"] and "MetadataExtraction" in processors
    query = next(p for p in s3["ProcessingConfiguration"]["Processors"] if p["Type"] == "MetadataExtraction")
    assert {"ParameterName": "MetadataExtractionQuery", "ParameterValue": PARTITION_QUERY} in query["Parameters"]
    assert {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"} in query["Parameters"]
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_only_marked_log_lines_of_the_api_function_reach_the_stream(prod: Synthesized) -> None:
    subscription = prod.one("AWS::Logs::SubscriptionFilter")
    assert subscription["FilterPattern"] == CAPTURE_FILTER == "{ ($.maas_capture = 1) || ($.maas_shadow = 1) }"
    assert _resource_of_type(prod, subscription["DestinationArn"]) == "AWS::KinesisFirehose::DeliveryStream"
    _, api = _function(prod, "functions.api.handler.handler")
    assert subscription["LogGroupName"] == api["LoggingConfig"]["LogGroup"]
    assert api["Environment"]["Variables"]["MAAS_CAPTURE_RATE"] == str(DEFAULTS.capture_rate) == "0.01"
    assert api["Environment"]["Variables"]["MAAS_CAPTURE_AFTER_RESPONSE"] == "on"
    role_id = subscription["RoleArn"]["Fn::GetAtt"][0]
    (statement,) = _role_statements(prod, role_id)
    assert sorted(_as_list(statement["Action"])) == ["firehose:PutRecord", "firehose:PutRecordBatch"]
    assert _resource_of_type(prod, statement["Resource"]) == "AWS::KinesisFirehose::DeliveryStream"


def test_captured_records_expire_by_lifecycle(prod: Synthesized) -> None:
    rules = [rule for props in prod.resources("AWS::S3::Bucket").values()
             for rule in props.get("LifecycleConfiguration", {}).get("Rules", []) if "Prefix" in rule]
    expiry = {rule["Prefix"]: rule["ExpirationInDays"] for rule in rules}
    days = DEFAULTS.capture_retention_days
    assert expiry == {"capture/": days, "shadow/": days, "capture-errors/": days}


def test_drift_job_runs_daily_on_a_schedule_with_retries_and_a_dead_letter_queue(prod: Synthesized) -> None:
    drift_id, drift_fn = _function(prod, "functions.drift.handler.handler")
    rules = [r for r in prod.resources("AWS::Events::Rule").values() if "ScheduleExpression" in r]
    (rule,) = rules
    assert rule["ScheduleExpression"] == DEFAULTS.drift_schedule == "cron(30 0 * * ? *)"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [drift_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2 and "DeadLetterConfig" in target
    assert drift_fn["Timeout"] == DEFAULTS.drift_timeout_seconds and drift_fn["MemorySize"] == DEFAULTS.drift_memory_mb
    assert set(drift_fn["Environment"]["Variables"]) >= {"MAAS_STORE", "MAAS_DATA_BUCKET"}
    assert drift_fn["ReservedConcurrentExecutions"] == 1


def test_least_privilege_grants(prod: Synthesized) -> None:
    _, drift_fn = _function(prod, "functions.drift.handler.handler")
    statements = _role_statements(prod, drift_fn["Role"]["Fn::GetAtt"][0])
    writes = [s for s in statements if "s3:PutObject" in _as_list(s["Action"])]
    assert len(writes) == 1 and json.dumps(writes[0]["Resource"]).endswith('/models/*/versions/*/drift/*"]]}')
    reads = [json.dumps(s["Resource"]) for s in statements if _as_list(s["Action"]) == ["s3:GetObject"]]
    assert any("/capture/*" in r for r in reads) and any("/models/*" in r for r in reads)
    storage = [s for s in statements if str(_as_list(s["Action"])[0]).startswith(("s3:", "kms:"))]
    assert storage and not any(s["Resource"] == "*" for s in storage)
    # Firehose writes only under capture/ and capture-errors/.
    stream = prod.one("AWS::KinesisFirehose::DeliveryStream")
    delivery = _role_statements(prod, stream["ExtendedS3DestinationConfiguration"]["RoleARN"]["Fn::GetAtt"][0])
    (put,) = [s for s in delivery if "s3:PutObject" in _as_list(s["Action"])]
    prefixes = sorted(json.dumps(r).split('"/')[-1].rstrip('"]}') for r in put["Resource"])
    assert prefixes == ["capture-errors/*", "capture/*", "shadow/*"]
    # The model store's write guard exempts the publisher and the drift role, nobody else.
    (deny,) = [s for p in prod.resources("AWS::S3::BucketPolicy").values() for s in p["PolicyDocument"]["Statement"]
               if s["Effect"] == "Deny" and "s3:PutObject" in _as_list(s["Action"])]
    exempt = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert len(exempt) == 2 and {"Fn::GetAtt": [drift_fn["Role"]["Fn::GetAtt"][0], "Arn"]} in exempt
    writers = [s for s in _statements(prod) if "s3:PutObject" in _as_list(s["Action"])
               and "/models/" in json.dumps(s["Resource"])]
    assert len(writers) == 2  # the publisher (models/*) and the drift job (drift reports only)


def test_dashboard_has_drift_widgets_and_an_alarm(prod: Synthesized) -> None:
    alarms = [a for a in prod.resources("AWS::CloudWatch::Alarm").values() if "DriftScore" in json.dumps(a)]
    (alarm,) = alarms
    (metric,) = alarm["Metrics"]
    assert metric["MetricStat"]["Metric"] == {"MetricName": "DriftScore", "Namespace": "maas"}  # stage-wide
    assert metric["MetricStat"]["Stat"] == "Maximum" and alarm["Threshold"] == DRIFT_ALARM_THRESHOLD
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["AlarmActions"]
    body = json.dumps(prod.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert "Drift: max PSI by model version" in body and "MaxPsi" in body and "FeaturesOverThreshold" in body


def test_capture_rate_and_schedule_come_from_cdk_json(tmp_path: Any) -> None:
    from tests.infra.conftest import synthesize

    synth = synthesize(tmp_path, {"stage": "dev", "stages": {"dev": {"captureRate": 0.2, "captureAfterResponse": False,
                                                                     "driftSchedule": "rate(12 hours)"}}})
    _, api = _function(synth, "functions.api.handler.handler")
    assert api["Environment"]["Variables"]["MAAS_CAPTURE_RATE"] == "0.2"
    assert api["Environment"]["Variables"]["MAAS_CAPTURE_AFTER_RESPONSE"] == "off"
    (rule,) = [r for r in synth.resources("AWS::Events::Rule").values() if "ScheduleExpression" in r]
    assert rule["ScheduleExpression"] == "rate(12 hours)"


# ---- rollouts: comparison records beside capture, and the per-version dashboard widgets ---------------------

DAY = "2026-12-04"
CAPTURE_LINE = {"maas_capture": 1, "model": "cancer-mlp", "version": "2", "day": DAY, "time": f"{DAY}T17:01:02.345Z",
                "request_id": "r1", "inputs": [{"mean radius": 14.1}], "outputs": [{"label": "benign",
                                                                                   "probability": 0.93}]}
SHADOW_LINE = {"maas_shadow": 1, "model": "cancer-mlp", "alias": "prod", "version": "2", "candidate": "3",
               "task": "classification", "day": DAY, "time": f"{DAY}T17:01:02.345Z", "request_id": "r1", "rows": 2,
               "live_ms": 1.2, "candidate_ms": 0.9, "candidate_error": None, "inputs": [{}, {}],
               "live": [{"label": "benign"}, {"label": "benign"}],
               "candidate_outputs": [{"label": "benign"}, {"label": "malignant"}], "agree": [True, False]}


def test_the_filter_is_cdk_s_rendering_of_either_marker() -> None:
    from aws_cdk import aws_logs as logs

    either = logs.FilterPattern.any(logs.FilterPattern.number_value("$.maas_capture", "=", 1),
                                    logs.FilterPattern.number_value("$.maas_shadow", "=", 1))
    assert either.log_pattern_string == CAPTURE_FILTER


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq on PATH (apt-get install jq)")
def test_partition_query_files_capture_where_it_was_and_comparisons_under_shadow() -> None:
    """The template's jq query, run by jq 1.6 as Firehose does, on both kinds of record."""
    def prefix(record: dict[str, Any]) -> str:
        keys = json.loads(subprocess.run(["jq", "-c", PARTITION_QUERY], input=json.dumps(record), text=True,
                                         capture_output=True, check=True).stdout)
        return re.sub(r"!\{partitionKeyFromQuery:(\w+)\}", lambda m: str(keys[m.group(1)]), DELIVERY_PREFIX)

    assert prefix(CAPTURE_LINE) == f"capture/cancer-mlp/2/{DAY}/"  # where the drift job reads capture
    assert prefix(SHADOW_LINE) == f"shadow/cancer-mlp/2/{DAY}/"  # the live version's folder


def test_console_and_publisher_read_comparison_records_only(prod: Synthesized) -> None:
    readers = {}
    for role_id, role in prod.resources("AWS::IAM::Role").items():
        reads = [json.dumps(s["Resource"]) for s in _role_statements(prod, role_id)
                 if _as_list(s["Action"]) == ["s3:GetObject"] and "/shadow/*" in json.dumps(s["Resource"])]
        if reads:
            readers[role.get("Description", role_id)] = reads
    assert len(readers) == 2, readers
    assert any("publishes model versions" in d for d in readers)
    _, api = _function(prod, "functions.api.handler.handler")
    api_reads = [json.dumps(s["Resource"]) for s in _role_statements(prod, api["Role"]["Fn::GetAtt"][0])
                 if "s3:GetObject" in _as_list(s["Action"])]
    assert any("/shadow/*" in r for r in api_reads) and not any("/capture/*" in r for r in api_reads)


def _widgets(synth: Synthesized) -> list[dict[str, Any]]:
    body = synth.one("AWS::CloudWatch::Dashboard")["DashboardBody"]
    parts = body["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else p["Ref"].replace("AWS::", "") if "Ref" in p else "X" for p in parts)
    return list(json.loads(text)["widgets"])


def test_dashboard_shows_latency_requests_errors_and_prediction_mix_per_version(prod: Synthesized) -> None:
    widgets = {w["properties"].get("title"): w["properties"] for w in _widgets(prod)}
    _, api = _function(prod, "functions.api.handler.handler")
    api_log_group = api["LoggingConfig"]["LogGroup"]["Ref"]
    latency = json.dumps(widgets["Latency by model version (ms)"]["metrics"])
    assert "SEARCH('{maas,model,version} MetricName=\\\"Latency\\\"', 'p50', 300)" in latency
    assert "'p99', 300)" in latency
    requests = json.dumps(widgets["Requests and errors by model version"]["metrics"])
    assert "MetricName=\\\"Latency\\\"', 'SampleCount'" in requests and "MetricName=\\\"Errors\\\"', 'Sum'" in requests
    for title in ("Prediction mix by model version (captured requests)",
                  "Shadow: comparisons and agreement by candidate", "Shadow: candidate errors by code"):
        query = widgets[title]["query"]
        assert query.startswith(f"SOURCE '{api_log_group}'"), query  # the API function's log group
    assert "filter maas_capture = 1" in widgets["Prediction mix by model version (captured requests)"]["query"]
    shadow = widgets["Shadow: comparisons and agreement by candidate"]["query"]
    assert "filter maas_shadow = 1" in shadow and "by model, alias, version, candidate" in shadow


def _parse(query: list[str], line: dict[str, Any]) -> dict[str, str]:
    """A query's ``parse @message /REGEX/`` applied to a compact JSON line (Python spells named groups ?P<>)."""
    (regex,) = [q.split("/", 1)[1].rsplit("/", 1)[0] for q in query if q.startswith("parse @message /")]
    found = re.search(regex.replace("(?<", "(?P<"), json.dumps(line, separators=(",", ":")))
    return found.groupdict() if found else {}


def test_logs_insights_parse_expressions_read_the_records_fields() -> None:
    from infra.rollout_widgets import PREDICTION_MIX_QUERY, SHADOW_ERRORS_QUERY, SHADOW_QUERY

    assert _parse(PREDICTION_MIX_QUERY, CAPTURE_LINE) == {"label": "benign"}
    numbered = {**CAPTURE_LINE, "outputs": [{"label": 7, "probability": 1.0}]}
    assert _parse(PREDICTION_MIX_QUERY, numbered) == {"label": "7"}
    assert _parse(PREDICTION_MIX_QUERY, {**CAPTURE_LINE, "outputs": [{"value": 3.2}]}) == {}  # regressors: no mix
    assert _parse(SHADOW_QUERY, SHADOW_LINE) == {"agree": "true,false"}
    assert '"candidate_error":null' in json.dumps(SHADOW_LINE, separators=(",", ":"))  # what `compared` looks for
    assert _parse(SHADOW_ERRORS_QUERY, SHADOW_LINE) == {}
    failed = {**SHADOW_LINE, "candidate_error": "timeout", "candidate_ms": None, "candidate_outputs": None}
    del failed["agree"]
    assert _parse(SHADOW_ERRORS_QUERY, failed) == {"code": "timeout"} and _parse(SHADOW_QUERY, failed) == {}
