"""The prediction API: the FastAPI app in Lambda behind an HTTP API with an authorizer, throttling and JSON
access logs; SnapStart or provisioned concurrency on a ``live`` alias; optional canary deployments."""

from __future__ import annotations

import json

import jsii
from aws_cdk import Annotations, Duration, aws_apigateway
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.access import grant_key
from infra.consumers import Consumers
from infra.foundation import Foundation
from infra.lambda_function import service_function
from infra.model_store import ModelStore

# Routes a load balancer or uptime probe may call without credentials; they reveal nothing about models.
JOB_RECORDS, JOB_INPUTS, JOB_OUTPUTS = "jobs", "inputs/*/jobs", "outputs/*/jobs"
PUBLIC_ROUTES = ("/v2/health/live", "/v2/health/ready")
KEYLESS_PAGES = ("/console", "/console/{proxy+}", "/docs", "/openapi.json")
"""On API-key stages also public: the console's own files and the API's description. They hold no model data;
the API function's key gate lets them through, and the console sends the key on every call it makes."""
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId", "time": "$context.requestTime", "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod", "route": "$context.routeKey", "path": "$context.path",
    "status": "$context.status", "protocol": "$context.protocol", "bytes": "$context.responseLength",
    "latencyMs": "$context.responseLatency", "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage", "authorizerError": "$context.authorizer.error",
}


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogs:
    def __init__(self, destination: apigw.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> aws_apigateway.AccessLogFormat:
        return aws_apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))


class PredictionApi(Construct):
    """HTTPS entry point: every route but health needs IAM (SigV4), a JWT with the configured scopes, or an
    API key (checked by the consumers' authorizer)."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation, store: ModelStore,
                 consumers: Consumers | None = None) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        snap_start = lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if config.warm_start == "snapstart" else None
        self.function = service_function(
            self, "Function", foundation=foundation, handler="functions.api.handler.handler",
            description="prediction API (v1 JSON and Open Inference Protocol v2)", memory_mb=config.api_memory_mb,
            timeout=Duration.seconds(config.api_timeout_seconds), snap_start=snap_start,
            environment={"MAAS_STORE": store.uri, "MAAS_PRELOAD": ",".join(config.preload)},
            reserved_concurrent_executions=config.api_reserved_concurrency or None)
        store.grant_read(self.function)
        if snap_start is not None:
            Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish", "the live alias publishes current_version")
        self.alias = lambda_.Alias(
            self, "Live", alias_name="live", version=self.function.current_version,
            provisioned_concurrent_executions=config.provisioned_concurrency or None)
        self.errors_alarm = cloudwatch.Alarm(
            self, "AliasErrors", metric=self.alias.metric_errors(period=Duration.minutes(1)), threshold=1,
            evaluation_periods=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="The live alias of the prediction function raised errors")
        if config.canary:
            codedeploy.LambdaDeploymentGroup(
                self, "Canary", alias=self.alias, alarms=[self.errors_alarm],
                deployment_config=codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
                auto_rollback=codedeploy.AutoRollbackConfig(failed_deployment=True, deployment_in_alarm=True))

        self.api: apigw.HttpApi | None = None
        self.function_url: lambda_.FunctionUrl | None = None
        if config.front_door == "functionUrl":
            # No per-request fee; IAM (SigV4) only, no stage throttling or access logs (docs/cost.md).
            self.function_url = self.alias.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
            return
        integration = integrations.HttpLambdaIntegration("Integration", self.alias)
        self.api = apigw.HttpApi(self, "HttpApi", api_name=f"maas-{config.stage}", create_default_stage=False,
                                 default_authorizer=_authorizer(config.auth.type, config.auth.issuer,
                                                                list(config.auth.audience), consumers),
                                 default_authorization_scopes=list(config.auth.scopes) or None,
                                 description=f"maas {config.stage} prediction API")
        self.api.add_routes(path="/{proxy+}", methods=[apigw.HttpMethod.ANY], integration=integration)
        for path in PUBLIC_ROUTES + (KEYLESS_PAGES if config.auth.type == "apiKey" else ()):
            self.api.add_routes(path=path, methods=[apigw.HttpMethod.GET], integration=integration,
                                authorizer=apigw.HttpNoneAuthorizer())
        self.access_logs = foundation.log_group(self, "AccessLogs")
        self.stage = self.api.add_stage(
            "Stage", stage_name="$default", auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=config.throttle_rate, burst_limit=config.throttle_burst),
            access_log_settings=_AccessLogs(apigw.LogGroupLogDestination(self.access_logs)))

    def enable_jobs(self, data_bucket: s3.IBucket, key: kms.IKey) -> None:
        """Asynchronous jobs: the function writes job records, presigns uploads under ``inputs/*/jobs/`` (the
        upload is made with its signature, so it needs the write and the key) and reads and presigns outputs
        under ``outputs/*/jobs/``; nothing else of the data bucket."""
        self.function.add_environment("MAAS_DATA_BUCKET", data_bucket.bucket_name)
        self.function.add_environment("MAAS_DATA_KEY_ARN", key.key_arn)
        role = self.function.role
        assert role is not None
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[data_bucket.arn_for_objects(f"{prefix}/*") for prefix in (JOB_RECORDS, JOB_INPUTS)]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[data_bucket.arn_for_objects(f"{JOB_OUTPUTS}/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:ListBucket"],
                                                         resources=[data_bucket.bucket_arn]))
        grant_key(role, key, encrypt=True)

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.function_url.url if self.function_url is not None else self.stage.url

    def metric_requests(self) -> cloudwatch.IMetric:
        """Requests through the front door (5-minute sums)."""
        return self._metric("Count", "UrlRequestCount", "Sum", "requests")

    def metric_server_errors(self) -> cloudwatch.IMetric:
        return self._metric("5xx", "Url5xxCount", "Sum", "5xx")

    def metric_client_errors(self) -> cloudwatch.IMetric:
        return self._metric("4xx", "Url4xxCount", "Sum", "4xx")

    def metric_latency(self, statistic: str) -> cloudwatch.IMetric:
        return self._metric("Latency", "UrlRequestLatency", statistic, statistic)

    def _metric(self, http_api_name: str, url_name: str, statistic: str, label: str) -> cloudwatch.IMetric:
        period = Duration.minutes(5)
        if self.api is not None:
            return self.api.metric(http_api_name, period=period, statistic=statistic, label=label)
        return cloudwatch.Metric(namespace="AWS/Lambda", metric_name=url_name, statistic=statistic, period=period,
                                 label=label, dimensions_map={"FunctionName": self.function.function_name,
                                                              "Resource": f"{self.function.function_name}:live"})


def _authorizer(kind: str, issuer: str | None, audience: list[str],
                consumers: Consumers | None) -> apigw.IHttpRouteAuthorizer:
    if kind == "jwt":
        assert issuer is not None
        return authorizers.HttpJwtAuthorizer("Jwt", issuer, jwt_audience=audience)
    if kind == "apiKey":
        assert consumers is not None, "auth type apiKey needs the Consumers construct"
        return consumers.authorizer
    return authorizers.HttpIamAuthorizer()
