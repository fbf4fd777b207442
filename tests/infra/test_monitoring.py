"""Template assertions for the monitoring construct: capture delivery, encryption, lifecycle, the drift
schedule, least-privilege grants, the dashboard and the alarm."""

from __future__ import annotations

import json
from typing import Any

from infra.config import StageConfig
from infra.monitoring import CAPTURE_FILTER, DRIFT_ALARM_THRESHOLD
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
    assert s3["Prefix"] == ("capture/!{partitionKeyFromQuery:model}/!{partitionKeyFromQuery:version}/"
                            "!{partitionKeyFromQuery:day}/")
    assert s3["ErrorOutputPrefix"].startswith("capture-errors/")
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert s3["CompressionFormat"] == "GZIP"
    key = s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"]
    assert _resource_of_type(prod, key) == "AWS::KMS::Key"
    assert _resource_of_type(prod, s3["BucketARN"]) == "AWS::S3::Bucket"
    processors = [p["Type"] for p in s3["ProcessingConfiguration"]["Processors"]]
    assert processors[:2] == ["Decompression", "CloudWatchLogProcessing"] and "MetadataExtraction" in processors
    query = next(p for p in s3["ProcessingConfiguration"]["Processors"] if p["Type"] == "MetadataExtraction")
    assert {"ParameterName": "MetadataExtractionQuery",
            "ParameterValue": "{model: .model, version: .version, day: .day}"} in query["Parameters"]
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_only_marked_log_lines_of_the_api_function_reach_the_stream(prod: Synthesized) -> None:
    subscription = prod.one("AWS::Logs::SubscriptionFilter")
    assert subscription["FilterPattern"] == CAPTURE_FILTER == "{ $.maas_capture = 1 }"
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
    assert expiry == {"capture/": DEFAULTS.capture_retention_days, "capture-errors/": DEFAULTS.capture_retention_days}


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
    assert prefixes == ["capture-errors/*", "capture/*"]
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
