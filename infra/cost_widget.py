"""The dashboard's cost widget: estimated dollars per hour and the front door's share, by metric math over the
same EMF metrics ``maas cost --from-cloudwatch`` reads, at the prices in ``maas/prices.json``."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from infra.config import StageConfig
from infra.project import PROJECT_ROOT

PRICES = PROJECT_ROOT / "maas" / "prices.json"
NAMESPACE = "maas"
PERIOD = Duration.minutes(5)
PERIODS_PER_HOUR = 12


def _total(metric: str, statistic: str, label: str) -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(
        expression=f"SUM(SEARCH('{{{NAMESPACE},model}} MetricName=\"{metric}\"', '{statistic}', 300))",
        label=label, period=PERIOD)


def cost_expressions(config: StageConfig, prices: dict[str, Any] | None = None) -> list[cloudwatch.MathExpression]:
    """[$ per hour (all models), front door $ per hour, front door share %]."""
    prices = prices or json.loads(PRICES.read_text())
    gb = config.api_memory_mb / 1024
    gb_ms = prices["lambda"]["gb_second"][config.architecture] / 1000
    per_request = prices["lambda"]["request"] + prices["front_door"][config.front_door]
    using = {"requests": _total("Latency", "SampleCount", "requests"),
             "busy": _total("Latency", "Sum", "handler ms"), "loads": _total("ModelLoadTime", "Sum", "model load ms")}
    total = cloudwatch.MathExpression(
        expression=f"{PERIODS_PER_HOUR} * (requests * {per_request:.10f} + (busy + loads) * {gb * gb_ms:.12f})",
        label=f"estimated $/hour ({config.architecture}, {config.api_memory_mb} MB, {config.front_door})",
        using_metrics=using, period=PERIOD)
    front = cloudwatch.MathExpression(
        expression=f"{PERIODS_PER_HOUR} * requests * {prices['front_door'][config.front_door]:.10f}",
        label="front door $/hour", using_metrics={"requests": using["requests"]}, period=PERIOD)
    share = cloudwatch.MathExpression(
        expression="IF(total > 0, 100 * front / total, 0)", label="front door share (%)",
        using_metrics={"total": total, "front": front}, period=PERIOD)
    return [total, front, share]


def cost_widget(config: StageConfig) -> cloudwatch.GraphWidget:
    """Estimated cost per hour with the front door's share on the right axis (see docs/cost.md)."""
    total, front, share = cost_expressions(config)
    return cloudwatch.GraphWidget(title="Estimated cost ($/hour, prices in maas/prices.json)", width=24,
                                  left=[total, front], right=[share])
