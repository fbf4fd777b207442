"""Model monitoring: captured predictions from the API's logs to the data bucket, and the daily drift job.

The API function writes sampled capture records as JSON log lines (``"maas_capture": 1``, no network call in
the request), and shadow comparison records (``"maas_shadow": 1``, functions/core/shadow.py) the same way. A
subscription filter on its log group sends both kinds of line to a Firehose stream, which unpacks the CloudWatch
Logs envelope and writes the records, gzipped and KMS-encrypted, under ``capture/MODEL/VERSION/DAY/`` and
``shadow/MODEL/VERSION/DAY/`` (VERSION: the live version) of the data bucket (dynamic partitioning on the records'
JSON keys); lifecycle rules expire them. An EventBridge schedule runs the drift function, which reads a day of
capture, writes a report next to each version in the model store and publishes drift metrics; the dashboard gets
a drift widget and an alarm, and the per-version rollout widgets (infra/rollout_widgets.py).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.access import grant_key, grant_objects
from infra.foundation import Foundation
from infra.lambda_function import service_function
from infra.model_store import MODELS, ModelStore
from infra.observability import METRIC_NAMESPACE, Observability
from infra.prediction_api import PredictionApi
from infra.rollout_widgets import rollout_widgets

CAPTURE = "capture"
SHADOW = "shadow"
CAPTURE_ERRORS = "capture-errors"
CAPTURE_FILTER = "{ ($.maas_capture = 1) || ($.maas_shadow = 1) }"
"""Capture records and shadow comparison records (CDK renders ``FilterPattern.any`` of the two the same way)."""
PARTITION_QUERY = ('{kind: (if .maas_shadow == 1 then "shadow" else "capture" end), '
                   "model: .model, version: .version, day: .day}")
"""jq 1.6 (Firehose inline parsing): the top-level folder by record kind, then model, version and day."""
DELIVERY_PREFIX = ("!{partitionKeyFromQuery:kind}/!{partitionKeyFromQuery:model}/!{partitionKeyFromQuery:version}/"
                   "!{partitionKeyFromQuery:day}/")
"""``capture/MODEL/VERSION/DAY/`` (read by the drift job) or ``shadow/MODEL/VERSION/DAY/`` (``maas shadow report``)."""
DRIFT_ALARM_THRESHOLD = 0.25  # functions/core/drift.py ACT
DRIFT_REPORTS = f"{MODELS}/*/versions/*/drift/*"


class Monitoring(Construct):
    """Capture delivery (subscription filter -> Firehose -> data bucket) and the scheduled drift function."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation, api: PredictionApi,
                 data_bucket: s3.Bucket, store: ModelStore) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        stack = Stack.of(self)
        self.api_log_group = api.function.log_group.log_group_name
        api.function.add_environment("MAAS_CAPTURE_RATE", str(config.capture_rate))
        api.function.add_environment("MAAS_CAPTURE_AFTER_RESPONSE", "on" if config.capture_after_response else "off")
        data_bucket.add_lifecycle_rule(id="capture-expiry", prefix=f"{CAPTURE}/",
                                       expiration=Duration.days(config.capture_retention_days))
        data_bucket.add_lifecycle_rule(id="shadow-expiry", prefix=f"{SHADOW}/",
                                       expiration=Duration.days(config.capture_retention_days))
        data_bucket.add_lifecycle_rule(id="capture-errors-expiry", prefix=f"{CAPTURE_ERRORS}/",
                                       expiration=Duration.days(config.capture_retention_days))

        # Comparison records are read by the console (in the API function) and by `maas shadow report` /
        # `maas promote --require-agreement` run with the publisher role.
        for reader in (api.function, store.publisher):
            grant_objects(reader, data_bucket, foundation.key, SHADOW)

        delivery_logs = foundation.log_group(self, "DeliveryLogs")
        delivery_log_stream = logs.LogStream(self, "DeliveryLogStream", log_group=delivery_logs)
        delivery_role = iam.Role(self, "DeliveryRole", assumed_by=iam.ServicePrincipal(
            "firehose.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description=f"maas {config.stage}: Firehose writes captured predictions and shadow comparisons to the data "
                        "bucket")
        delivery_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[data_bucket.arn_for_objects(f"{prefix}/*") for prefix in (CAPTURE, SHADOW, CAPTURE_ERRORS)]))
        delivery_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            resources=[data_bucket.bucket_arn]))
        grant_key(delivery_role, foundation.key, encrypt=True)
        delivery_role.add_to_policy(iam.PolicyStatement(actions=["logs:PutLogEvents"],
                                                        resources=[delivery_logs.log_group_arn]))
        processors = [
            ("Decompression", {"CompressionFormat": "GZIP"}),
            ("CloudWatchLogProcessing", {"DataMessageExtraction": "true"}),
            ("RecordDeAggregation", {"SubRecordType": "JSON"}),
            ("MetadataExtraction", {"MetadataExtractionQuery": PARTITION_QUERY, "JsonParsingEngine": "JQ-1.6"}),
            ("AppendDelimiterToRecord", {}),
        ]
        self.stream = firehose.CfnDeliveryStream(
            self, "CaptureStream", delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream
            .DeliveryStreamEncryptionConfigurationInputProperty(key_type="AWS_OWNED_CMK"),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=data_bucket.bucket_arn, role_arn=delivery_role.role_arn,
                prefix=DELIVERY_PREFIX,
                error_output_prefix=f"{CAPTURE_ERRORS}/!{{firehose:error-output-type}}/!{{timestamp:yyyy-MM-dd}}/",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(interval_in_seconds=300,
                                                                                  size_in_m_bs=64),
                compression_format="GZIP",
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=foundation.key.key_arn)),
                dynamic_partitioning_configuration=firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                    enabled=True,
                    retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(duration_in_seconds=300)),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True, processors=[firehose.CfnDeliveryStream.ProcessorProperty(
                        type=kind, parameters=[firehose.CfnDeliveryStream.ProcessorParameterProperty(
                            parameter_name=name, parameter_value=value) for name, value in params.items()])
                        for kind, params in processors]),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True, log_group_name=delivery_logs.log_group_name,
                    log_stream_name=delivery_log_stream.log_stream_name)))
        self.stream.node.add_dependency(delivery_role)

        subscription_role = iam.Role(self, "SubscriptionRole", assumed_by=iam.ServicePrincipal(
            "logs.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description=f"maas {config.stage}: CloudWatch Logs hands capture and shadow records to Firehose")
        subscription_role.add_to_policy(iam.PolicyStatement(actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                                                            resources=[self.stream.attr_arn]))
        self.subscription = logs.CfnSubscriptionFilter(
            self, "CaptureFilter", log_group_name=api.function.log_group.log_group_name, filter_pattern=CAPTURE_FILTER,
            destination_arn=self.stream.attr_arn, role_arn=subscription_role.role_arn)
        self.subscription.node.add_dependency(subscription_role)

        self.function = service_function(
            self, "DriftFunction", foundation=foundation, handler="functions.drift.handler.handler",
            description="daily drift of captured predictions against each version's reference profile",
            memory_mb=config.drift_memory_mb, timeout=Duration.seconds(config.drift_timeout_seconds),
            environment={"MAAS_STORE": store.uri, "MAAS_DATA_BUCKET": data_bucket.bucket_name},
            reserved_concurrent_executions=1)
        grant_objects(self.function, data_bucket, foundation.key, CAPTURE)
        store.grant_read(self.function)
        self.grant_drift_reports(store, self.function.role)
        self.failed_runs = sqs.Queue(self, "FailedRuns", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                     enforce_ssl=True, retention_period=Duration.days(14))
        self.schedule = events.Rule(self, "DriftSchedule", schedule=events.Schedule.expression(config.drift_schedule),
                                    description="maas drift job")
        self.schedule.add_target(targets.LambdaFunction(self.function, retry_attempts=2,
                                                        dead_letter_queue=self.failed_runs))

    @staticmethod
    def grant_drift_reports(store: ModelStore, role: iam.IRole | None) -> None:
        """Write access to ``models/*/versions/*/drift/*`` only, and an exception in the store's write guard."""
        assert role is not None
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:PutObject"],
                                                         resources=[store.bucket.arn_for_objects(DRIFT_REPORTS)]))
        grant_key(role, store.key, encrypt=True)
        store.allow_writer(role.role_arn)

    def add_to(self, observability: Observability) -> None:
        """Drift widgets and the drift alarm on the stage's dashboard and topic; the per-version rollout widgets."""
        day = Duration.days(1)

        def search(metric: str, label: str) -> cloudwatch.MathExpression:
            return cloudwatch.MathExpression(
                expression=f"SEARCH('{{{METRIC_NAMESPACE},model,version}} MetricName=\"{metric}\"', 'Maximum', 86400)",
                label=label, period=day)

        score = cloudwatch.Metric(namespace=METRIC_NAMESPACE, metric_name="DriftScore", statistic="Maximum",
                                  period=day, label="worst drift (PSI above noise)")
        self.alarm = cloudwatch.Alarm(
            self, "DriftAlarm", metric=score, threshold=DRIFT_ALARM_THRESHOLD, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"A model version's inputs or predictions drifted (PSI >= {DRIFT_ALARM_THRESHOLD})")
        self.alarm.add_alarm_action(actions.SnsAction(observability.topic))
        observability.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Drift: max PSI by model version", width=8, period=day,
                                   left=[search("MaxPsi", "max PSI"), search("PredictionPsi", "prediction PSI")],
                                   left_annotations=[cloudwatch.HorizontalAnnotation(value=0.1, label="watch"),
                                                     cloudwatch.HorizontalAnnotation(value=0.25, label="act")]),
            cloudwatch.GraphWidget(title="Drift: features over threshold, captured records", width=8, period=day,
                                   left=[search("FeaturesOverThreshold", "features over 0.25")],
                                   right=[search("CapturedRecords", "captured records")]),
            cloudwatch.AlarmWidget(title="Drift alarm", alarm=self.alarm, width=8),
        )
        for row in rollout_widgets(self.api_log_group):  # per-version figures for splits and shadows
            observability.dashboard.add_widgets(*row)

