"""cdk.json context: defaults that deploy as they are, and clear errors for settings that cannot."""

from __future__ import annotations

import json

import pytest

from infra.config import ConfigError, stage_config
from infra.project import PROJECT_ROOT


def test_defaults_deploy_as_they_are() -> None:
    config = stage_config({})
    assert config.stage == "dev" and config.architecture == "arm64" and config.python_version == "3.12"
    assert config.warm_start == "snapstart" and config.provisioned_concurrency == 0
    assert config.auth.type == "iam" and config.bundle_budget_mb == 150 and config.retain_data


def test_cdk_json_stages_are_valid() -> None:
    context = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    for stage in context["stages"]:
        assert stage_config({**context, "stage": stage}).stage == stage
    assert stage_config({**context, "stage": "prod"}).canary is True


@pytest.mark.parametrize(("settings", "message"), [
    ({"warmStart": "snapstart", "provisionedConcurrency": 2}, "cannot be combined"),
    ({"warmStart": "provisioned"}, "provisionedConcurrency >= 1"),
    ({"auth": {"type": "jwt"}}, "needs an issuer"),
    ({"auth": {"type": "jwt", "issuer": "http://plain", "audience": ["a"]}}, "https://"),
    ({"architecture": "sparc"}, "architecture"),
    ({"bundleBudgetMb": 300}, "bundleBudgetMb"),
    ({"batchMaxConcurrency": 1}, "batchMaxConcurrency"),
    ({"gpuJobVcpus": 64, "gpuMaxVcpus": 16}, "gpuJobVcpus exceeds"),
    ({"unknownSetting": 1}, "unknownSetting"),
    ({"logRetentionDays": 45}, "logRetentionDays"),
    ({"auth": {"type": "apiKey", "cacheSeconds": 3601}}, "cacheSeconds"),
    ({"auth": {"type": "apiKey", "cacheSeconds": -1}}, "cacheSeconds"),
    ({"auth": {"type": "apiKey", "scopes": ["maas/predict"]}}, "are JWT settings; auth type is 'apiKey'"),
    ({"auth": {"type": "apiKey"}, "frontDoor": "functionUrl"}, "functionUrl' supports IAM auth only"),
    ({"auth": {"type": "apikey"}}, "auth.type"),
])
def test_invalid_settings_name_the_problem(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        stage_config({"stage": "qa", "stages": {"qa": settings}})


def test_api_key_auth_caches_the_authorizer_answer_a_minute_by_default() -> None:
    config = stage_config({"stage": "qa", "stages": {"qa": {"auth": {"type": "apiKey"}}}})
    assert config.auth.type == "apiKey" and config.auth.cache_seconds == 60
    uncached = stage_config({"stage": "qa", "stages": {"qa": {"auth": {"type": "apiKey", "cacheSeconds": 0}}}})
    assert uncached.auth.cache_seconds == 0


def test_unknown_stage_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"not in cdk.json 'stages' \(known: dev, prod\)"):
        stage_config({"stage": "staging", "stages": {"dev": {}, "prod": {}}})

