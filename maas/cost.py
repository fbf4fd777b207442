"""`maas cost`: what a million predictions cost on the deployed configuration, and when Lambda stops being the
cheaper choice.

Per model: Lambda requests + compute (memory x billed warm duration, arm64 and x86_64) + the billed init of the
cold-start share + the front door (HTTP API per request, or a Function URL: nothing), next to SageMaker Serverless
Inference and one always-on SageMaker real-time instance, with the monthly traffic where that instance breaks even.
Durations come from the stage's CloudWatch metrics (the EMF records ``functions/api/telemetry.py`` writes) or from
the local benchmark (``bench/results/serving.json``). Prices: ``maas/prices.json`` (date and region inside) or
``--prices FILE``. ``--api-keys`` adds what ``auth: apiKey`` costs on top (``KeyAuth``): the authorizer's
invocations the gateway cache misses, its key reads and the counter and usage writes on the consumer table.
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


@dataclass(frozen=True)
class KeyAuth:
    """How an ``auth: apiKey`` stage checks and counts each request (docs/consumers.md)."""

    cache_hit: float = 0.9
    """Share of requests the HTTP API answers from the authorizer's result cache (``cacheSeconds`` > 0)."""
    authorizer_ms: float = 3.0
    """Billed warm duration of one authorizer invocation (a key read included)."""
    authorizer_memory_mb: int = 256
    limit_writes: int = 2
    """Limit counters each request updates: rate and daily quota (0 for keys without limits)."""
    table_ms: float = 5.0
    """The API function's billed time per counter update (in the request path) and usage write (after it)."""
    read_units: float = 0.5
    """Read request units per key lookup: an eventually consistent GetItem of an item under 4 KB."""


@dataclass(frozen=True)
class KeyAuthCost:
    """Dollars per million requests that API keys add, by part, for one architecture."""

    architecture: str
    authorizer_invocations: float  # per million requests
    authorizer_requests: float
    authorizer_compute: float
    key_reads: float
    table_writes: float
    api_time: float

    @property
    def total(self) -> float:
        return self.authorizer_requests + self.authorizer_compute + self.key_reads + self.table_writes + self.api_time


def key_auth_cost(auth: KeyAuth, deployment: Deployment, prices: Mapping[str, Any], architecture: str) -> KeyAuthCost:
    """What API keys add to a million requests: authorizer invocations on cache misses (Lambda requests and
    compute), one key read per invocation, one usage write plus ``limit_writes`` counter updates per request
    (on-demand request units; items under 1 KB), and the API function's time spent on those writes."""
    if "dynamodb" not in prices:
        raise CostError("no 'dynamodb' in the price table (needed for --api-keys)")
    lam, table = prices["lambda"], prices["dynamodb"]
    gb_second = lam["gb_second"][architecture]
    invocations = (1 - auth.cache_hit) * MILLION
    writes = 1 + auth.limit_writes
    return KeyAuthCost(
        architecture, invocations, invocations * lam["request"],
        invocations * auth.authorizer_memory_mb / 1024 * math.ceil(auth.authorizer_ms) / 1000 * gb_second,
        invocations * auth.read_units * table["read_request_unit"],
        MILLION * writes * table["write_request_unit"],
        MILLION * deployment.memory_mb / 1024 * writes * auth.table_ms / 1000 * gb_second)


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


def render_key_auth(costs: list[KeyAuthCost], auth: KeyAuth, deployment: Deployment) -> str:
    """The ``--api-keys`` section: what each request pays for its key, to add to each model's total."""
    writes = 1 + auth.limit_writes
    lines = [f"API keys (auth: apiKey), $ per 1M requests on top of the above: authorizer on "
             f"{100 * (1 - auth.cache_hit):.0f}% of requests (gateway cache hits {100 * auth.cache_hit:.0f}%), "
             f"{auth.authorizer_ms:g} ms at {auth.authorizer_memory_mb} MB;",
             f"  {writes} table writes a request "
             f"(usage + {auth.limit_writes} limit counters), {auth.table_ms:g} ms each of the API function at "
             f"{deployment.memory_mb} MB",
             f"{'arch':<8}{'auth req':>9}{'auth compute':>13}{'key reads':>10}{'writes':>8}{'API time':>9}{'total':>8}"]
    for c in costs:
        lines.append(f"{c.architecture:<8}{c.authorizer_requests:>9.2f}{c.authorizer_compute:>13.2f}{c.key_reads:>10.2f}"
                     f"{c.table_writes:>8.2f}{c.api_time:>9.2f}{c.total:>8.2f}")
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
@click.option("--api-keys", is_flag=True, help="Add what auth: apiKey costs (authorizer, consumer table).")
@click.option("--auth-cache-hit", type=click.FloatRange(0, 1), default=KeyAuth.cache_hit, show_default=True,
              help="--api-keys: share of requests answered from the authorizer's result cache.")
@click.option("--authorizer-ms", type=click.FloatRange(0, 10_000), default=KeyAuth.authorizer_ms, show_default=True,
              help="--api-keys: billed duration of one authorizer invocation (256 MB).")
@click.option("--limit-writes", type=click.IntRange(0, 2), default=KeyAuth.limit_writes, show_default=True,
              help="--api-keys: limit counters a request updates (rate, daily quota).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(stage: str | None, from_cloudwatch: bool, days: int, bench_file: Path, prices_file: Path,
            memory_mb: int | None, front_door: str | None, cold_share: float, api_keys: bool, auth_cache_hit: float,
            authorizer_ms: float, limit_writes: int, as_json: bool) -> None:
    """Cost per million predictions per model on Lambda (arm64, x86_64) vs SageMaker, with the break-even."""
    auth = KeyAuth(cache_hit=auth_cache_hit, authorizer_ms=authorizer_ms, limit_writes=limit_writes)
    try:
        prices = load_prices(prices_file)
        deployment = _deployment(stage, memory_mb, front_door)
        if from_cloudwatch:
            import boto3

            usages = usage_from_cloudwatch(boto3.client("cloudwatch"), days, runtime_init_ms=_runtime_init_ms())
        else:
            usages = usage_from_bench(bench_file, cold_share)
        keys = {arch: key_auth_cost(auth, deployment, prices, arch) for arch in ARCHITECTURES} if api_keys else {}
    except CostError as exc:
        raise click.ClickException(str(exc)) from exc
    costs = [cost_of(u, deployment, prices, arch) for u in usages for arch in ARCHITECTURES]
    if as_json:
        rows = []
        for c in costs:
            row = {**c.__dict__, "total": c.total, "front_door_share": c.front_door_share,
                   "break_even_monthly": c.break_even_monthly}
            if keys:
                key_cost = keys[c.architecture]
                row["api_keys"] = {**key_cost.__dict__, "total": key_cost.total}
                row["total_with_api_keys"] = c.total + key_cost.total
            rows.append(row)
        click.echo(json.dumps(rows))
    else:
        click.echo(render(costs, prices, deployment))
        if keys:
            click.echo(render_key_auth(list(keys.values()), auth, deployment))


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
