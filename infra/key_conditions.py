"""Confused-deputy guard for KMS key policies: every statement that lets an AWS service principal use a key
gets an ``aws:SourceAccount`` condition (and ``aws:SourceArn`` where the source is known).

CDK adds some service statements itself without conditions (an encrypted SQS queue as an S3 notification
destination grants ``s3.amazonaws.com``; an SNS topic with a key as an EventBridge target grants
``events.amazonaws.com``). An aspect rewrites the finished key policy of every key in the stack.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import IAspect, Stack
from aws_cdk import aws_kms as kms
from constructs import IConstruct


@jsii.implements(IAspect)
class ServicePrincipalConditions:
    """Adds SourceAccount (and, for the given services, SourceArn) conditions to service-principal key grants.

    ``source_arns`` maps a key's construct path and service (``s3.amazonaws.com``) to the ARN of the only
    resource allowed to act through it.
    """

    def __init__(self, source_arns: dict[tuple[str, str], str] | None = None) -> None:
        self.source_arns = source_arns or {}

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, kms.Key):
            return
        stack = Stack.of(node)
        cfn = node.node.default_child
        assert isinstance(cfn, kms.CfnKey)
        policy = stack.resolve(cfn.key_policy)
        changed = False
        for statement in policy.get("Statement", []):
            services = _services(statement)
            scoped = str(statement.get("Condition", {}))
            if not services or "aws:SourceAccount" in scoped or "kms:EncryptionContext" in scoped:
                continue  # already scoped to this account, or to this account's log groups
            conditions: dict[str, Any] = dict(statement.get("Condition", {}))
            conditions["StringEquals"] = {**conditions.get("StringEquals", {}),
                                          "aws:SourceAccount": stack.resolve(stack.account)}
            arns = [self.source_arns[(node.node.path, s)] for s in services if (node.node.path, s) in self.source_arns]
            if arns and "aws:SourceArn" not in conditions.get("ArnLike", {}):
                conditions["ArnLike"] = {**conditions.get("ArnLike", {}),
                                         "aws:SourceArn": stack.resolve(arns[0] if len(arns) == 1 else arns)}
            statement["Condition"] = conditions
            changed = True
        if changed:
            cfn.add_property_override("KeyPolicy", policy)


def _services(statement: dict[str, Any]) -> list[str]:
    service = statement.get("Principal", {}).get("Service") if isinstance(statement.get("Principal"), dict) else None
    if service is None:
        return []
    return [service] if isinstance(service, str) else list(service)
