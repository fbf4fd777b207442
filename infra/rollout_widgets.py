"""Dashboard widgets per model version, for rollouts: with a split on, latency, requests, errors and prediction
mix of each version side by side; with a shadow on, comparisons, agreement and candidate errors per candidate.

Latency and requests come from the prediction EMF records (dimensions [model] and [model, version],
functions/core/telemetry.py), errors from ``Errors`` EMF records ([model, version]). Prediction mix and shadow
figures are CloudWatch Logs Insights queries over the API function's log group: capture records
(``"maas_capture": 1``) and comparison records (``"maas_shadow": 1``). Array fields are read with ``parse`` on
the raw message, not field discovery, which stops at 200 fields (a wide input would hide the outputs).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from infra.observability import METRIC_NAMESPACE

FIVE_MINUTES = Duration.minutes(5)
ERRORS_METRIC = "Errors"  # functions/core/telemetry.py emit_error_metric

PREDICTION_MIX_QUERY = [
    "filter maas_capture = 1",
    r'parse @message /"outputs":\[\{"label":"?(?<label>[^",}]*)/',
    "filter ispresent(label)",
    "stats count(*) as predictions by model, version, label",
    "sort predictions desc",
    "limit 100",
]
"""Classifiers' predicted label of each captured request's first instance, counted per version."""

SHADOW_QUERY = [
    "filter maas_shadow = 1",
    r'parse @message /"agree":\[(?<agree>[^\]]*)\]/',
    "fields strcontains(@message, '\"candidate_error\":null') as compared, "
    "strcontains(@message, '\"agree\":[') as classified, strcontains(coalesce(agree, ''), 'false') as disagreed",
    "stats count(*) as requests, sum(compared) as compared_requests, count(*) - sum(compared) as candidate_errors, "
    "1 - sum(disagreed) / sum(classified) as all_rows_agree, pct(live_ms, 50) as live_p50_ms, "
    "pct(candidate_ms, 50) as candidate_p50_ms by model, alias, version, candidate",
    "sort requests desc",
    "limit 50",
]
"""Per candidate: shadowed requests, those compared (no candidate error) and candidate errors, the share of
compared classifier requests whose every row agrees, and both p50 latencies (the records are compact JSON, as
orjson writes them). ``maas shadow report`` has the full figures (row agreement, MAE, cosine, drift)."""

SHADOW_ERRORS_QUERY = [
    "filter maas_shadow = 1",
    r'parse @message /"candidate_error":"(?<code>[a-z_]+)"/',
    "filter ispresent(code)",
    "stats count(*) as errors by model, version, candidate, code",
    "sort errors desc",
    "limit 50",
]
"""Candidate errors by code (timeout, busy, not_found, ...)."""


def by_version(metric: str, statistic: str, label: str) -> cloudwatch.MathExpression:
    """One series per model version: a SEARCH over the [model, version] dimension set."""
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{METRIC_NAMESPACE},model,version}} MetricName=\"{metric}\"', '{statistic}', 300)",
        label=label, period=FIVE_MINUTES)


def rollout_widgets(api_log_group: str) -> list[list[cloudwatch.IWidget]]:
    """Two dashboard rows: per-version metrics, then the Logs Insights tables over ``api_log_group``."""
    logs = [api_log_group]
    return [
        [
            cloudwatch.GraphWidget(title="Latency by model version (ms)", width=8, left=[
                by_version("Latency", "p50", "p50"), by_version("Latency", "p99", "p99")]),
            cloudwatch.GraphWidget(title="Requests and errors by model version", width=8,
                                   left=[by_version("Latency", "SampleCount", "requests")],
                                   right=[by_version(ERRORS_METRIC, "Sum", "errors")]),
            cloudwatch.LogQueryWidget(title="Prediction mix by model version (captured requests)", width=8,
                                      log_group_names=logs, query_lines=PREDICTION_MIX_QUERY,
                                      view=cloudwatch.LogQueryVisualizationType.TABLE),
        ],
        [
            cloudwatch.LogQueryWidget(title="Shadow: comparisons and agreement by candidate", width=16,
                                      log_group_names=logs, query_lines=SHADOW_QUERY,
                                      view=cloudwatch.LogQueryVisualizationType.TABLE),
            cloudwatch.LogQueryWidget(title="Shadow: candidate errors by code", width=8, log_group_names=logs,
                                      query_lines=SHADOW_ERRORS_QUERY,
                                      view=cloudwatch.LogQueryVisualizationType.TABLE),
        ],
    ]
