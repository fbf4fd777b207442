"""`maas capacity`: a traffic curve played against Lambda's documented scaling rules, second by second.

Rules modelled (AWS Lambda and API Gateway documentation, 2026):
- per function, at most ``scale_step`` (1,000) new execution environments every ``scale_window_s`` (10) seconds;
- concurrency never above the account limit (default 1,000) nor the function's reserved concurrency;
- an execution environment serves one request at a time; a new one spends ``init_ms`` starting (the cold start,
  billed) before its first request, and requests arriving meanwhile each need another new one; idle ones are
  reclaimed after ``keep_alive_s`` (not documented; 10 minutes assumed);
- the HTTP API stage throttles with a token bucket (``throttleRate`` requests/s, ``throttleBurst`` tokens);
  a Function URL front door has none (``api_rate=None``);
- provisioned concurrency (or SnapStart's restored snapshot, counted as ``prewarmed``) starts warm.

Deterministic: the same inputs give the same report. It is a fluid model (requests spread evenly over each
second), enough to show where the limits bite, not a queueing simulation.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import click

BENCH = Path(__file__).resolve().parent.parent / "bench" / "results" / "serving.json"


@dataclass(frozen=True)
class Limits:
    """Lambda and front-door limits for one function."""

    account_concurrency: int = 1000
    reserved_concurrency: int | None = None
    scale_step: int = 1000
    scale_window_s: int = 10
    keep_alive_s: int = 600
    api_rate: float | None = 100.0
    api_burst: int = 200
    prewarmed: int = 0

    @property
    def concurrency_cap(self) -> int:
        cap = self.account_concurrency
        return min(cap, self.reserved_concurrency) if self.reserved_concurrency is not None else cap


@dataclass(frozen=True)
class Report:
    """What a traffic curve met: counts, cold-start share, latency percentiles of the requests served."""

    requests: int
    served: int
    cold_starts: int
    throttled_front_door: int
    throttled_lambda: int
    peak_concurrency: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def cold_share(self) -> float:
        return self.cold_starts / self.served if self.served else 0.0

    @property
    def throttled(self) -> int:
        return self.throttled_front_door + self.throttled_lambda


def simulate(rates: Sequence[float], warm_ms: float, init_ms: float, limits: Limits = Limits()) -> Report:
    """Play ``rates`` (requests per second, one per second) against ``limits``."""
    if warm_ms <= 0:
        raise ValueError("warm_ms must be positive")
    per_environment = 1000.0 / warm_ms  # requests one warm environment serves per second
    tokens = float(limits.api_burst)
    environments = min(limits.prewarmed, limits.concurrency_cap)
    budget = limits.scale_step
    recent: deque[int] = deque(maxlen=max(1, limits.keep_alive_s))
    warm_served = cold_served = front_throttled = lambda_throttled = requests = 0
    peak = environments
    for second, rate in enumerate(rates):
        if second % limits.scale_window_s == 0:
            budget = limits.scale_step
        arriving = round(rate)
        requests += arriving
        if limits.api_rate is not None:
            tokens = min(float(limits.api_burst), tokens + limits.api_rate)
            admitted = min(arriving, int(tokens))
            tokens -= admitted
        else:
            admitted = arriving
        front_throttled += arriving - admitted
        warm_capacity = environments * per_environment
        excess = max(0.0, admitted - warm_capacity)
        # Requests the warm environments cannot take each need a new one, and keep it for init + warm ms:
        # while those start, every further arrival needs yet another (a spike from zero fans out).
        wanted = math.ceil(excess * (init_ms + warm_ms) / 1000) if excess else 0
        new = max(0, min(wanted, budget, limits.concurrency_cap - environments))
        budget -= new
        # A new environment serves its first request after init_ms, then more at the warm rate.
        cold_capacity = new * max(1.0, (1000.0 - init_ms) / warm_ms)
        # Requests that arrived while every environment was busy or starting, with none left to start: throttled.
        shortfall = wanted - new
        served = min(admitted - shortfall, int(warm_capacity + cold_capacity))
        cold = min(new, max(0, served - int(warm_capacity)))
        cold_served += cold
        warm_served += served - cold
        lambda_throttled += admitted - served
        environments += new
        peak = max(peak, environments)
        # Environments idle for keep_alive_s are reclaimed: keep as many as were busy in that window.
        recent.append(min(environments, max(math.ceil(admitted / per_environment), new)))
        environments = max(max(recent), min(limits.prewarmed, limits.concurrency_cap))
    served_total = warm_served + cold_served
    percentiles = _percentiles([(warm_ms, warm_served), (init_ms + warm_ms, cold_served)], (50, 95, 99, 100))
    return Report(requests, served_total, cold_served, front_throttled, lambda_throttled, peak, *percentiles)


def _percentiles(weighted: list[tuple[float, int]], points: Sequence[float]) -> list[float]:
    """Percentiles of values given with their counts (nearest rank)."""
    ordered = sorted((value, count) for value, count in weighted if count > 0)
    total = sum(count for _, count in ordered)
    if total == 0:
        return [0.0 for _ in points]
    found = []
    for point in points:
        rank = max(1, math.ceil(point / 100 * total))
        running = 0
        for value, count in ordered:
            running += count
            if running >= rank:
                found.append(round(value, 3))
                break
    return found


# ---- traffic curves (requests per second, one value per second) ------------------------------------------


def steady(rate: float, seconds: int) -> list[float]:
    return [rate] * seconds


def daily(peak: float, trough: float, seconds: int = 86400) -> list[float]:
    """One day: a cosine from ``trough`` (at midnight) to ``peak`` (at noon)."""
    return [trough + (peak - trough) * (1 - math.cos(2 * math.pi * t / seconds)) / 2 for t in range(seconds)]


def spike(peak: float, seconds: int, quiet_s: int = 10) -> list[float]:
    """Nothing for ``quiet_s`` seconds, then ``peak`` requests/s at once."""
    return [0.0] * quiet_s + [peak] * (seconds - quiet_s)


CURVES: dict[str, Callable[[float, int], list[float]]] = {
    "steady": steady, "daily": lambda peak, seconds: daily(peak, peak / 10, seconds), "spike": spike}


def bench_durations(model: str, path: Path = BENCH) -> tuple[float, float]:
    """(warm p50 ms, cold start p50 ms) of one model from the serving benchmark."""
    try:
        measured = json.loads(path.read_text())["per_model"][model]
        return float(measured["warm"]["p50_ms"]), float(measured["cold_ms"]["p50_ms"])
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"{path}: no serving results for {model!r} ({exc}); run `make bench` or "
                                   "pass --warm-ms and --init-ms") from exc


@click.command("capacity")
@click.option("--curve", type=click.Choice(sorted(CURVES)), default="spike", show_default=True)
@click.option("--peak", type=click.FloatRange(0), default=1000.0, show_default=True, help="Requests per second.")
@click.option("--seconds", type=click.IntRange(1, 7 * 86400), default=600, show_default=True)
@click.option("--model", default="digits-cnn", show_default=True, help="Durations from bench/results/serving.json.")
@click.option("--warm-ms", type=click.FloatRange(0.001), default=None, help="Billed warm duration (overrides bench).")
@click.option("--init-ms", type=click.FloatRange(0), default=None, help="Cold start duration (overrides bench).")
@click.option("--overhead-ms", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Added to the bench's warm duration: Lambda's invoke round trip (an assumption).")
@click.option("--account-concurrency", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--reserved", type=click.IntRange(0), default=None, help="The function's reserved concurrency.")
@click.option("--prewarmed", type=click.IntRange(0), default=0, show_default=True,
              help="Provisioned concurrency (environments that start warm).")
@click.option("--api-rate", type=click.FloatRange(0), default=100.0, show_default=True,
              help="HTTP API stage throttle rate (cdk.json throttleRate); 0 = none (Function URL).")
@click.option("--api-burst", type=click.IntRange(0), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def command(curve: str, peak: float, seconds: int, model: str, warm_ms: float | None, init_ms: float | None,
            overhead_ms: float, account_concurrency: int, reserved: int | None, prewarmed: int, api_rate: float,
            api_burst: int, as_json: bool) -> None:
    """Play a traffic curve against Lambda's scaling rules: cold starts, throttles, latency percentiles."""
    if warm_ms is None or init_ms is None:
        bench_warm, bench_init = bench_durations(model)
        warm_ms = bench_warm + overhead_ms if warm_ms is None else warm_ms
        init_ms = bench_init if init_ms is None else init_ms
    limits = Limits(account_concurrency=account_concurrency, reserved_concurrency=reserved, prewarmed=prewarmed,
                    api_rate=api_rate or None, api_burst=api_burst)
    report = simulate(CURVES[curve](peak, seconds), warm_ms, init_ms, limits)
    if as_json:
        click.echo(json.dumps({**asdict(report), "cold_share": report.cold_share, "warm_ms": warm_ms,
                               "init_ms": init_ms, "curve": curve, "peak": peak, "seconds": seconds}))
        return
    click.echo(f"{curve} to {peak:g} req/s for {seconds} s; warm {warm_ms:g} ms, init {init_ms:g} ms; "
               f"concurrency cap {limits.concurrency_cap}, API throttle "
               f"{'none' if limits.api_rate is None else f'{api_rate:g}/s burst {api_burst}'}")
    click.echo(f"requests {report.requests:,}  served {report.served:,}  cold starts {report.cold_starts:,} "
               f"({100 * report.cold_share:.3f}%)  peak concurrency {report.peak_concurrency:,}")
    click.echo(f"throttled: front door {report.throttled_front_door:,}, Lambda {report.throttled_lambda:,}")
    click.echo(f"latency ms: p50 {report.p50_ms:g}  p95 {report.p95_ms:g}  p99 {report.p99_ms:g}  "
               f"max {report.max_ms:g}")
