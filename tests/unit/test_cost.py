"""`maas cost`: the cost model's arithmetic, the CloudWatch reader against moto's server, the command."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from maas.cost import (
    BENCH,
    PRICES,
    CostError,
    Deployment,
    KeyAuth,
    Usage,
    command,
    cost_of,
    key_auth_cost,
    load_prices,
    usage_from_bench,
    usage_from_cloudwatch,
)

PRICES_TABLE = load_prices(PRICES)


def test_a_millisecond_prediction_is_mostly_front_door() -> None:
    usage = Usage("tiny", warm_ms=0.4, init_ms=460.0, cold_share=0.01)
    cost = cost_of(usage, Deployment(memory_mb=2048), PRICES_TABLE, "arm64")
    assert cost.requests == pytest.approx(0.20) and cost.front_door == pytest.approx(1.00)
    assert cost.compute == pytest.approx(2 * 0.001 * 0.0000133334 * 1e6)  # billed 1 ms at 2 GB
    assert cost.init == pytest.approx(0.01 * 2 * 0.460 * 0.0000133334 * 1e6)
    assert cost.front_door_share > 0.7
    url = cost_of(usage, Deployment(memory_mb=2048, front_door="functionUrl"), PRICES_TABLE, "arm64")
    assert url.front_door == 0 and url.total < cost.total / 3
    assert url.break_even_monthly > cost.break_even_monthly


def test_x86_costs_more_per_gb_second_and_break_even_follows_the_instance_price() -> None:
    usage = Usage("m", warm_ms=50, init_ms=800, cold_share=0.0)
    arm = cost_of(usage, Deployment(1024), PRICES_TABLE, "arm64")
    x86 = cost_of(usage, Deployment(1024), PRICES_TABLE, "x86_64")
    assert x86.compute / arm.compute == pytest.approx(0.0000166667 / 0.0000133334)
    monthly = PRICES_TABLE["sagemaker_realtime"]["hourly"] * 730
    assert arm.break_even_monthly == pytest.approx(monthly / arm.total * 1e6)


def test_serverless_rounds_memory_up_to_its_sizes() -> None:
    usage = Usage("m", warm_ms=100, init_ms=0, cold_share=0, payload_kb=0)
    cost = cost_of(usage, Deployment(memory_mb=1536), PRICES_TABLE, "arm64")
    assert cost.serverless == pytest.approx(2 * 0.1 * 0.00002 * 1e6)  # 1.5 GB -> the 2 GB size


def test_prices_file_can_be_overridden_and_must_be_complete(tmp_path: Path) -> None:
    table = dict(PRICES_TABLE, front_door={"httpApi": 0.0000035, "functionUrl": 0.0})
    (tmp_path / "p.json").write_text(json.dumps(table))
    usage = Usage("m", 1, 1, 0)
    assert cost_of(usage, Deployment(), load_prices(tmp_path / "p.json"), "arm64").front_door == pytest.approx(3.5)
    (tmp_path / "bad.json").write_text(json.dumps({"date": "x"}))
    with pytest.raises(CostError, match="no 'region'"):
        load_prices(tmp_path / "bad.json")


def test_bench_durations_per_model() -> None:
    usages = {u.model: u for u in usage_from_bench()}
    assert {"digits-cnn", "text-lstm"} <= set(usages)
    recorded = json.loads(BENCH.read_text())["per_model"]  # the figures come from the file, as recorded
    for name, usage in usages.items():
        assert usage.warm_ms == float(recorded[name]["warm"]["p50_ms"])
        assert usage.init_ms == float(recorded[name]["cold_ms"]["p50_ms"])


def test_usage_from_cloudwatch_on_moto(moto_endpoint: str) -> None:
    import boto3

    client = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")
    now = datetime.now(UTC)
    model = f"m-{uuid.uuid4().hex[:8]}"
    dims = [{"Name": "model", "Value": model}]
    client.put_metric_data(Namespace="maas", MetricData=[
        {"MetricName": "Latency", "Dimensions": dims, "Values": [2.0, 4.0], "Counts": [300, 100], "Timestamp": now},
        {"MetricName": "ColdStart", "Dimensions": dims, "Values": [1.0, 0.0], "Counts": [4, 396], "Timestamp": now},
        {"MetricName": "ModelLoadTime", "Dimensions": dims, "Values": [30.0], "Counts": [4], "Timestamp": now}])
    (usage,) = [u for u in usage_from_cloudwatch(client, days=1, now=now + timedelta(minutes=1),
                                                 runtime_init_ms=400.0) if u.model == model]
    assert usage.requests == 400 and usage.warm_ms == pytest.approx(2.5)
    assert usage.cold_share == pytest.approx(0.01) and usage.init_ms == pytest.approx(430.0)


def test_command_prints_each_model_on_both_architectures(tmp_path: Path) -> None:
    result = CliRunner().invoke(command, ["--json", "--front-door", "httpApi", "--memory-mb", "1024"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["architecture"] for r in rows} == {"arm64", "x86_64"}
    assert all(r["front_door"] == pytest.approx(1.0) and not math.isinf(r["break_even_monthly"]) for r in rows)
    text = CliRunner().invoke(command, [])
    assert text.exit_code == 0 and "front %" in text.output and "us-east-1" in text.output
    missing = CliRunner().invoke(command, ["--bench", str(tmp_path / "none.json")])
    assert missing.exit_code == 1 and "run `make bench`" in missing.output


def test_api_keys_add_authorizer_misses_key_reads_and_table_writes() -> None:
    auth = KeyAuth(cache_hit=0.9, authorizer_ms=2.4, authorizer_memory_mb=256, limit_writes=2, table_ms=5.0)
    cost = key_auth_cost(auth, Deployment(memory_mb=2048), PRICES_TABLE, "arm64")
    assert cost.authorizer_invocations == pytest.approx(100_000)  # the gateway cache answers the other 90%
    assert cost.authorizer_requests == pytest.approx(100_000 * 0.0000002)
    assert cost.authorizer_compute == pytest.approx(100_000 * 0.25 * 0.003 * 0.0000133334)  # billed 3 ms
    assert cost.key_reads == pytest.approx(100_000 * 0.5 * 0.000000125)  # eventually consistent GetItem
    assert cost.table_writes == pytest.approx(3 * 0.625)  # usage + rate + quota, $0.625 per million writes
    assert cost.api_time == pytest.approx(2 * 3 * 0.005 * 0.0000133334 * 1e6)
    assert cost.total == pytest.approx(sum((cost.authorizer_requests, cost.authorizer_compute, cost.key_reads,
                                            cost.table_writes, cost.api_time)))
    uncached = key_auth_cost(KeyAuth(cache_hit=0.0, limit_writes=0), Deployment(), PRICES_TABLE, "arm64")
    assert uncached.authorizer_invocations == 1_000_000 and uncached.table_writes == pytest.approx(0.625)
    no_table = {k: v for k, v in PRICES_TABLE.items() if k != "dynamodb"}
    with pytest.raises(CostError, match="no 'dynamodb'"):
        key_auth_cost(auth, Deployment(), no_table, "arm64")


def test_command_adds_api_keys_only_when_asked() -> None:
    plain = json.loads(CliRunner().invoke(command, ["--json"]).output)
    assert all("api_keys" not in row for row in plain)
    result = CliRunner().invoke(command, ["--json", "--api-keys", "--auth-cache-hit", "0.5", "--limit-writes", "0"])
    assert result.exit_code == 0, result.output
    for row in json.loads(result.output):
        keys = row["api_keys"]
        assert keys["authorizer_invocations"] == pytest.approx(500_000) and keys["architecture"] == row["architecture"]
        assert keys["table_writes"] == pytest.approx(0.625)
        assert row["total_with_api_keys"] == pytest.approx(row["total"] + keys["total"])
    text = CliRunner().invoke(command, ["--api-keys"])
    assert text.exit_code == 0 and "API keys (auth: apiKey)" in text.output and "auth req" in text.output
