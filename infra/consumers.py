"""Consumers (API keys, limits, usage) on stages with ``auth: {type: apiKey}``: one DynamoDB table for keys,
counters and usage, the Lambda authorizer that looks keys up, and the grants of each role on the table.

The table (``functions/consumers/store.py``'s ``DynamoStore``): partition key ``pk``, sort key ``sk``, TTL on
``expires`` (counters and usage expire by themselves), a sparse index ``key_id`` over key items, encrypted with
the stage's key, point-in-time recovery on. Who calls what on it (docs/consumers.md):

- the authorizer: ``GetItem`` (a key by its hash);
- the API function and the batch function: ``UpdateItem`` (rate and quota counters, usage rows, job rows);
- operators (``maas keys``, ``maas usage``, through the publisher role): ``PutItem``, ``GetItem``, ``UpdateItem``,
  ``Query`` on the ``key_id`` index, ``Scan``.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.access import grant_key
from infra.foundation import Foundation
from infra.lambda_function import service_function

AUTHORIZER_HANDLER = "functions.consumers.authorizer.handler"
KEY_ID_INDEX = "key_id"
TTL_ATTRIBUTE = "expires"
IDENTITY_SOURCE = "$request.header.x-api-key"
KEYS_ENV, AUTH_ENV, KEYS_CACHE_ENV = "MAAS_KEYS", "MAAS_AUTH", "MAAS_KEYS_CACHE_SECONDS"
METER = ("dynamodb:UpdateItem",)
LOOKUP = ("dynamodb:GetItem",)
OPERATE = ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Scan")

TOP_CONSUMERS_QUERY = [
    "filter ispresent(consumer)",
    "stats count(*) as requests, sum(Instances) as rows by consumer",
    "sort requests desc",
    "limit 10",
]
"""The prediction EMF records of the API function carry the consumer (``consumer`` property) and ``Instances``."""


class Consumers(Construct):
    """The consumer table and the authorizer of the HTTP API (REQUEST type, payload 2.0, simple responses)."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        self.key = foundation.key
        self.table = dynamodb.Table(
            self, "Table", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, time_to_live_attribute=TTL_ATTRIBUTE,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=foundation.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            deletion_protection=config.retain_data, removal_policy=foundation.removal)
        # Sparse: only key items carry key_id (list, revoke and rotate by the public id).
        self.table.add_global_secondary_index(
            index_name=KEY_ID_INDEX,
            partition_key=dynamodb.Attribute(name="key_id", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL)

        cache_seconds = config.auth.cache_seconds
        self.function = service_function(
            self, "Authorizer", foundation=foundation, handler=AUTHORIZER_HANDLER,
            description="API key authorizer (looks the key up, passes the consumer and its limits on)",
            memory_mb=256, timeout=Duration.seconds(5),
            # The gateway's result cache (cacheSeconds) is the only cache: a revoked key is refused within it.
            environment={KEYS_ENV: self.uri, KEYS_CACHE_ENV: "0"})
        self._allow(self.function, LOOKUP)
        self.authorizer = authorizers.HttpLambdaAuthorizer(
            "ApiKey", self.function, response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            # With a cache the identity source is its key and must be present; without one, none is required,
            # so a key may also come as "Authorization: Bearer".
            identity_source=[IDENTITY_SOURCE] if cache_seconds else [],
            results_cache_ttl=Duration.seconds(cache_seconds))

    @property
    def uri(self) -> str:
        """The ``MAAS_KEYS`` value for this table (``maas keys``, ``maas usage``, the functions)."""
        return f"dynamodb://{self.table.table_name}"

    def environment(self) -> dict[str, str]:
        """What code that counts usage needs in its environment (the GPU worker's job definition)."""
        return {KEYS_ENV: self.uri}

    def enable_metering(self, function: lambda_.Function, *, authorize: bool = False) -> None:
        """``function`` counts requests and rows to consumers (``UpdateItem`` only); with ``authorize`` it also
        enforces scope, rate and quota from the authorizer's context (the API function)."""
        function.add_environment(KEYS_ENV, self.uri)
        if authorize:
            function.add_environment(AUTH_ENV, "apiKey")
        self._allow(function, METER)

    def grant_metering(self, grantee: iam.IGrantable) -> None:
        """``UpdateItem`` for a role whose environment is set elsewhere (the GPU worker's job role)."""
        self._allow(grantee, METER)

    def grant_operators(self, grantee: iam.IGrantable) -> None:
        """Create, list, revoke and rotate keys, read usage: ``maas keys`` and ``maas usage``."""
        self._allow(grantee, OPERATE)
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[f"{self.table.table_arn}/index/{KEY_ID_INDEX}"]))

    def _allow(self, grantee: iam.IGrantable, actions: tuple[str, ...]) -> None:
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=list(actions), resources=[self.table.table_arn]))
        grant_key(grantee, self.key, encrypt=False)  # the table is encrypted with the stage key

    def widgets(self, api_log_group: str) -> list[cloudwatch.IWidget]:
        """Top consumers by requests, with their rows, from the API function's prediction records."""
        return [cloudwatch.LogQueryWidget(title="Top consumers (requests, rows)", width=24,
                                          log_group_names=[api_log_group], query_lines=TOP_CONSUMERS_QUERY,
                                          view=cloudwatch.LogQueryVisualizationType.TABLE)]
