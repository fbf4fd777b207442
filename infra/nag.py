"""cdk-nag's AwsSolutions and Serverless packs on every synth, and the few acknowledged findings, each
with its reason. Acknowledgments name a rule; the tests check that each one still matches a finding."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from infra.stack import MaasStack

IAM5 = "AwsSolutions::AwsSolutions-IAM5"
IAM4 = "AwsSolutions::AwsSolutions-IAM4"
OBJECT_PREFIXES = (("ModelStore", "models"), ("BatchEvents", "inputs"), ("BatchEvents", "outputs"),
                   ("BatchEvents", "capture"), ("BatchEvents", "capture-errors"), ("BatchEvents", "shadow"),
                   ("ModelStore", "models/*/versions/*/drift"), ("BatchEvents", "jobs"),
                   ("BatchEvents", "inputs/*/jobs"), ("BatchEvents", "outputs/*/jobs"))
OBJECT_WILDCARDS = ("Objects under a named prefix of a named bucket (models/, inputs/, outputs/, capture/, "
                    "capture-errors/, shadow/, the drift/ folder of each model version, jobs/ and the jobs/ folders of "
                    "inputs and outputs): object keys are not known at deploy time; every action is named.")
MANAGED_POLICIES = {
    "service-role/AmazonEC2ContainerServiceforEC2Role":
        "AWS's policy for ECS container instances on the Batch GPU hosts: it follows the ECS agent's needs.",
    "service-role/AWSLambdaBasicExecutionRole":
        "On CDK's bucket-notification handler, which only writes its own logs.",
    "service-role/AWSCodeDeployRoleForLambdaLimited":
        "AWS's scoped-down CodeDeploy policy for Lambda canaries (stages with canary: true).",
}
ACKNOWLEDGED = {
    f"{IAM5}[Resource::*]":
        "Actions without resource-level permissions: X-Ray PutTraceSegments/PutTelemetryRecords (Lambda "
        "tracing) and ECR GetAuthorizationToken (pulling the worker image).",
    "AwsSolutions::AwsSolutions-L1":
        "The runtime is the Lambda Python whose bytecode the bundle precompiles and the tests run on "
        "(pythonVersion in cdk.json, 3.12 by default); a newer one is a one-line change once verified.",
    "Serverless::Serverless-LambdaLatestVersion":
        "Same finding as AwsSolutions-L1: the runtime is pinned to the Python the bundle is compiled for.",
    "AwsSolutions::AwsSolutions-APIG4":
        "Only GET /v2/health/live and /v2/health/ready are public, for uptime probes; they reveal no model "
        "data (on API-key stages also GET /console, /docs and /openapi.json: static pages and the API's "
        "description, no model data). Every other route needs IAM (SigV4), a JWT with the configured scopes, or "
        "an API key (the consumers' Lambda authorizer).",
    "Serverless::Serverless-LambdaDLQ":
        "Neither function is invoked asynchronously: API Gateway calls the API synchronously and the SQS "
        "event source polls the batch function; undeliverable batch messages go to the queue's own DLQ.",
    "Serverless::Serverless-LambdaEventSourceMappingDestination":
        "On-failure destinations are not available for SQS event sources; the queue's redrive policy sends "
        "messages that fail maxReceiveCount times to the dead-letter queue, which has an alarm.",
    "Serverless::Serverless-SQSRedrivePolicy":
        "The queues without a redrive policy are themselves dead-letter queues (batch inputs, undelivered "
        "notifications); they keep messages 14 days and the batch one alarms when not empty.",
    "AwsSolutions::AwsSolutions-SQS3":
        "The queue flagged is itself a dead-letter queue: the EventBridge rule's, for job-failure "
        "notifications it could not deliver to the alarm topic.",
}


def apply_rule_packs(app: cdk.App, stack: MaasStack) -> None:
    """Add the packs as validation plugins; findings make synth fail unless acknowledged below."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    for rule, reason in acknowledgments(stack).items():
        cdk.Validations.of(stack).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledgments(stack: MaasStack) -> dict[str, str]:
    """Finding id -> reason. IAM findings are acknowledged one resource pattern at a time."""
    found = dict(ACKNOWLEDGED)
    buckets = {"ModelStore": stack.store.bucket, "BatchEvents": stack.batch_events.bucket}
    for owner, prefix in OBJECT_PREFIXES:
        bucket = buckets[owner].node.default_child
        assert isinstance(bucket, cdk.CfnElement)
        logical_id = stack.resolve(bucket.logical_id)
        found[f"{IAM5}[Resource::<{logical_id}.Arn>/{prefix}/*]"] = OBJECT_WILDCARDS
    for policy, reason in MANAGED_POLICIES.items():
        found[f"{IAM4}[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]"] = reason
    found.update(stack.fanout.acknowledgments())
    return found
