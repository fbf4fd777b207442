"""The capacity simulator's rules, one at a time (deterministic: exact counts)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from maas.capacity import BENCH, Limits, command, daily, simulate, spike, steady

NO_API = Limits(api_rate=None)


def test_steady_traffic_warms_up_once_then_serves_warm() -> None:
    report = simulate(steady(50, 300), warm_ms=10, init_ms=200, limits=NO_API)
    # 50 req/s at 10 ms keeps 0.5 environments busy, but from zero every arrival during the 210 ms of
    # init + first request needs its own: ceil(50 x 0.21) = 11, all cold once, then warm.
    assert report.requests == report.served == 15_000
    assert report.cold_starts == 11 and report.throttled == 0
    assert report.p50_ms == report.p99_ms == 10 and report.max_ms == 210


def test_scaling_rate_is_1000_new_environments_per_10_seconds() -> None:
    # 30,000 req/s at 100 ms needs 3,000 busy environments: reached in three 10-second windows.
    report = simulate(spike(30_000, 40, quiet_s=0), warm_ms=100, init_ms=0,
                      limits=Limits(account_concurrency=10_000, api_rate=None))
    assert report.cold_starts == 3000 and report.peak_concurrency == 3000
    # Windows 1 and 2 serve 1,000 and 2,000 environments' worth: 2 x 10 s x (30,000 - capacity) throttled.
    assert report.throttled_lambda == 10 * (30_000 - 10_000) + 10 * (30_000 - 20_000)


def test_account_and_reserved_concurrency_cap_the_environments() -> None:
    account = simulate(steady(30_000, 30), warm_ms=100, init_ms=0, limits=Limits(account_concurrency=1000,
                                                                                   api_rate=None))
    assert account.peak_concurrency == 1000 and account.throttled_lambda == 30 * 20_000
    reserved = simulate(steady(30_000, 30), warm_ms=100, init_ms=0,
                        limits=Limits(account_concurrency=10_000, reserved_concurrency=200, api_rate=None))
    assert reserved.peak_concurrency == 200 and reserved.throttled_lambda == 30 * 28_000


def test_http_api_token_bucket_throttles_above_rate_after_the_burst() -> None:
    report = simulate(steady(150, 100), warm_ms=1, init_ms=0, limits=Limits(api_rate=100, api_burst=200))
    # The bucket starts full (200 tokens) and refills 100/s up to the burst: 150 pass in each of the first two
    # seconds (200, then 50 + 100 tokens), 100 a second after that.
    assert report.throttled_front_door == 150 * 100 - (150 + 150 + 100 * 98)
    assert report.throttled_lambda == 0


def test_a_spike_from_zero_fans_out_cold_starts_and_provisioned_concurrency_absorbs_it() -> None:
    cold = simulate(spike(5000, 60), warm_ms=2, init_ms=500, limits=NO_API)
    assert cold.cold_starts == 1000  # 5,000/s x 0.502 s wanted 2,510, capped by the first window's 1,000
    assert cold.throttled_lambda == 1510 and cold.max_ms == 502
    warm = simulate(spike(5000, 60), warm_ms=2, init_ms=500, limits=Limits(api_rate=None, prewarmed=10))
    assert warm.cold_starts == 0 and warm.throttled == 0 and warm.max_ms == 2


def test_idle_environments_are_reclaimed_after_the_keep_alive() -> None:
    gap = [10.0] * 5 + [0.0] * 30 + [10.0] * 5
    short = simulate(gap, warm_ms=10, init_ms=100, limits=Limits(api_rate=None, keep_alive_s=10))
    long = simulate(gap, warm_ms=10, init_ms=100, limits=Limits(api_rate=None, keep_alive_s=60))
    assert short.cold_starts == 2 * long.cold_starts > 0


def test_daily_curve_and_percentiles_are_deterministic() -> None:
    curve = daily(200, 20, 3600)
    assert min(curve) == pytest.approx(20) and max(curve) == pytest.approx(200)
    first = simulate(curve, warm_ms=5, init_ms=300)
    assert first == simulate(curve, warm_ms=5, init_ms=300)
    assert first.p50_ms == 5 and first.cold_share < 0.001


def test_the_command_reads_bench_durations_and_prints_json() -> None:
    result = CliRunner().invoke(command, ["--curve", "spike", "--peak", "2000", "--seconds", "60", "--json",
                                          "--api-rate", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    recorded = json.loads(BENCH.read_text())["per_model"]["digits-cnn"]  # the default model's recorded cold start
    assert report["requests"] == 2000 * 50 and report["cold_starts"] > 0
    assert report["init_ms"] == float(recorded["cold_ms"]["p50_ms"])
    missing = CliRunner().invoke(command, ["--model", "no-such-model"])
    assert missing.exit_code == 1 and "no serving results for 'no-such-model'" in missing.output
