"""A stage with ``auth: apiKey``: the consumer table, the Lambda authorizer, each role's grants on the table,
the dashboard's top consumers, and nothing of it on other stages."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.consumers import TOP_CONSUMERS_QUERY
from infra.permissions import FUNCTIONS, check_all, grants, role_of
from tests.infra.conftest import Synthesized, synthesize

API, BATCH = "lambda:functions.api.handler.handler", "lambda:functions.batch.handler.handler"
AUTHORIZER = "lambda:functions.consumers.authorizer.handler"
FANOUT, GPU_WORKER = "lambda:functions.batch.fanout_handler.handler", "batch-job"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    stages = {"keys": {"auth": {"type": "apiKey", "cacheSeconds": 120}, "retainData": False}}
    return synthesize(tmp_path_factory.mktemp("cdk-keys"), {"stage": "keys", "stages": stages})


def _table_id(synth: Synthesized) -> str:
    (table_id,) = synth.resources("AWS::DynamoDB::Table")
    return table_id


def _stage_key(synth: Synthesized) -> str:
    (key_id,) = [lid for lid in synth.resources("AWS::KMS::Key") if lid.startswith("FoundationKey")]
    return key_id


def _function(synth: Synthesized, handler: str) -> dict[str, Any]:
    (function,) = [f for f in synth.resources("AWS::Lambda::Function").values() if f.get("Handler") == handler]
    return function


def _table_grants(synth: Synthesized, role: str) -> set[tuple[str, str]]:
    table = _table_id(synth)
    return {(g.action, g.resource.replace(table, "TABLE")) for g in grants(synth.template, role)
            if g.action.startswith("dynamodb:")}


def test_table_is_on_demand_kms_encrypted_with_ttl_pitr_and_the_key_id_index(keys: Synthesized) -> None:
    table = keys.one("AWS::DynamoDB::Table")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    sse = table["SSESpecification"]
    assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS"
    key_id = _stage_key(keys)  # the stage's customer-managed key, not an AWS-owned one
    assert sse["KMSMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    (index,) = table["GlobalSecondaryIndexes"]
    assert index == {"IndexName": "key_id", "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                     "Projection": {"ProjectionType": "ALL"}}
    # retainData false: removed with the stack, like the buckets
    assert keys.template["Resources"][_table_id(keys)]["DeletionPolicy"] == "Delete"
    assert not table.get("DeletionProtectionEnabled")


def test_authorizer_is_a_cached_request_authorizer_with_simple_responses(keys: Synthesized) -> None:
    authorizer = keys.one("AWS::ApiGatewayV2::Authorizer")
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0" and authorizer["EnableSimpleResponses"] is True
    assert authorizer["IdentitySource"] == ["$request.header.x-api-key"]
    assert authorizer["AuthorizerResultTtlInSeconds"] == 120
    function_id = next(lid for lid, f in keys.resources("AWS::Lambda::Function").items()
                       if f.get("Handler") == "functions.consumers.authorizer.handler")
    assert function_id in json.dumps(authorizer["AuthorizerUri"])
    routes = keys.resources("AWS::ApiGatewayV2::Route").values()
    protected = [r for r in routes if r["AuthorizationType"] != "NONE"]
    assert protected and all(r["AuthorizationType"] == "CUSTOM" for r in protected)
    assert {r["RouteKey"] for r in routes if r["AuthorizationType"] == "NONE"} == {
        "GET /v2/health/live", "GET /v2/health/ready",  # and the pages the key gate lets through keyless
        "GET /console", "GET /console/{proxy+}", "GET /docs", "GET /openapi.json"}
    permissions = [p for p in keys.resources("AWS::Lambda::Permission").values()
                   if function_id in json.dumps(p["FunctionName"])]
    assert permissions and all(p["Principal"] == "apigateway.amazonaws.com" for p in permissions)


def test_functions_know_the_table_and_the_api_enforces_api_keys(keys: Synthesized) -> None:
    table = {"Fn::Join": ["", ["dynamodb://", {"Ref": _table_id(keys)}]]}
    authorizer = _function(keys, "functions.consumers.authorizer.handler")
    assert authorizer["MemorySize"] == 256 and authorizer["Timeout"] <= 10
    assert authorizer["Environment"]["Variables"]["MAAS_KEYS"] == table
    api = _function(keys, "functions.api.handler.handler")["Environment"]["Variables"]
    assert api["MAAS_AUTH"] == "apiKey" and api["MAAS_KEYS"] == table
    for handler in ("functions.batch.handler.handler", "functions.batch.fanout_handler.handler"):
        variables = _function(keys, handler)["Environment"]["Variables"]
        assert variables["MAAS_KEYS"] == table and "MAAS_AUTH" not in variables  # they count job rows only
    (worker,) = [d for d in keys.resources("AWS::Batch::JobDefinition").values()
                 if "MAAS_KEYS" in json.dumps(d)]
    assert {"Name": "MAAS_KEYS", "Value": table} in worker["ContainerProperties"]["Environment"]
    output = keys.template["Outputs"]["ConsumerTable"]
    assert output["Value"] == {"Ref": _table_id(keys)} and "MAAS_KEYS=dynamodb://NAME" in output["Description"]


def test_each_role_gets_only_its_calls_on_the_table(keys: Synthesized) -> None:
    template = keys.template
    assert _table_grants(keys, role_of(template, API)) == {("dynamodb:UpdateItem", "TABLE")}
    assert _table_grants(keys, role_of(template, AUTHORIZER)) == {("dynamodb:GetItem", "TABLE")}
    (publisher,) = [lid for lid, r in keys.resources("AWS::IAM::Role").items() if lid.startswith("ModelStorePublisher")]
    assert _table_grants(keys, publisher) == {
        ("dynamodb:PutItem", "TABLE"), ("dynamodb:GetItem", "TABLE"), ("dynamodb:UpdateItem", "TABLE"),
        ("dynamodb:Scan", "TABLE"), ("dynamodb:Query", "TABLE/index/key_id")}
    key_id = _stage_key(keys)
    authorizer_kms = {(g.action, g.resource) for g in grants(template, role_of(template, AUTHORIZER))
                      if g.action.startswith("kms:")}
    assert authorizer_kms == {("kms:Decrypt", key_id)}  # DynamoDB decrypts the table key as the caller
    # Where a job submitted with a key finishes, its rows count to the consumer: UpdateItem, nothing more.
    meters = {role_of(template, BATCH), role_of(template, FANOUT), role_of(template, GPU_WORKER)}
    assert all(_table_grants(keys, role) == {("dynamodb:UpdateItem", "TABLE")} for role in meters)
    others = [lid for lid in keys.resources("AWS::IAM::Role")
              if lid not in {role_of(template, API), role_of(template, AUTHORIZER), publisher, *meters}]
    assert others and all(not _table_grants(keys, role) for role in others)


def test_every_role_covers_the_calls_of_its_code_on_an_api_key_stage(keys: Synthesized) -> None:
    assert check_all(keys.template) == []
    authorizer = next(a for a in FUNCTIONS if a.name == "authorizer")
    template = copy.deepcopy(keys.template)
    role = role_of(template, authorizer.role)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and role in str(resource["Properties"]["Roles"]):
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Action"] == "dynamodb:GetItem":
                    statement["Action"] = "dynamodb:Scan"
    problems = " | ".join(check_all(template, [authorizer]))
    assert "dynamodb:GetItem on ConsumersTable is needed by functions.consumers.dynamo_store" in problems
    assert "allows dynamodb:Scan on ConsumersTable" in problems


def test_dashboard_shows_the_top_consumers(keys: Synthesized) -> None:
    body = json.dumps(keys.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert "Top consumers" in body
    assert all(line in body for line in TOP_CONSUMERS_QUERY)  # no quotes in the query: as written
    api_logs = next(lid for lid in keys.resources("AWS::Logs::LogGroup") if lid.startswith("PredictionApiFunctionLogs"))
    assert api_logs in body


def test_api_key_stage_is_nag_clean_and_cfn_lint_clean(keys: Synthesized) -> None:
    report = json.loads((keys.outdir / "validation-report.json").read_text())
    conclusions = {p["pluginName"]: (p["conclusion"], len(p["violations"])) for p in report["pluginReports"]}
    assert conclusions == {"AwsSolutions": ("success", 0), "Serverless": ("success", 0)}
    templates = sorted(keys.outdir.glob("*.template.json"))
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", *map(str, templates)],
                            capture_output=True, text=True, check=False)
    errors = [f for f in json.loads(result.stdout or "[]") if f["Level"] == "Error"]
    assert errors == [], errors


def test_other_stages_have_no_table_and_no_lambda_authorizer(prod: Synthesized) -> None:
    assert not prod.resources("AWS::DynamoDB::Table")
    assert not any(f.get("Handler") == "functions.consumers.authorizer.handler"
                   for f in prod.resources("AWS::Lambda::Function").values())
    assert "ConsumerTable" not in prod.template["Outputs"]
    assert all("MAAS_KEYS" not in f.get("Environment", {}).get("Variables", {})
               for f in prod.resources("AWS::Lambda::Function").values())


def test_without_a_cache_no_identity_source_is_required() -> None:
    """cacheSeconds 0: every request reaches the authorizer, which then also reads ``Authorization: Bearer``."""
    import aws_cdk as cdk
    from aws_cdk import aws_apigatewayv2 as apigw
    from aws_cdk import aws_apigatewayv2_integrations as integrations
    from aws_cdk.assertions import Template

    from infra.config import AuthConfig, StageConfig
    from infra.consumers import Consumers
    from infra.foundation import Foundation

    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "t")
    foundation = Foundation(stack, "Foundation", config=StageConfig(auth=AuthConfig(type="apiKey", cache_seconds=0)))
    consumers = Consumers(stack, "Consumers", foundation=foundation)
    api = apigw.HttpApi(stack, "Api", default_authorizer=consumers.authorizer)
    api.add_routes(path="/x", integration=integrations.HttpLambdaIntegration("I", consumers.function))
    (authorizer,) = Template.from_stack(stack).find_resources("AWS::ApiGatewayV2::Authorizer").values()
    properties = authorizer["Properties"]
    assert properties["AuthorizerResultTtlInSeconds"] == 0 and not properties.get("IdentitySource")
