"""Property assertions on the synthesized template (never on logical ids)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.batch_events import MAX_RECEIVE_COUNT
from infra.config import StageConfig
from tests.infra.conftest import Synthesized, synthesize

DEFAULTS = StageConfig()
OBJECT_PREFIX_ENDINGS = ('/models/*"]]}', '/inputs/*"]]}', '/outputs/*"]]}', '/capture/*"]]}', '/capture-errors/*"]]}',
                         '/shadow/*"]]}', '/drift/*"]]}', '/jobs/*"]]}')


def _statements(synth: Synthesized) -> list[dict[str, Any]]:
    found = []
    for resource_type in ("AWS::IAM::Policy", "AWS::IAM::Role"):
        for props in synth.resources(resource_type).values():
            documents = [props.get("PolicyDocument")] + [p["PolicyDocument"] for p in props.get("Policies", [])]
            for document in filter(None, documents):
                found += document["Statement"]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _buckets_by_encryption(dev: Synthesized) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kms, s3_managed = [], []
    for props in dev.resources("AWS::S3::Bucket").values():
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        (kms if rule["SSEAlgorithm"] == "aws:kms" else s3_managed).append(props)
    return kms, s3_managed


def test_model_and_data_buckets_are_versioned_kms_encrypted_private_logged_and_retained(dev: Synthesized) -> None:
    kms, s3_managed = _buckets_by_encryption(dev)
    assert len(kms) == 2 and len(s3_managed) == 1  # model store + data bucket; the access log bucket
    for props in kms + s3_managed:
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    for props in kms:
        assert "KMSMasterKeyID" in props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"]
        assert props["LoggingConfiguration"]["DestinationBucketName"]
    buckets = [r for r in dev.template["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    assert all(r["DeletionPolicy"] == "Retain" and r["UpdateReplacePolicy"] == "Retain" for r in buckets)
    keys = dev.resources("AWS::KMS::Key").values()
    assert keys and all(k["EnableKeyRotation"] is True for k in keys)


def test_every_bucket_and_queue_refuses_plain_http(dev: Synthesized) -> None:
    def denies_insecure(document: dict[str, Any]) -> bool:
        return any(s["Effect"] == "Deny"
                   and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                   for s in document["Statement"])

    bucket_policies = list(dev.resources("AWS::S3::BucketPolicy").values())
    queue_policies = list(dev.resources("AWS::SQS::QueuePolicy").values())
    assert len(bucket_policies) == 3 and len(queue_policies) == 4  # + the drift schedule's failed runs
    assert all(denies_insecure(p["PolicyDocument"]) for p in bucket_policies + queue_policies)
    model_store_tls = [s for p in bucket_policies for s in p["PolicyDocument"]["Statement"]
                       if "s3:TlsVersion" in json.dumps(s)]
    assert len(model_store_tls) == 2  # minimum TLS 1.2 on the model store and the data bucket


def test_only_the_publisher_role_may_write_models(dev: Synthesized) -> None:
    denies = [s for p in dev.resources("AWS::S3::BucketPolicy").values() for s in p["PolicyDocument"]["Statement"]
              if s["Effect"] == "Deny" and "s3:PutObject" in _as_list(s["Action"])]
    assert len(denies) == 1
    assert "aws:PrincipalArn" in denies[0]["Condition"]["ArnNotEquals"]
    writers = [s for s in _statements(dev) if "s3:PutObject" in _as_list(s["Action"])
               and "/models/*" in json.dumps(s["Resource"]) and "/drift/" not in json.dumps(s["Resource"])]
    assert len(writers) == 1  # the publisher's policy only (the drift job writes reports only: test_monitoring)


def test_queue_has_dlq_visibility_and_encryption(dev: Synthesized) -> None:
    queues = list(dev.resources("AWS::SQS::Queue").values())
    (inputs,) = [q for q in queues if "RedrivePolicy" in q]
    assert 3 <= inputs["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVE_COUNT <= 5
    function_timeout = next(f for f in dev.resources("AWS::Lambda::Function").values()
                        if f.get("Handler") == "functions.batch.handler.handler")["Timeout"]
    assert inputs["VisibilityTimeout"] >= 6 * function_timeout
    dead_letters = [q for q in queues if q is not inputs and "KmsMasterKeyId" in q]
    assert len(dead_letters) == 1 and dead_letters[0]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert all("KmsMasterKeyId" in q or q.get("SqsManagedSseEnabled") for q in queues)


def test_batch_function_reports_partial_failures_within_reserved_concurrency(dev: Synthesized) -> None:
    mapping = dev.one("AWS::Lambda::EventSourceMapping")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10
    batch_fn = next(f for f in dev.resources("AWS::Lambda::Function").values()
                if f.get("Handler") == "functions.batch.handler.handler")
    assert batch_fn["ReservedConcurrentExecutions"] >= mapping["ScalingConfig"]["MaximumConcurrency"]


def test_only_inputs_trigger_batch_predictions(dev: Synthesized) -> None:
    (notifications,) = [r["Properties"] for r in dev.template["Resources"].values()
                        if r["Type"] == "Custom::S3BucketNotifications"]
    (config,) = notifications["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "inputs/"}]


def test_functions_are_arm64_python312_traced_with_their_own_log_groups(dev: Synthesized) -> None:
    ours = [f for f in dev.resources("AWS::Lambda::Function").values()
            if str(f.get("Handler", "")).startswith("functions.")]
    assert {f["Handler"] for f in ours} == {"functions.api.handler.handler", "functions.batch.handler.handler",
                                            "functions.batch.fanout_handler.handler",
                                            "functions.drift.handler.handler"}
    for function in ours:
        assert function["Architectures"] == ["arm64"]
        assert function["Runtime"] == "python3.12"
        assert function["TracingConfig"] == {"Mode": "Active"}
        assert "LogGroup" in json.dumps(function["LoggingConfig"])
        assert function["Environment"]["Variables"]["MAAS_STORE"]
    assert all(g.get("RetentionInDays") for g in dev.resources("AWS::Logs::LogGroup").values())


def test_api_function_uses_snapstart_through_a_published_alias(dev: Synthesized) -> None:
    api_fn = next(f for f in dev.resources("AWS::Lambda::Function").values()
              if f.get("Handler") == "functions.api.handler.handler")
    assert api_fn["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    alias = dev.one("AWS::Lambda::Alias")
    assert alias["Name"] == "live" and "Version" in json.dumps(alias["FunctionVersion"])
    assert "ProvisionedConcurrencyConfig" not in alias
    (integration,) = dev.resources("AWS::ApiGatewayV2::Integration").values()
    target = integration["IntegrationUri"]["Ref"]
    assert dev.template["Resources"][target]["Type"] == "AWS::Lambda::Alias"  # traffic goes to the alias


def test_every_route_but_health_needs_authorization(dev: Synthesized) -> None:
    routes = {r["RouteKey"]: r["AuthorizationType"] for r in dev.resources("AWS::ApiGatewayV2::Route").values()}
    public = {key for key, kind in routes.items() if kind == "NONE"}
    assert public == {"GET /v2/health/live", "GET /v2/health/ready"}
    assert routes["ANY /{proxy+}"] == "AWS_IAM"


def test_stage_is_throttled_with_json_access_logs(dev: Synthesized) -> None:
    stage = dev.one("AWS::ApiGatewayV2::Stage")
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == DEFAULTS.throttle_rate
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == DEFAULTS.throttle_burst
    log_format = json.loads(stage["AccessLogSettings"]["Format"])
    assert log_format["requestId"] == "$context.requestId" and "status" in log_format


def test_gpu_job_definition(dev: Synthesized) -> None:
    job = dev.one("AWS::Batch::JobDefinition")
    container = job["ContainerProperties"]
    assert {"Type": "GPU", "Value": "1"} in container["ResourceRequirements"]
    assert container["Privileged"] is False
    assert container["ReadonlyRootFilesystem"] is True
    assert any(m["ContainerPath"] == "/tmp" for m in container["MountPoints"])
    assert job["Timeout"]["AttemptDurationSeconds"] == DEFAULTS.gpu_job_timeout_minutes * 60
    strategy = job["RetryStrategy"]
    assert strategy["Attempts"] == 3
    actions = [(e["Action"].upper(), e.get("OnStatusReason"), e.get("OnExitCode")) for e in strategy["EvaluateOnExit"]]
    assert actions[0] == ("RETRY", "Host EC2*", None)
    assert actions[-1] == ("EXIT", None, "*")


def test_gpu_compute_scales_from_zero_in_private_subnets_with_flow_logs(dev: Synthesized) -> None:
    resources = dev.one("AWS::Batch::ComputeEnvironment")["ComputeResources"]
    assert resources["MinvCpus"] == 0 and resources["MaxvCpus"] == DEFAULTS.gpu_max_vcpus
    assert resources["InstanceTypes"] == list(DEFAULTS.gpu_instance_types)
    assert resources["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    private = [s for s in dev.resources("AWS::EC2::Subnet").values() if s["MapPublicIpOnLaunch"] is False]
    assert len(private) == 2 and len(resources["Subnets"]) == 2
    assert dev.one("AWS::EC2::FlowLog")["TrafficType"] == "ALL"
    launch = dev.one("AWS::EC2::LaunchTemplate")["LaunchTemplateData"]["MetadataOptions"]
    assert launch["HttpTokens"] == "required"


def test_submit_job_is_allowed_only_on_the_queue_and_job_definition(dev: Synthesized) -> None:
    submits = [s for s in _statements(dev) if "batch:SubmitJob" in _as_list(s["Action"])]
    assert len(submits) == 2  # the batch function's dispatch and the fan-out state machine's array jobs
    for submit in submits:
        resources = json.dumps(submit["Resource"])
        assert len(submit["Resource"]) == 2 and ("JobQueue" in resources or "Queue" in resources)
        assert "*" not in resources or (resources.count("*") == 1 and ':job-definition/*"' in resources)


def test_no_action_wildcards_and_resource_wildcards_only_where_nothing_can_be_named(dev: Synthesized) -> None:
    # Services without resource-level permissions, and CDK's own notification handler.
    unnamed = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "ecr:GetAuthorizationToken",
               "s3:PutBucketNotification"}
    from tests.infra.test_fanout_template import state_machine_statements

    fanout = state_machine_statements(dev)  # CDK's grants for Step Functions: tests/infra/test_fanout_template.py
    for statement in _statements(dev):
        if statement["Effect"] != "Allow" or "Action" not in statement or statement in fanout:
            continue
        actions = _as_list(statement["Action"])
        assert not [a for a in actions if "*" in a], statement
        if statement.get("Resource") == "*":
            assert set(actions) <= unnamed, statement
        else:
            for resource in _as_list(statement.get("Resource", [])):
                text = json.dumps(resource)
                assert "*" not in text or text.endswith(OBJECT_PREFIX_ENDINGS), text


def test_dashboard_and_alarms(dev: Synthesized) -> None:
    body = json.dumps(dev.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    for needle in ("Latency", "p50", "p99", "5xx", "Throttles", "ColdStart", "RowsOk",
                   "ApproximateNumberOfMessagesVisible", "MatchedEvents", "StaleAliasTargets", "StoreRefreshFailures"):
        assert needle in body, needle
    alarms = list(dev.resources("AWS::CloudWatch::Alarm").values())
    described = " ".join(a.get("AlarmDescription", "") for a in alarms)
    for needle in ("5xx", "p99", "dead-letter", "GPU job failed", "background refreshes"):
        assert needle in described, needle
    refresh = [a for a in alarms if "StoreRefreshFailures" in json.dumps(a.get("Metrics"))]
    assert len(refresh) == 1 and (refresh[0]["Threshold"], refresh[0]["EvaluationPeriods"]) == (5, 2)
    stat = refresh[0]["Metrics"][0]["MetricStat"]
    assert stat["Metric"] == {"MetricName": "StoreRefreshFailures", "Namespace": "maas"}  # no dimension: one series
    assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
    assert all(a.get("AlarmActions") for a in alarms)
    topic = dev.one("AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic


def test_outputs_name_the_api_url_and_buckets(dev: Synthesized) -> None:
    outputs = dev.template["Outputs"]
    assert {"ApiUrl", "ModelStoreUri", "DataBucket", "DashboardName", "PublisherRoleArn"} <= set(outputs)


def test_prod_stage_adds_a_canary_rolled_back_on_alarms(prod: Synthesized) -> None:
    group = prod.one("AWS::CodeDeploy::DeploymentGroup")
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert set(group["AutoRollbackConfiguration"]["Events"]) >= {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
    assert group["AlarmConfiguration"]["Enabled"] is True
    alias = next(r for r in prod.template["Resources"].values() if r["Type"] == "AWS::Lambda::Alias")
    assert "CodeDeployLambdaAliasUpdate" in alias["UpdatePolicy"]


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    stages = {"custom": {"architecture": "x86_64", "warmStart": "provisioned", "provisionedConcurrency": 2,
                         "auth": {"type": "jwt", "issuer": "https://issuer.example.com/",
                                  "audience": ["maas"], "scopes": ["maas/predict"]},
                         "alarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:ops"}}
    return synthesize(tmp_path_factory.mktemp("cdk-custom"), {"stage": "custom", "stages": stages})


def test_custom_stage_jwt_scopes_provisioned_concurrency_and_x86(custom: Synthesized) -> None:
    authorizer = custom.one("AWS::ApiGatewayV2::Authorizer")
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["JwtConfiguration"] == {"Audience": ["maas"], "Issuer": "https://issuer.example.com/"}
    routes = custom.resources("AWS::ApiGatewayV2::Route").values()
    protected = [r for r in routes if r["AuthorizationType"] != "NONE"]
    assert protected and all(r["AuthorizationType"] == "JWT" and r["AuthorizationScopes"] == ["maas/predict"]
                             for r in protected)
    alias = custom.one("AWS::Lambda::Alias")
    assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    functions = [f for f in custom.resources("AWS::Lambda::Function").values()
                 if str(f.get("Handler", "")).startswith("functions.")]
    assert all(f["Architectures"] == ["x86_64"] and "SnapStart" not in f for f in functions)
    assert not custom.resources("AWS::SNS::Topic")  # alarms go to the existing topic
    assert all("arn:aws:sns:eu-west-1:123456789012:ops" in json.dumps(a["AlarmActions"])
               for a in custom.resources("AWS::CloudWatch::Alarm").values())


def test_the_api_may_sign_job_uploads_and_downloads_only_under_the_jobs_prefixes(dev: Synthesized) -> None:
    from infra.permissions import FUNCTIONS, grants, role_of

    (api,) = [r for r in dev.template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
              and r["Properties"].get("Handler") == "functions.api.handler.handler"]
    assert {"MAAS_DATA_BUCKET", "MAAS_DATA_KEY_ARN"} <= set(api["Properties"]["Environment"]["Variables"])
    access = next(a for a in FUNCTIONS if a.name == "api")
    allowed = grants(dev.template, role_of(dev.template, access.role))
    data = {(g.action, g.resource.split("/", 1)[1]) for g in allowed if "BatchEventsDataBucket" in g.resource
            and "/" in g.resource}
    assert data == {("s3:PutObject", "jobs/*"), ("s3:GetObject", "jobs/*"), ("s3:PutObject", "inputs/*/jobs/*"),
                    ("s3:GetObject", "inputs/*/jobs/*"), ("s3:GetObject", "outputs/*/jobs/*"),
                    ("s3:GetObject", "shadow/*")}, data  # shadow/: the console's rollout reports
