"""`maas cost`: what a million predictions cost on the deployed configuration, and when Lambda stops being the
cheaper choice.

Per model: Lambda requests + compute (memory x billed warm duration, arm64 and x86_64) + the billed init of the
cold-start share + the front door (HTTP API per request, or a Function URL: nothing), next to SageMaker Serverless
Inference and one always-on SageMaker real-time instance, with the monthly traffic where that instance breaks even.
Durations come from the stage's CloudWatch metrics (the EMF records ``functions/api/telemetry.py`` writes) or from
the local benchmark (``bench/results/serving.json``). Prices: ``maas/prices.json`` (date and region inside) or
``--prices FILE``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

PRICES = Path(__file__).with_name("prices.json")
BENCH = Path(__file__).resolve().parent.parent / "bench" / "results" / "serving.json"
NAMESPACE = "maas"  # functions/api/telemetry.py
HOURS_PER_MONTH = 730
MILLION = 1_000_000
ARCHITECTURES = ("arm64", "x86_64")


class CostError(ValueError):
    """Inputs the cost model cannot use (a prices file or a benchmark file without what it needs)."""


@dataclass(frozen=True)
class Usage:
    """How one model is used: billed warm duration, init duration, share of requests that start cold."""

    model: str
    warm_ms: float
    init_ms: float
    cold_share: float
    requests: int | None = None  # in the measured window (CloudWatch), else None
    payload_kb: float = 1.0  # request + response, for the per-GB charges of SageMaker


@dataclass(frozen=True)
class Deployment:
    """The stage settings that change the bill."""

    memory_mb: int = 2048
    front_door: str = "httpApi"


@dataclass(frozen=True)
class ModelCost:
    """Dollars per million requests, by part, for one model and architecture."""

    model: str
    architecture: str
    requests: float
    compute: float
    init: float
    front_door: float
    serverless: float
    realtime_monthly: float

    @property
    def total(self) -> float:
        return self.requests + self.compute + self.init + self.front_door

    @property
    def front_door_share(self) -> float:
        return self.front_door / self.total if self.total else 0.0

    @property
    def break_even_monthly(self) -> float:
        """Requests per month above which one always-on real-time instance costs less than this Lambda."""
        return self.realtime_monthly / self.total * MILLION if self.total else math.inf


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    """The price table; raises ``CostError`` naming what is missing."""
    try:
        prices: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CostError(f"cannot read prices from {path}: {exc}") from exc
    for key in ("date", "region", "lambda", "front_door", "sagemaker_serverless", "sagemaker_realtime"):
        if key not in prices:
            raise CostError(f"{path}: no {key!r} in the price table")
    return prices


def cost_of(usage: Usage, deployment: Deployment, prices: Mapping[str, Any], architecture: str) -> ModelCost:
    """The bill for a million requests of ``usage`` on ``deployment``."""
    if deployment.front_door not in prices["front_door"]:
        raise CostError(f"no price for front door {deployment.front_door!r}")
    lam = prices["lambda"]
    gb = deployment.memory_mb / 1024
    gb_second = lam["gb_second"][architecture]
    billed_warm_s = math.ceil(usage.warm_ms) / 1000  # Lambda bills duration in 1 ms steps
    compute = gb * billed_warm_s * gb_second * MILLION
    init = usage.cold_share * gb * math.ceil(usage.init_ms) / 1000 * gb_second * MILLION  # init is billed
    serverless = prices["sagemaker_serverless"]
    sizes = [m for m in serverless["memory_gb"] if m >= gb] or [max(serverless["memory_gb"])]
    payload_gb = usage.payload_kb / 1024 / 1024
    sls = sizes[0] * usage.warm_ms / 1000 * serverless["gb_second"] + payload_gb * serverless["gb_processed"]
    sls *= MILLION
    realtime = prices["sagemaker_realtime"]["hourly"] * HOURS_PER_MONTH
    return ModelCost(usage.model, architecture, lam["request"] * MILLION, compute, init,
                     prices["front_door"][deployment.front_door] * MILLION, sls, realtime)


def usage_from_bench(path: Path = BENCH, cold_share: float = 0.01) -> list[Usage]:
    """Per-model warm and cold durations from the serving benchmark (this machine's CPU, not Lambda's)."""
    try:
        per_model = json.loads(path.read_text())["per_model"]
    except (OSError, ValueError, KeyError) as exc:
        raise CostError(f"{path}: no per-model serving results ({exc}); run `make bench`") from exc
    return [Usage(name, float(m["warm"]["p50_ms"]), float(m["cold_ms"]["p50_ms"]), cold_share)
            for name, m in sorted(per_model.items())]


def usage_from_cloudwatch(client: Any, days: int = 7, now: datetime | None = None,
                          runtime_init_ms: float = 0.0) -> list[Usage]:
    """Per-model usage from the stage's metrics over the last ``days``: requests (Latency sample count), mean
    latency, cold starts, model load time; ``runtime_init_ms`` adds the imports before the first request."""
    end = now or datetime.now(UTC)
    start = end - timedelta(days=days)
    listed = client.list_metrics(Namespace=NAMESPACE, MetricName="Latency")["Metrics"]
    models = sorted({d["Value"] for m in listed for d in m["Dimensions"]
                     if d["Name"] == "model" and len(m["Dimensions"]) == 1})
    usages = []
    for model in models:
        wanted = {"n": ("Latency", "SampleCount"), "warm": ("Latency", "Average"), "cold": ("ColdStart", "Sum"),
                  "load": ("ModelLoadTime", "Average")}
        queries = [{"Id": qid, "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                                                         "Dimensions": [{"Name": "model", "Value": model}]},
                                              "Period": days * 86400, "Stat": stat}, "ReturnData": True}
                   for qid, (metric, stat) in wanted.items()]
        results = client.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)["MetricDataResults"]
        values = {r["Id"]: (sum(r["Values"]) if r["Id"] in ("n", "cold") else _mean(r["Values"])) for r in results}
        requests = int(values.get("n") or 0)
        if requests == 0:
            continue
        cold_share = min(1.0, (values.get("cold") or 0.0) / requests)
        usages.append(Usage(model, float(values.get("warm") or 0.0), runtime_init_ms + float(values.get("load") or 0),
                            cold_share, requests))
    return usages


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def render(costs: list[ModelCost], prices: Mapping[str, Any], deployment: Deployment) -> str:
    """The text table `maas cost` prints."""
    lines = [f"$ per 1M requests, {deployment.memory_mb} MB, front door {deployment.front_door}; prices "
             f"{prices['region']} {prices['date']}",
             f"{'model':<16}{'arch':<8}{'lambda req':>11}{'compute':>9}{'init':>8}{'front':>8}{'total':>9}"
             f"{'front %':>8}{'SM serverless':>14}{'break-even/month':>18}"]
    for c in costs:
        lines.append(f"{c.model:<16}{c.architecture:<8}{c.requests:>11.2f}{c.compute:>9.2f}{c.init:>8.2f}"
                     f"{c.front_door:>8.2f}{c.total:>9.2f}{100 * c.front_door_share:>7.0f}%{c.serverless:>14.2f}"
                     f"{_millions(c.break_even_monthly):>18}")
    realtime = prices["sagemaker_realtime"]
    lines.append(f"One always-on SageMaker {realtime['instance']}: ${realtime['hourly'] * HOURS_PER_MONTH:.2f}/month; "
                 "above the break-even traffic it is cheaper than Lambda (if one instance keeps up).")
    return "\n".join(lines)


def _millions(requests: float) -> str:
    return "never" if math.isinf(requests) else f"{requests / MILLION:,.0f}M"


@click.command("cost")
@click.option("--stage", default=None, help="Read the deployed stage's settings from cdk.json (default: dev).")
@click.option("--from-cloudwatch", is_flag=True, help="Use the stage's CloudWatch metrics (boto3 credentials).")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 455), help="CloudWatch window.")
@click.option("--bench", "bench_file", default=str(BENCH), show_default=True, type=click.Path(path_type=Path),
              help="Serving benchmark results (used unless --from-cloudwatch).")
@click.option("--prices", "prices_file", default=str(PRICES), show_default=True, type=click.Path(path_type=Path))
@click.option("--memory-mb", type=click.IntRange(128, 10240), default=None, help="Override the stage's memory.")
@click.option("--front-door", type=click.Choice(["httpApi", "functionUrl"]), default=None)
@click.option("--cold-share", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Share of requests that start cold (bench durations only).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(stage: str | None, from_cloudwatch: bool, days: int, bench_file: Path, prices_file: Path,
            memory_mb: int | None, front_door: str | None, cold_share: float, as_json: bool) -> None:
    """Cost per million predictions per model on Lambda (arm64, x86_64) vs SageMaker, with the break-even."""
    try:
        prices = load_prices(prices_file)
        deployment = _deployment(stage, memory_mb, front_door)
        if from_cloudwatch:
            import boto3

            usages = usage_from_cloudwatch(boto3.client("cloudwatch"), days, runtime_init_ms=_runtime_init_ms())
        else:
            usages = usage_from_bench(bench_file, cold_share)
    except CostError as exc:
        raise click.ClickException(str(exc)) from exc
    costs = [cost_of(u, deployment, prices, arch) for u in usages for arch in ARCHITECTURES]
    if as_json:
        click.echo(json.dumps([{**c.__dict__, "total": c.total, "front_door_share": c.front_door_share,
                                "break_even_monthly": c.break_even_monthly} for c in costs]))
    else:
        click.echo(render(costs, prices, deployment))


def _deployment(stage: str | None, memory_mb: int | None, front_door: str | None) -> Deployment:
    settings: dict[str, Any] = {}
    cdk_json = Path(__file__).resolve().parent.parent / "cdk.json"
    if cdk_json.is_file():
        context = json.loads(cdk_json.read_text()).get("context", {})
        settings = dict(context.get("stages", {}).get(stage or context.get("stage", "dev"), {}))
    return Deployment(memory_mb or int(settings.get("apiMemoryMb", Deployment.memory_mb)),
                      front_door or str(settings.get("frontDoor", Deployment.front_door)))


def _runtime_init_ms() -> float:
    """The imports before the first request, from the local benchmark (0 when it is missing)."""
    try:
        return float(json.loads(BENCH.read_text())["imports"]["total"])
    except (OSError, ValueError, KeyError):
        return 0.0
