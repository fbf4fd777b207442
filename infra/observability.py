"""A dashboard and alarms for the whole stage: API latency and errors, throttles, cold starts, batch rows,
dead letters, GPU job failures and model store refreshes, with alarms notifying one topic."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.batch_events import BatchEvents
from infra.batch_fanout import BatchFanout
from infra.cost_widget import cost_widget
from infra.foundation import Foundation
from infra.gpu_batch import GpuBatch
from infra.prediction_api import PredictionApi

FIVE_MINUTES = Duration.minutes(5)
ERROR_RATE_PERCENT = 1.0
P99_LATENCY_MS = 1000.0
REFRESH_FAILURES = 5
"""Failed background refreshes (alias targets, listing) per 5 minutes, two periods running, that raise the alarm:
the API keeps serving its last known targets, but promotes and rollbacks are not picked up."""
METRIC_NAMESPACE = "maas"  # functions/core/telemetry.py writes these as embedded metric format records
AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


def _search(metric: str, dimension: str, label: str) -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{METRIC_NAMESPACE},{dimension}}} MetricName=\"{metric}\"', 'Sum', 300)",
        label=label, period=FIVE_MINUTES)


class Observability(Construct):
    """Dashboard ``maas-STAGE`` and the alarms: API 5xx rate, p99 latency, dead letters, GPU job failures."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation, api: PredictionApi,
                 batch_events: BatchEvents, gpu_batch: GpuBatch, fanout: BatchFanout | None = None) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        if config.alarm_topic_arn:
            self.topic: sns.ITopic = sns.Topic.from_topic_arn(self, "Alarms", config.alarm_topic_arn)
        else:
            foundation.allow_service("cloudwatch.amazonaws.com")
            foundation.allow_service("events.amazonaws.com")
            self.topic = sns.Topic(self, "Alarms", master_key=foundation.key, enforce_ssl=True,
                                   display_name=f"maas {config.stage} alarms")
            if config.alarm_email:
                self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        # Notifications EventBridge could not deliver wait here for two weeks instead of being dropped.
        self.undelivered = sqs.Queue(self, "Undelivered", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                     enforce_ssl=True, retention_period=Duration.days(14))
        message = events.RuleTargetInput.from_text(
            f"maas GPU batch job {events.EventField.from_path('$.detail.jobName')} failed: "
            f"{events.EventField.from_path('$.detail.statusReason')}")
        gpu_batch.failures.add_target(targets.SnsTopic(self.topic, dead_letter_queue=self.undelivered, message=message))

        requests = api.metric_requests()
        server_errors = api.metric_server_errors()
        error_rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)", label="5xx rate (%)", period=FIVE_MINUTES,
            using_metrics={"requests": requests, "errors": server_errors})
        latency_p50 = api.metric_latency("p50")
        latency_p99 = api.metric_latency("p99")
        dead_letters = batch_events.dead_letters.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum", label="dead letters")
        job_failures = cloudwatch.Metric(
            namespace="AWS/Events", metric_name="MatchedEvents", statistic="Sum", period=FIVE_MINUTES,
            dimensions_map={"RuleName": gpu_batch.failures.rule_name}, label="GPU job failures")
        refresh_failures = cloudwatch.Metric(  # written without dimensions: one series per stage (model_cache.py)
            namespace=METRIC_NAMESPACE, metric_name="StoreRefreshFailures", statistic="Sum", period=FIVE_MINUTES,
            label="failed store refreshes")

        self.alarms = [
            self._alarm("ServerErrorRate", error_rate, ERROR_RATE_PERCENT,
                        f"More than {ERROR_RATE_PERCENT}% of API requests answered 5xx over 5 minutes"),
            self._alarm("LatencyP99", latency_p99, P99_LATENCY_MS, f"API p99 latency above {P99_LATENCY_MS} ms",
                        evaluation_periods=3),
            self._alarm("DeadLetters", dead_letters, 0, "Batch input messages reached the dead-letter queue",
                        comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD),
            self._alarm("GpuJobFailures", job_failures, 1, "An AWS Batch GPU job failed"),
            self._alarm("StoreRefreshFailures", refresh_failures, REFRESH_FAILURES,
                        f"The model store failed {REFRESH_FAILURES} or more background refreshes in 5 minutes, twice "
                        "running: the API serves its last known alias targets, promotes are not picked up",
                        evaluation_periods=2),
        ]
        if fanout is not None:
            self.alarms.append(self._alarm(
                "FanoutFailures", fanout.state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"), 1,
                "A batch fan-out execution failed (its input has no report.json)"))
        api.errors_alarm.add_alarm_action(actions.SnsAction(self.topic))

        functions = {"API": api.function, "batch": batch_events.function}
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"maas-{config.stage}",
                                              default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="API latency (ms)", left=[latency_p50, latency_p99], width=8),
            cloudwatch.GraphWidget(title="API requests and errors", left=[requests, server_errors,
                                   api.metric_client_errors()],
                                   right=[error_rate], width=8),
            cloudwatch.GraphWidget(title="Lambda errors and throttles", width=8, left=[
                m for name, fn in functions.items() for m in (
                    fn.metric_errors(period=FIVE_MINUTES, label=f"{name} errors"),
                    fn.metric_throttles(period=FIVE_MINUTES, label=f"{name} throttles"))]),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Cold starts and model loads", width=8, left=[
                _search("ColdStart", "model", "cold starts"), _search("ModelLoadTime", "model", "model load ms")]),
            cloudwatch.GraphWidget(title="Batch rows", width=8, left=[
                _search("RowsOk", "model", "rows predicted"), _search("RowsFailed", "model", "rows rejected")]),
            cloudwatch.GraphWidget(title="Batch queue and GPU jobs", width=8, left=[
                batch_events.queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES,
                                                                                 label="queued inputs"),
                dead_letters, job_failures]),
        )
        self.dashboard.add_widgets(cloudwatch.GraphWidget(
            title="Model store: answers from stale alias targets, failed refreshes", width=24, left=[
                _search("StaleAliasTargets", "model", "stale alias answers"), refresh_failures]))
        if fanout is not None:
            self.dashboard.add_widgets(*fanout_widgets(fanout))
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        self.dashboard.add_widgets(cost_widget(config))

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str,
               evaluation_periods: int = 1, comparison: cloudwatch.ComparisonOperator = AT_LEAST) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(self, construct_id, metric=metric, threshold=threshold,
                                 evaluation_periods=evaluation_periods, comparison_operator=comparison,
                                 treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                                 alarm_description=description)
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        return alarm


def fanout_widgets(fanout: BatchFanout) -> list[cloudwatch.IWidget]:
    """Fan-out parts running and failing (the part function's concurrency and errors) and executions."""
    machine, function = fanout.state_machine, fanout.function
    return [
        cloudwatch.GraphWidget(title="Fan-out parts", width=12, left=[
            function.metric("ConcurrentExecutions", statistic="Maximum", period=Duration.minutes(1),
                            label="parts running"),
            function.metric_errors(period=Duration.minutes(1), label="part attempts failed")]),
        cloudwatch.GraphWidget(title="Fan-out executions", width=12, left=[
            machine.metric_started(period=FIVE_MINUTES, label="started"),
            machine.metric_succeeded(period=FIVE_MINUTES, label="succeeded"),
            machine.metric_failed(period=FIVE_MINUTES, label="failed"),
            machine.metric_timed_out(period=FIVE_MINUTES, label="timed out")]),
    ]
