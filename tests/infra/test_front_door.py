"""The front-door stage setting (HTTP API or Lambda Function URL) and the dashboard's cost widget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.config import ConfigError, StageConfig, stage_config
from infra.cost_widget import cost_expressions
from infra.permissions import check_all
from tests.infra.conftest import Synthesized, synthesize


@pytest.fixture(scope="module")
def function_url(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk-url"),
                      {"stage": "cheap", "stages": {"cheap": {"frontDoor": "functionUrl"}}})


def test_function_url_front_door_replaces_the_http_api_with_iam_auth(function_url: Synthesized) -> None:
    url = function_url.one("AWS::Lambda::Url")
    assert url["AuthType"] == "AWS_IAM"
    assert "live" in json.dumps(url.get("Qualifier")).lower()  # the live alias (SnapStart, canary) serves it
    assert not function_url.resources("AWS::ApiGatewayV2::Api")
    assert not function_url.resources("AWS::ApiGatewayV2::Stage")
    outputs = function_url.template["Outputs"]
    assert "FunctionUrl" in json.dumps(outputs["ApiUrl"]["Value"])


def test_function_url_stage_is_nag_clean_and_its_roles_cover_their_calls(function_url: Synthesized) -> None:
    report = json.loads((function_url.outdir / "validation-report.json").read_text())
    conclusions = {p["pluginName"]: (p["conclusion"], len(p["violations"])) for p in report["pluginReports"]}
    assert conclusions == {"AwsSolutions": ("success", 0), "Serverless": ("success", 0)}
    assert check_all(function_url.template) == []


def test_function_url_dashboard_reads_the_lambda_url_metrics(function_url: Synthesized) -> None:
    body = json.dumps(function_url.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert "UrlRequestCount" in body and "Url5xxCount" in body and "UrlRequestLatency" in body
    alarms = function_url.resources("AWS::CloudWatch::Alarm").values()
    assert any("UrlRequestLatency" in json.dumps(a) for a in alarms)


def test_function_url_refuses_jwt_auth() -> None:
    with pytest.raises(ConfigError, match="functionUrl' supports IAM auth only"):
        stage_config({"stage": "x", "stages": {"x": {"frontDoor": "functionUrl", "auth": {
            "type": "jwt", "issuer": "https://issuer.example", "audience": ["maas"]}}}})


def test_default_front_door_is_the_http_api(dev: Synthesized) -> None:
    assert StageConfig().front_door == "httpApi"
    assert dev.resources("AWS::ApiGatewayV2::Api") and not dev.resources("AWS::Lambda::Url")


def test_dashboard_has_a_cost_widget_from_the_emf_metrics(dev: Synthesized) -> None:
    body = json.dumps(dev.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert "estimated $/hour" in body and "front door share" in body
    assert "SampleCount" in body and "ModelLoadTime" in body  # requests and init from the maas EMF metrics


def test_cost_expression_uses_the_stage_prices() -> None:
    prices = json.loads((Path(__file__).parents[2] / "maas" / "prices.json").read_text())
    total, _, _ = cost_expressions(StageConfig(), prices)
    # $1.20 per million requests (Lambda $0.20 + HTTP API $1.00), arm64 GB-ms at 2 GB
    assert "0.0000012000" in total.expression and "12 * (requests" in total.expression
    assert f"{2 * prices['lambda']['gb_second']['arm64'] / 1000:.12f}" in total.expression
    url_total, url_front, _ = cost_expressions(StageConfig(front_door="functionUrl"), prices)
    assert "0.0000002000" in url_total.expression and "0.0000000000" in url_front.expression
